"""How the cpu device calls g++: the flags, the machine they target, and the runtime library.

No numpy here: setup.py imports this module to build the runtime at install time (an install
without g++ still succeeds; the cpu device then builds the runtime on first use, into the
compile cache, as it does whenever the installed one does not match: another shim header,
compiler, flag set or CPU).
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from . import CompileFailed, cache

SHIM = Path(__file__).with_name("cuda_shim.h")
INSTALLED_RUNTIME = SHIM.with_name("emu_runtime.so")  # written by setup.py's build_ext
# The shim precompiled for FLAGS (setup.py, beside the runtime): g++ then skips parsing it in
# every kernel unit (about 25 ms each). Its folder goes first on the include path, and only
# while its key file matches: g++ checks a precompiled header's flags, not that the header
# it was made from is unchanged.
PCH = SHIM.with_name("pch") / "cuda_shim.h.gch"

# Never -ffast-math: with -shared it turns on flush-to-zero for the whole Python process.
# -ffp-contract=fast lets g++ fuse a*b+c into one FMA, as nvcc does by default (not fast-math:
# no reassociation, no flush-to-zero; ISO C++ mode would otherwise turn contraction off).
# -fno-trapping-math: no program here unmasks floating-point traps (nor does CUDA have them), so
# g++ may compute both sides of a select, which lets loops with selects vectorize; results are
# bit-for-bit the same.
# -march=native: the cache key holds this machine's CPU (see machine), so a cache folder shared
# between machines never hands one a library built for another.
# OPTIMIZE: -O2 plus the three -O3 loop optimizations the kernels need (the vectorizer with the
# dynamic cost model, complete peeling of the register tile's small loops, unswitching the
# packing loops' edge tests). benchmarks/emulator_flags.py, W1/W2/W3 against -O3: steps
# 0.84x/1.02x/0.96x of -O3's time, translation units compiled in 16-52% less time (-O3's other
# passes bought nothing here); plain -O2 ran W2 2.6x slower (the register tile's loops stay
# rolled).
OPTIMIZE = "-O2 -ftree-vectorize -fvect-cost-model=dynamic -fpeel-loops -funswitch-loops".split()
COMMON = (
    "-march=native -ffp-contract=fast -std=c++17 -fPIC -shared -pthread -fvisibility=hidden "
    "-fno-strict-aliasing -fno-math-errno -fno-trapping-math"
).split()
FLAGS = [*OPTIMIZE, *COMMON]
SANITIZE_FLAGS = [*COMMON, "-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]
# What a kernel unit links (after its source): libm and libc, and libgcc's static helpers;
# not libstdc++, which g++ would read at every link for nothing (a kernel calls no C++
# library; the runtime, linked as usual, holds what kernels share): about 25 ms less per unit.
KERNEL_LIBS = ["-nodefaultlibs", "-lm", "-lc", "-lgcc"]
RUNTIME_SOURCE = '#define GF_EMU_RUNTIME_IMPL\n#include "cuda_shim.h"\n'


def cxx() -> list[str]:
    """The compiler ($GRAPHFLOW_EMU_CXX, default g++) and the shim header's folder."""
    return [os.environ.get("GRAPHFLOW_EMU_CXX", "g++"), "-I", str(SHIM.parent)]


@functools.cache
def machine() -> str:
    """What -march=native means here: the CPU's model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(keep)))


@functools.cache
def shim_hash() -> str:
    return hashlib.sha256(SHIM.read_bytes() + machine().encode()).hexdigest()


def runtime_key(flags: list[str]) -> str:
    """What a runtime built with `flags` must carry to be used: the header, compiler, flags
    and CPU it was built for (the precompiled header's key file holds the same)."""
    h = hashlib.sha256()
    for part in (RUNTIME_SOURCE, cache.compiler_stamp(cxx()[0]), *flags, shim_hash()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _stamped(source: str, key: str) -> str:
    """The runtime's source with its key as a string in the library (read back as bytes)."""
    return f'{source}extern "C" GF_EXPORT const char gf_runtime_key[] = "GF_RUNTIME_KEY={key}";\n'


def installed_runtime(flags: list[str]) -> Path | None:
    """The runtime built at install time, when it matches `flags` and this machine."""
    try:
        data = INSTALLED_RUNTIME.read_bytes()
    except OSError:
        return None
    return INSTALLED_RUNTIME if f"GF_RUNTIME_KEY={runtime_key(flags)}".encode() in data else None


def installed_pch() -> Path | None:
    """The folder holding the shim precompiled at install time, when it was made from this
    header, compiler, FLAGS and CPU; else None (kernel units then parse the header)."""
    try:
        key = PCH.with_name("key").read_text()
    except OSError:
        return None
    return PCH.parent if key == runtime_key(FLAGS) and PCH.exists() else None


def build_pch(folder: Path) -> None:
    """Precompile the shim with FLAGS into `folder` (setup.py, at install time)."""
    folder.mkdir(parents=True, exist_ok=True)
    _compile(["-x", "c++-header", "-o", str(folder / PCH.name), str(SHIM)],
             "precompiling the cpu device's header", SHIM)
    (folder / "key").write_text(runtime_key(FLAGS))


def build_runtime(out: Path) -> None:
    """Build the runtime with FLAGS into `out` (setup.py, at install time)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "emu_runtime.cu"
        src.write_text(_stamped(RUNTIME_SOURCE, runtime_key(FLAGS)))
        _compile(["-x", "c++", "-o", str(out), str(src)], "building the cpu device's runtime", src)


def _compile(args: list[str], what: str, source: Path) -> None:
    """g++ with FLAGS and `args`; CompileFailed saying `what` failed."""
    proc = subprocess.run([*cxx(), *FLAGS, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileFailed(f"{what} failed:\n{proc.stderr}", proc.stdout + proc.stderr, source)
