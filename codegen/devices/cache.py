"""On-disk compile cache shared by the emulator (g++ -> .so) and the CUDA driver (nvcc -> .cubin).

Key: sha256 of (source, compiler version, flags, extra such as the shim's hash). Folder:
``$GRAPHFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphflow``, else ``~/.cache/graphflow``,
resolved at each compile, created with mode 0700.

A folder that another user owns, or that group/other can write without the sticky bit, is
bypassed: nothing is written to or loaded from it; the build goes to a private temporary
folder for this process instead, and an UnsafeCacheDirWarning says so. Cached files that are
not the user's own or are group/other-writable are ignored and rebuilt.

Writes are atomic (compile to a unique temporary name in the folder, then os.replace), so
processes compiling the same source at once all succeed.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import CompileFailed

__all__ = ["UnsafeCacheDirWarning", "cache_dir", "cache_key", "compile_cached", "compiler_version", "stats"]

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


@functools.cache
def compiler_version(compiler: str) -> str:
    """First line of ``compiler --version`` (part of every cache key)."""
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise FileNotFoundError(f"compiler {compiler!r} is not usable: {e}") from e
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return "\n".join(lines[-2:] if "nvcc" in out.lower() else lines[:1])


def cache_key(source: str, version: str, flags: Sequence[str], extra: str = "") -> str:
    h = hashlib.sha256()
    for part in (source, version, *flags, extra):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _write_atomic(path: Path, data: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
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
) -> Path:
    """Path of the compiled ``source``, built with ``[*command, *flags, -o OUT, SRC]`` if not cached.

    ``command[0]`` is the compiler; the rest of ``command`` (e.g. include paths) is not part
    of the key, ``flags`` and ``extra_key`` are. Raises CompileFailed on compiler errors.
    """
    key = cache_key(source, compiler_version(command[0]), flags, extra_key)
    folder = _usable_dir()
    out, src = folder / f"{key}{suffix}", folder / f"{key}{source_suffix}"
    if _own_file(out):
        stats["hits"] += 1
        return out
    _write_atomic(src, source)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=f".tmp{suffix}")
    os.close(fd)
    try:
        stats["compiles"] += 1
        proc = subprocess.run([*command, *flags, "-o", tmp, str(src)], capture_output=True, text=True)
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            raise CompileFailed(format_compile_error(Path(command[0]).name, output, src, source), output, src)
        os.chmod(tmp, 0o600)  # the linker recreates the file with the umask's mode
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


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
