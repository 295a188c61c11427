"""Devices that compile and launch generated CUDA C.

``get_driver("cuda")`` wraps PyCUDA (a real GPU); ``get_driver("cpu")`` is the emulator,
which compiles the same source with g++ against ``cuda_shim.h``. Both offer the same small
PyCUDA-shaped API, so one device layer runs unchanged on either:

    drv = get_driver("cpu")
    mod = drv.SourceModule(source)              # compiled once, then from the disk cache
    f = mod.get_function("kernel_name")
    buf = drv.mem_alloc(nbytes); drv.memcpy_htod(buf, array)
    f(buf, np.int32(n), block=(256, 1, 1), grid=(blocks, 1), shared=0)
    drv.memcpy_dtoh(out_array, buf)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "CallSequence",
    "CompileFailed",
    "DeviceUnavailable",
    "LaunchFailed",
    "get_driver",
    "prelude",
]

_SHIM = Path(__file__).with_name("cuda_shim.h")
_drivers: dict[str, Any] = {}


class DeviceUnavailable(RuntimeError):  # noqa: N818 (name fixed by the device API)
    """The requested device cannot be used here (no PyCUDA, no GPU or driver, no ASan...)."""


class CompileFailed(RuntimeError):  # noqa: N818
    """The compiler rejected a translation unit.

    ``compiler_output`` is the compiler's full output, ``source_path`` the file holding the
    exact text that was compiled; the message quotes the lines the compiler complained about.
    """

    def __init__(self, message: str, compiler_output: str, source_path: Path) -> None:
        super().__init__(message)
        self.compiler_output = compiler_output
        self.source_path = source_path


class LaunchFailed(RuntimeError):  # noqa: N818
    """A kernel launch was invalid or failed while running (emulator)."""


class CallSequence:
    """A launch table for drivers without a native one: one driver call per launch, in order.

    entries: (function, args, grid, block, shared bytes, OS threads); arguments may be None
    until ``set_arg`` binds them."""

    def __init__(self, entries) -> None:
        self._entries = [[fn, list(args), grid, block, shared]
                         for fn, args, grid, block, shared, _ in entries]

    def set_arg(self, k: int, i: int, value: Any) -> None:
        self._entries[k][1][i] = value

    def run(self) -> None:
        for fn, args, grid, block, shared in self._entries:
            fn(*args, grid=grid, block=block, shared=shared)


def usable_cores() -> int:
    """The cores this process may run on: how many compilers a program's parts start at once."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def get_driver(name: str) -> Any:
    """The driver for device ``name``: ``"cpu"`` (emulator) or ``"cuda"`` (PyCUDA).

    Raises DeviceUnavailable when the device cannot be used on this machine.
    """
    if name not in _drivers:
        if name == "cpu":
            from .emulator import EmulatorDriver

            _drivers[name] = EmulatorDriver()
        elif name == "cuda":
            from .pycuda_driver import CudaDriver

            _drivers[name] = CudaDriver()
        else:
            raise ValueError(f"unknown device {name!r}: expected 'cpu' or 'cuda'")
    return _drivers[name]


_PRELUDE_MARKS = {
    "cuda": ("/* >>> graphflow cuda prelude */", "/* <<< graphflow cuda prelude */"),
    "cpu": ("/* >>> graphflow emulator runtime */", "/* <<< graphflow emulator runtime */"),
}


_GEMM_MARKS = ("/* >>> graphflow cpu gemm */", "/* <<< graphflow cpu gemm */")


def prelude(target: str) -> str:
    """Text to put at the top of a translation unit for ``target`` ("cuda" or "cpu").

    "cuda": the few portability macros (GF_DYNAMIC_SHARED), the nvcc forms of gf_bool and
    gf_simd, and the cpu GEMM's building blocks, enough for ``nvcc -c`` on a dumped kernel
    file; harmless when the emulator compiles it (there the runtime defines those blocks).
    "cpu": the whole shim header less the runtime's implementation, so the file compiles alone
    with g++.
    """
    if target not in _PRELUDE_MARKS:
        raise ValueError(f"unknown prelude target {target!r}: expected 'cuda' or 'cpu'")
    text = _SHIM.read_text()
    begin, end = _PRELUDE_MARKS[target]
    i, j = text.index(begin), text.index(end)
    if target == "cuda":  # the prelude block, and the cpu GEMM's building blocks (both compilers)
        g, h = text.index(_GEMM_MARKS[0]), text.index(_GEMM_MARKS[1])
        return (
            "/* graphflow prelude (see codegen/devices/cuda_shim.h) */\n"
            + text[i + len(begin) : j].strip()
            + "\n"
            + text[g : h + len(_GEMM_MARKS[1])]
            + "\n"
        )
    return text[:i] + text[j + len(end) :]
