"""The CUDA device: PyCUDA behind the same small API as the emulator.

Kernels are compiled by nvcc to a cubin through graphflow's compile cache (cache.py) and
loaded with ``module_from_buffer``; memory and launches are PyCUDA's own.
"""

from __future__ import annotations

import atexit
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import CallSequence, DeviceUnavailable, cache, usable_cores

__all__ = ["CudaDriver", "compile_cubin"]

_SHIM_DIR = Path(__file__).parent
_INSTALL = "install the CUDA extra with: pip install 'graphflow[cuda]'"


def compile_cubin(
    source: str, arch: str, options: Sequence[str] | None = None, no_extern_c: bool = False
) -> bytes:
    """nvcc ``source`` for ``arch`` (e.g. "sm_80"), wrapped in extern "C" like PyCUDA; cached."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise DeviceUnavailable("nvcc is not on PATH: install the CUDA toolkit to compile for the GPU")
    text = source if no_extern_c else f'extern "C" {{\n{source}\n}}\n'
    flags = ["-cubin", f"-arch={arch}", *(options or ())]
    path = cache.compile_cached(text, [nvcc, "-I", str(_SHIM_DIR)], flags, suffix=".cubin")
    return path.read_bytes()


class CudaDriver:
    """``pycuda.driver`` subset plus a cached SourceModule; raises DeviceUnavailable if unusable."""

    name = "cuda"

    def __init__(self) -> None:
        try:
            import pycuda.driver as drv
        except ImportError as e:
            if "libcuda" in str(e):
                raise DeviceUnavailable(f"the NVIDIA driver (libcuda.so) is missing: {e}") from e
            raise DeviceUnavailable(f"PyCUDA is not installed ({e}); {_INSTALL}") from e
        try:
            drv.init()
            if drv.Device.count() == 0:
                raise DeviceUnavailable("no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
            self.device = drv.Device(0)
            self.context = self.device.retain_primary_context()  # shared with other CUDA users
            self.context.push()
        except drv.Error as e:
            raise DeviceUnavailable(f"CUDA is not usable: {e}") from e
        atexit.register(self.context.pop)
        major, minor = self.device.compute_capability()
        self.arch = f"sm_{major}{minor}"
        self._drv = drv
        self.DeviceAllocation = drv.DeviceAllocation
        self.mem_alloc = drv.mem_alloc
        self.memcpy_htod = drv.memcpy_htod
        self.memcpy_dtoh = drv.memcpy_dtoh
        self.memcpy_dtod = drv.memcpy_dtod
        self.memset_d8 = drv.memset_d8
        self.memset_d32 = drv.memset_d32

    def SourceModule(
        self, source: str, options: Sequence[str] | None = None, no_extern_c: bool = False
    ) -> Any:  # noqa: N802
        """A PyCUDA module (``.get_function(name)``) for ``source``; CompileFailed on errors.

        Safe to call from several threads at once (a program's parts compile side by side):
        nvcc runs in a subprocess, and a thread without a current context loads the module
        into graphflow's (the primary context) and pops it again."""
        cubin = compile_cubin(source, self.arch, options, no_extern_c)
        if self._drv.Context.get_current() is not None:
            return self._drv.module_from_buffer(cubin)
        self.context.push()
        try:
            return self._drv.module_from_buffer(cubin)
        finally:
            self._drv.Context.pop()

    @staticmethod
    def compile_jobs() -> int:
        """How many translation units of one program nvcc may compile at once: the cores."""
        return usable_cores()

    def synchronize(self) -> None:
        self._drv.Context.synchronize()

    @staticmethod
    def prepare(entries) -> CallSequence:
        """The step's launch table (one PyCUDA call per launch; a CUDA graph would replay it)."""
        return CallSequence(entries)

    @staticmethod
    def thread_count() -> int:
        return 1
