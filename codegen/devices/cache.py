"""On-disk compile cache shared by the emulator (g++ -> .so) and the CUDA driver (nvcc -> .cubin).

Key: sha256 of (the source without its comments, the compiler's stamp (its resolved file's
path, size and mtime: nothing is spawned to ask its version), flags, extra such as the
shim's hash): editing a comment (a kernel's leading comment names the user's file:line) does
not recompile, while the file compiled, dumped and quoted in errors keeps its comments. Folder:
``$GRAPHFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphflow``, else ``~/.cache/graphflow``,
resolved at each compile, created with mode 0700.

A folder that another user owns, or that group/other can write without the sticky bit, is
bypassed: nothing is written to or loaded from it; the build goes to a private temporary
folder for this process instead, and an UnsafeCacheDirWarning says so. Cached files that are
not the user's own or are group/other-writable are ignored and rebuilt.

Writes are atomic (compile to a unique temporary name in the folder, then os.replace), so
processes compiling the same source at once all succeed.

A build that needs facts about its source first (the emulator's list of kernels and which of
them run as fibers) goes through ``compile_indexed``: an index entry keyed by the raw source,
the compiler's file stamp (path, size, mtime), flags and extra names the library and keeps
the facts, so a warm lookup hashes the source once and runs neither the analysis nor the
comment stripping. Kept plans (``codegen/plan_cache.py``) are stored here too (``<key>.plan``,
``load_blob``/``store_blob``) and pruned with the rest.

The folder is bounded: after each compile, when the cache's files exceed
``$GRAPHFLOW_CACHE_MAX_MB`` (default 500) or ``$GRAPHFLOW_CACHE_MAX_FILES`` (default 2000),
the least recently used entries (a hit touches its files) are removed until it fits. Only
files the cache itself names (``<64 hex digits>.<suffix>``) are ever removed.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from . import CompileFailed

__all__ = ["UnsafeCacheDirWarning", "cache_dir", "cache_key", "compile_cached", "compile_indexed",
           "compiler_stamp", "load_blob", "prune", "store_blob",
           "stats", "strip_comments"]

DEFAULT_MAX_MB = 500
DEFAULT_MAX_FILES = 2000

# Compiler invocations and cache hits in this process (tests count compiles with it).
stats = {"compiles": 0, "hits": 0}


class UnsafeCacheDirWarning(UserWarning):
    """The cache folder could be changed by other users; it was bypassed."""


def cache_dir() -> Path:
    """The configured cache folder (not created, not checked)."""
    if os.environ.get("GRAPHFLOW_CACHE_DIR"):
        return Path(os.environ["GRAPHFLOW_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphflow"


def _unsafe_reason(st: os.stat_result) -> str | None:
    if st.st_uid != os.getuid():
        return f"it is owned by uid {st.st_uid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        return f"other users can write it (mode {stat.S_IMODE(st.st_mode):o}, no sticky bit)"
    return None


_private_tmp: Path | None = None
_warned: set[str] = set()


def _private_dir() -> Path:
    global _private_tmp
    if _private_tmp is None:
        _private_tmp = Path(tempfile.mkdtemp(prefix="graphflow-build-"))  # mode 0700
        atexit.register(shutil.rmtree, _private_tmp, True)
    return _private_tmp


def _usable_dir() -> Path:
    folder = cache_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        reason = _unsafe_reason(folder.stat())
    except OSError as e:
        reason = f"it cannot be used ({e})"
    if reason is None:
        return folder
    if str(folder) not in _warned:
        _warned.add(str(folder))
        warnings.warn(
            f"graphflow compile cache {folder} is not used because {reason}; compiling into a "
            "private temporary folder instead. Set GRAPHFLOW_CACHE_DIR to a folder only you can write.",
            UnsafeCacheDirWarning,
            stacklevel=3,
        )
    return _private_dir()


# A comment, or a string/char literal (kept: "//" inside a string is not a comment).
_LITERAL = r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'"
_COMMENT_OR_LITERAL = re.compile(r"//[^\n]*|/\*.*?\*/|" + _LITERAL, re.S)
_BLANKS_OR_LITERAL = re.compile(r"[ \t]+|" + _LITERAL)


def strip_comments(source: str) -> str:
    """``source`` without // and /* */ comments (each one space, as the C preprocessor does),
    runs of blanks as one space, and no empty lines: the text the cache key is built from."""
    code = _COMMENT_OR_LITERAL.sub(lambda m: " " if m.group()[0] == "/" else m.group(), source)
    code = _BLANKS_OR_LITERAL.sub(lambda m: " " if m.group()[0] in " \t" else m.group(), code)
    return "\n".join(line.strip() for line in code.splitlines() if line.strip())


def cache_key(source: str, compiler: str, flags: Sequence[str], extra: str = "") -> str:
    """sha256 of the source's code (comments left out), the compiler's stamp, flags and extra."""
    h = hashlib.sha256()
    for part in (strip_comments(source), compiler, *flags, extra):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _write_atomic(path: Path, data: str | bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _own_file(path: Path) -> bool:
    try:
        return _unsafe_reason(path.stat()) is None
    except OSError:
        return False


def compile_cached(
    source: str,
    command: Sequence[str],
    flags: Sequence[str],
    *,
    extra_key: str = "",
    suffix: str = ".so",
    source_suffix: str = ".cu",
    libs: Sequence[str] = (),
) -> Path:
    """Path of the compiled ``source``, built with ``[*command, *flags, -o OUT, SRC, *libs]``
    if not cached.

    ``command[0]`` is the compiler; the rest of ``command`` (e.g. include paths) is not part
    of the key, ``flags``, ``libs`` and ``extra_key`` are. Raises CompileFailed on compiler
    errors.
    """
    key = cache_key(source, compiler_stamp(command[0]), [*flags, *libs], extra_key)
    folder = _usable_dir()
    out, src = folder / f"{key}{suffix}", folder / f"{key}{source_suffix}"
    if _own_file(out):
        stats["hits"] += 1
        _touch(out, src)
        return out
    _write_atomic(src, source)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=f".tmp{suffix}")
    os.close(fd)
    try:
        stats["compiles"] += 1
        proc = subprocess.run([*command, *flags, "-o", tmp, str(src), *libs], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            raise CompileFailed(format_compile_error(Path(command[0]).name, output, src, source), output, src)
        os.chmod(tmp, 0o600)  # the linker recreates the file with the umask's mode
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    prune(folder, keep=key)
    return out


@functools.cache
def compiler_stamp(compiler: str) -> str:
    """The compiler's resolved file, size and mtime: what a key holds instead of its version
    (replacing the compiler changes the stamp; nothing is spawned to read it)."""
    real = os.path.realpath(shutil.which(compiler) or compiler)
    try:
        st = os.stat(real)
    except OSError as e:
        raise FileNotFoundError(f"compiler {compiler!r} is not usable: {e}") from e
    return f"{real}:{st.st_size}:{st.st_mtime_ns}"


def compile_indexed(
    source: str,
    command: Sequence[str],
    flags: Sequence[str],
    prepare: Callable[[str], tuple[str, dict]],
    *,
    extra_key: str = "",
    suffix: str = ".so",
    source_suffix: str = ".cu",
    libs: Sequence[str] = (),
) -> tuple[Path, dict]:
    """``compile_cached`` for a source that is analysed before it compiles: ``prepare(source)``
    returns the text to compile and facts about it (JSON-able). Returns (library, facts); on a
    warm lookup neither ``prepare`` nor the compiler runs (see the module docstring)."""
    h = hashlib.sha256()
    for part in (source, compiler_stamp(command[0]), *flags, *libs, extra_key, suffix):
        h.update(part.encode())
        h.update(b"\0")
    folder = _usable_dir()
    index = folder / f"{h.hexdigest()}.json"
    if _own_file(index):
        try:
            entry = json.loads(index.read_text())
            library = folder / entry["library"]
            if _ENTRY.match(entry["library"]) and _own_file(library):
                stats["hits"] += 1
                _touch(index, library)
                return library, entry["facts"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable or stale: rebuild it below
    text, facts = prepare(source)
    library = compile_cached(text, command, flags, extra_key=extra_key, suffix=suffix,
                             source_suffix=source_suffix, libs=libs)
    _write_atomic(index, json.dumps({"library": library.name, "facts": facts}))
    return library, facts


def load_blob(key: str, suffix: str) -> bytes | None:
    """The bytes stored under ``key`` (64 hex digits) and ``suffix`` (e.g. ".plan"), if the
    folder holds them as the user's own file; a hit counts as a use for pruning."""
    path = _usable_dir() / f"{key}{suffix}"
    if not _own_file(path):
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    _touch(path)
    return data


def store_blob(key: str, suffix: str, data: bytes) -> None:
    """Store ``data`` under ``key`` and ``suffix`` (atomically; pruned like compiled files)."""
    folder = _usable_dir()
    _write_atomic(folder / f"{key}{suffix}", data)
    prune(folder, keep=key)


def _touch(*paths: Path) -> None:
    """Mark a hit as recently used (pruning removes the least recently used first)."""
    for path in paths:
        try:
            os.utime(path)
        except OSError:
            pass


def _limit(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return max(0, int(float(value)))
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected a number") from None


_ENTRY = re.compile(r"^([0-9a-f]{64})\.\w+$")


def prune(folder: Path, keep: str = "", max_mb: int | None = None, max_files: int | None = None) -> list[str]:
    """Remove the least recently used cache entries (all files of one key) until the folder's
    cache files fit in ``max_mb`` megabytes and ``max_files`` files (defaults: the
    environment, see the module docstring). ``keep`` (a key) is never removed. Returns the
    removed keys, oldest first."""
    max_bytes = (_limit("GRAPHFLOW_CACHE_MAX_MB", DEFAULT_MAX_MB) if max_mb is None else max_mb) * 2**20
    max_files = _limit("GRAPHFLOW_CACHE_MAX_FILES", DEFAULT_MAX_FILES) if max_files is None else max_files
    entries: dict[str, list] = {}  # key -> [newest mtime, bytes, paths]
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        m = _ENTRY.match(name)
        if not m:
            continue
        try:
            st = (folder / name).stat()
        except OSError:
            continue
        entry = entries.setdefault(m.group(1), [0.0, 0, []])
        entry[0] = max(entry[0], st.st_mtime)
        entry[1] += st.st_size
        entry[2].append(folder / name)
    total = sum(e[1] for e in entries.values())
    files = sum(len(e[2]) for e in entries.values())
    removed = []
    for key, (_, size, paths) in sorted(entries.items(), key=lambda kv: kv[1][0]):
        if total <= max_bytes and files <= max_files:
            break
        if key == keep:
            continue
        for path in paths:
            try:
                path.unlink()
            except OSError:
                pass
        total -= size
        files -= len(paths)
        removed.append(key)
    return removed


# g++: "file:12:5: error: ..."; nvcc: "file(12): error: ..."
_LOCATION = re.compile(
    r"^(?P<file>[^:\n(]+?)(?::(?P<l1>\d+):(?:\d+:)?|\((?P<l2>\d+)\):) *(?:fatal |catastrophic )?error", re.M
)


def format_compile_error(tool: str, output: str, source_path: Path, source: str, context: int = 2) -> str:
    """A message with the compiler's first errors and the source lines they point at."""
    errors = [ln for ln in output.splitlines() if "error" in ln][:8]
    lines = source.splitlines()
    shown: list[int] = []
    for m in _LOCATION.finditer(output):
        if Path(m["file"]).name == source_path.name:
            n = int(m["l1"] or m["l2"])
            if n not in shown:
                shown.append(n)
    parts = [f"{tool} failed to compile {source_path}:", *errors]
    for n in shown[:3]:
        parts.append(f"--- {source_path.name} around line {n}:")
        for i in range(max(1, n - context), min(len(lines), n + context) + 1):
            parts.append(f"{'>' if i == n else ' '}{i:5d} | {lines[i - 1]}")
    return "\n".join(parts)
