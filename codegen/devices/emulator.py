"""The CPU device: runs CUDA C kernels on the host, with a PyCUDA-shaped API.

The kernel source is compiled by g++ against ``cuda_shim.h`` into a shared library (cached on
disk, see cache.py). A small runtime library, built from the same header at install time
(setup.py; else once, into the cache, see toolchain.py), runs a launch: blocks go to a pool
of OS threads; the threads of a block run as a plain loop, or as fibers switching at barriers
when the kernel (or a function it calls) uses ``__syncthreads``, ``__syncwarp``, shuffles or
votes.

Environment, read when a module is compiled (SANITIZE) or a kernel launched (the others):
  GRAPHFLOW_EMU_THREADS=n   OS threads running blocks (default: the usable cores)
  GRAPHFLOW_EMU_SHUFFLE=s   run a block's threads in a random order seeded by s, between
                            barriers, and fill dynamic shared memory with 0xff per block:
                            exposes a missing __syncthreads
  GRAPHFLOW_EMU_SANITIZE=1  compile with AddressSanitizer; needs libasan preloaded:
                            LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0
  GRAPHFLOW_EMU_CXX         the C++ compiler (default g++)
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import threading
import time
from collections.abc import Sequence

import numpy as np

from ..ctext import matching_bracket
from ..launch import NativeCall
from . import DeviceUnavailable, LaunchFailed, cache, usable_cores
from .toolchain import (  # noqa: F401 (COMMON, OPTIMIZE: benchmarks/emulator_flags.py)
    COMMON,
    FLAGS,
    KERNEL_LIBS,
    OPTIMIZE,
    RUNTIME_SOURCE,
    SANITIZE_FLAGS,
    SHIM,
    cxx,
    installed_pch,
    installed_runtime,
    shim_hash,
)

__all__ = [
    "DeviceAllocation",
    "EmulatorDriver",
    "Function",
    "SourceModule",
    "find_kernels",
    "kernels_needing_fibers",
]

MAX_BLOCK, MAX_BLOCK_DIM, MAX_GRID_DIM = 1024, (1024, 1024, 64), (2**31 - 1, 65535, 65535)
MAX_DYNAMIC_SHARED = 48 * 1024  # CUDA's default limit without opting in per kernel
GF_HOST_CALL = 1  # gf_launch.kind of a NativeCall (cuda_shim.h)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


# ---- reading kernels out of the source -------------------------------------------------------

_NOISE = re.compile(r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", re.S)
_KERNEL = re.compile(
    r"\b__global__\b(?:\s*(?:__launch_bounds__\s*\([^()]*\)|\w+|\*))*?\s*(?!__launch_bounds__)(\w+)\s*\("
)
_SYNC = re.compile(
    r"\b(?:__syncthreads\w*|__syncwarp|__shfl\w*|__ballot_sync|__any_sync|__all_sync|__activemask)\b"
)
_BODY_START = re.compile(r"\s*(?:const\b\s*|noexcept\b\s*)*\{")
_NOT_FUNCTIONS = {"if", "for", "while", "switch", "catch", "return", "sizeof", "defined", "__launch_bounds__"}


def _strip(source: str) -> str:
    """Comments and string literals blanked out (newlines kept)."""
    return _NOISE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()) if m.group()[0] == "/" else '""', source)


def find_kernels(source: str) -> list[str]:
    """Names of the ``__global__`` functions in ``source``, in order of appearance."""
    names: list[str] = []
    for m in _KERNEL.finditer(_strip(source)):
        if m.group(1) not in names:
            names.append(m.group(1))
    return names


def _function_bodies(text: str) -> dict[str, str]:
    bodies: dict[str, str] = {}
    for m in re.finditer(r"\b([A-Za-z_]\w*)\s*\(", text):
        if m.group(1) in _NOT_FUNCTIONS:
            continue
        end = matching_bracket(text, m.end() - 1, "(", ")")
        after = _BODY_START.match(text, end)
        if after:
            start = after.end() - 1
            body = text[start : matching_bracket(text, start, "{", "}")]
            bodies[m.group(1)] = bodies.get(m.group(1), "") + body
    for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+(\w+)((?:[^\n]*\\\n)*[^\n]*)", text, re.M):
        bodies[m.group(1)] = bodies.get(m.group(1), "") + m.group(2)
    return bodies


def kernels_needing_fibers(source: str) -> set[str]:
    """Kernels that reach a barrier, shuffle or vote, directly or through functions and macros."""
    text = _strip(source)
    if not _SYNC.search(text):  # the cpu schedules have none: nothing to trace
        return set()
    bodies = _function_bodies(text)
    words = {name: set(re.findall(r"\w+", body)) for name, body in bodies.items()}
    syncing = {name for name, body in bodies.items() if _SYNC.search(body)}
    changed = True
    while changed:
        grown = {name for name, used in words.items() if name not in syncing and used & syncing}
        syncing |= grown
        changed = bool(grown)
    return {k for k in find_kernels(source) if k in syncing}


# ---- the runtime library ---------------------------------------------------------------------


class _Launch(ctypes.Structure):
    _fields_ = [  # matches struct gf_launch in cuda_shim.h
        ("name", ctypes.c_char_p),
        ("body", ctypes.c_void_p),
        ("args", ctypes.c_void_p),
        ("grid", ctypes.c_uint * 3),
        ("block", ctypes.c_uint * 3),
        ("shared_bytes", ctypes.c_ulonglong),
        ("fibers", ctypes.c_int),
        ("nthreads", ctypes.c_int),
        ("shuffle", ctypes.c_int),
        ("kind", ctypes.c_int),  # 0: a kernel; GF_HOST_CALL: a host function (see NativeCall)
        ("seed", ctypes.c_ulonglong),
    ]


_lock = threading.RLock()
_runtime: ctypes.CDLL | None = None


def _asan_loaded() -> bool:
    return hasattr(ctypes.CDLL(None), "__asan_init")


def _load_runtime() -> ctypes.CDLL:
    """Build (once, cached) and load the runtime, RTLD_GLOBAL so kernels resolve its symbols."""
    global _runtime
    with _lock:
        if _runtime is None:
            # With ASan in the process, instrument the runtime too: it annotates fiber switches.
            flags = SANITIZE_FLAGS if _asan_loaded() else FLAGS
            path = installed_runtime(flags)  # built by setup.py, else built here and cached
            if path is None:
                path, _ = cache.compile_indexed(RUNTIME_SOURCE, cxx(), [*flags, "-x", "c++"],
                                                lambda text: (text, {}), extra_key=shim_hash())
            lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            lib.gf_emu_launch.argtypes = [ctypes.POINTER(_Launch)]
            lib.gf_emu_launch.restype = ctypes.c_int
            lib.gf_emu_launch_seq.argtypes = [ctypes.POINTER(_Launch), ctypes.c_int]
            lib.gf_emu_launch_seq.restype = ctypes.c_int
            lib.gf_emu_error.restype = ctypes.c_char_p
            _runtime = lib
    return _runtime


def _load_runtime_quietly() -> None:
    try:
        _load_runtime()
    except Exception:  # noqa: BLE001 - the caller's own _load_runtime() reports it
        pass


# ---- memory ----------------------------------------------------------------------------------

_libc = ctypes.CDLL(None)  # malloc/free resolve to AddressSanitizer's when it is preloaded
_libc.posix_memalign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


class DeviceAllocation:
    """Host memory standing in for device memory; ``int(a)`` is its address. Freed by .free() or GC.

    Its public API is PyCUDA's (``int()``, ``free()``) and nothing more, so code that runs on
    the emulator cannot lean on what a real allocation lacks; the size is private."""

    __slots__ = ("_ptr", "_nbytes")

    def __init__(self, nbytes: int) -> None:
        if nbytes <= 0:
            raise ValueError(f"mem_alloc({nbytes}): CUDA cannot allocate 0 bytes")
        p = ctypes.c_void_p()
        if _libc.posix_memalign(ctypes.byref(p), 256, nbytes) != 0:  # cudaMalloc aligns to 256
            raise MemoryError(f"cannot allocate {nbytes} bytes")
        self._ptr: int = p.value or 0
        self._nbytes = nbytes

    def __int__(self) -> int:
        if not self._ptr:
            raise ValueError("use of a freed device allocation")
        return self._ptr

    __index__ = __int__

    def free(self) -> None:
        if self._ptr:
            _libc.free(self._ptr)
            self._ptr = 0

    def __del__(self) -> None:
        self.free()

    def __repr__(self) -> str:
        return f"<DeviceAllocation {self._nbytes} bytes at {self._ptr:#x}>"


def _host_view(a: object, writable: bool) -> np.ndarray:
    arr = np.asarray(a)
    if not arr.flags.c_contiguous:
        raise ValueError("host array must be C-contiguous")
    if writable and not arr.flags.writeable:
        raise ValueError("host destination array is read-only")
    return arr


def _check_room(dest: DeviceAllocation | int, nbytes: int) -> int:
    if isinstance(dest, DeviceAllocation) and nbytes > dest._nbytes:
        raise ValueError(f"copy of {nbytes} bytes overruns an allocation of {dest._nbytes} bytes")
    return int(dest)


# ---- modules and kernels ---------------------------------------------------------------------


class Function:
    """A kernel; call it like PyCUDA's: ``f(*args, block=(x, y, z), grid=(x, y[, z]), shared=bytes)``."""

    def __init__(self, lib: ctypes.CDLL, name: str, fibers: bool) -> None:
        self.name = name
        self._cname = name.encode()
        self.fibers = fibers
        self._body = ctypes.cast(getattr(lib, f"gf_body_{name}"), ctypes.c_void_p).value
        sizes = (ctypes.c_uint * 256)()
        self._sizes = list(sizes[: getattr(lib, f"gf_argsizes_{name}")(sizes)])

    def _pack(self, args: Sequence[object]) -> tuple[ctypes.Array, ctypes.Array]:
        if len(args) != len(self._sizes):
            raise TypeError(f"kernel {self.name} takes {len(self._sizes)} arguments, got {len(args)}")
        offsets, total = [], 0
        for size in self._sizes:
            offsets.append(total)
            total += (size + 15) // 16 * 16
        store = ctypes.create_string_buffer(max(total, 1))
        base = ctypes.addressof(store)
        for i, (arg, off) in enumerate(zip(args, offsets)):
            self._write_arg(base + off, i, arg)
        pointers = (ctypes.c_void_p * max(len(offsets), 1))(*[base + off for off in offsets])
        return store, pointers

    def _write_arg(self, address: int, i: int, arg: object) -> None:
        size = self._sizes[i]
        if isinstance(arg, DeviceAllocation):
            raw = int(arg).to_bytes(8, "little")
        elif isinstance(arg, np.generic):
            raw = arg.tobytes()
        else:
            raise TypeError(
                f"kernel {self.name} argument {i}: pass a device allocation or a numpy scalar "
                f"(e.g. np.int32(n)), not {type(arg).__name__}"
            )
        if len(raw) != size:
            raise TypeError(f"kernel {self.name} argument {i}: {len(raw)} bytes given, "
                            f"the parameter has {size}")
        ctypes.memmove(address, raw, size)

    def _launch_struct(self, pointers, grid3, block3, shared: int, nthreads: int) -> _Launch:
        n = block3[0] * block3[1] * block3[2]
        if not 1 <= n <= MAX_BLOCK or any(not 1 <= b <= m for b, m in zip(block3, MAX_BLOCK_DIM)):
            limits = f"at most {MAX_BLOCK} threads, dims up to {MAX_BLOCK_DIM}"
            raise LaunchFailed(f"kernel {self.name}: invalid block {block3} ({limits})")
        if any(not 1 <= g <= m for g, m in zip(grid3, MAX_GRID_DIM)):
            raise LaunchFailed(f"kernel {self.name}: invalid grid {grid3} (dims 1..{MAX_GRID_DIM})")
        if not 0 <= shared <= MAX_DYNAMIC_SHARED:
            raise LaunchFailed(
                f"kernel {self.name}: {shared} bytes of dynamic shared memory (at most {MAX_DYNAMIC_SHARED})"
            )
        seed = _env_int("GRAPHFLOW_EMU_SHUFFLE")
        return _Launch(
            name=self._cname,
            body=self._body,
            args=ctypes.addressof(pointers),
            grid=(ctypes.c_uint * 3)(*grid3),
            block=(ctypes.c_uint * 3)(*block3),
            shared_bytes=shared,
            fibers=int(self.fibers),
            nthreads=nthreads,
            shuffle=int(seed is not None),
            seed=(seed or 0) & (2**64 - 1),
        )

    def __call__(
        self,
        *args: object,
        block: Sequence[int] = (1, 1, 1),
        grid: Sequence[int] = (1, 1),
        shared: int = 0,
        stream: object = None,
        time_kernel: bool = False,
        threads: int | None = None,
    ) -> float | None:
        """Launch, as PyCUDA does; `threads` (emulator only): the OS threads running blocks,
        default $GRAPHFLOW_EMU_THREADS (the profiler passes the step's own choice)."""
        block3 = (tuple(int(b) for b in block) + (1, 1))[:3]
        grid3 = (tuple(int(g) for g in grid) + (1, 1))[:3]
        store, pointers = self._pack(args)  # both must outlive the launch
        launch = self._launch_struct(pointers, grid3, block3, shared,
                                     _thread_count() if threads is None else threads)
        runtime = _load_runtime()
        start = time.perf_counter()
        with _lock:
            if runtime.gf_emu_launch(ctypes.byref(launch)) != 0:
                raise LaunchFailed(runtime.gf_emu_error().decode(errors="replace"))
        del store, pointers
        return time.perf_counter() - start if time_kernel else None


class LaunchSequence:
    """Launches prepared once (arguments packed, launch structs built) and run in order by one
    native call: the cpu device's launch table for a whole graph step.

    entries: (Function, args, grid, block, shared bytes, OS threads), or a NativeCall (a host
    C function called in turn, e.g. an MPI collective); an argument may be None and set later
    with ``set_arg``. Environment variables are read here, not per run.
    """

    def __init__(self, entries: Sequence[tuple]) -> None:
        runtime = _load_runtime()
        self._runtime = runtime
        self._keep: list = []
        self._slots: list[list[int]] = []
        self._functions = []
        launches = []
        for entry in entries:
            if isinstance(entry, NativeCall):
                self._keep.append(entry)
                self._slots.append([])
                self._functions.append(entry)
                launches.append(_Launch(name=entry.name.encode(), body=entry.function, args=entry.address,
                                        grid=(1, 1, 1), block=(1, 1, 1), kind=GF_HOST_CALL))
                continue
            fn, args, grid, block, shared, nthreads = entry
            packed = [a if a is not None else _zero_like(fn, i) for i, a in enumerate(args)]
            store, pointers = fn._pack(packed)
            self._keep.append((store, pointers))
            self._slots.append([pointers[i] for i in range(len(args))])
            self._functions.append(fn)
            grid3 = (tuple(int(g) for g in grid) + (1, 1))[:3]
            block3 = (tuple(int(b) for b in block) + (1, 1))[:3]
            launches.append(fn._launch_struct(pointers, grid3, block3, shared, nthreads))
        self._count = len(launches)
        self._array = (_Launch * max(1, self._count))(*launches)
        # the native call with its arguments bound once: a warm step pays one ctypes call
        self._call = functools.partial(runtime.gf_emu_launch_seq,
                                       ctypes.cast(self._array, ctypes.POINTER(_Launch)), self._count)

    def set_arg(self, k: int, i: int, value: object) -> None:
        """Argument i of launch k (a device allocation or a numpy scalar of the parameter's size)."""
        target = self._functions[k]
        if isinstance(target, NativeCall):
            target.set_arg(i, value)
        else:
            target._write_arg(self._slots[k][i], i, value)

    def run(self) -> None:
        with _lock:
            failed = self._call()
            if failed:
                target = self._functions[failed - 1]
                error = target.error_type if isinstance(target, NativeCall) else LaunchFailed
                raise error(self._runtime.gf_emu_error().decode(errors="replace"))


def _zero_like(fn: Function, i: int) -> np.generic:
    return np.zeros(1, dtype=f"V{fn._sizes[i]}")[0]


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected an integer") from None


def _thread_count() -> int:
    n = _env_int("GRAPHFLOW_EMU_THREADS")
    if n is not None:
        return max(1, n)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class SourceModule:
    """Compile CUDA C ``source`` for the emulator (PyCUDA's ``SourceModule`` signature).

    As in PyCUDA the source is wrapped in ``extern "C" { }`` unless ``no_extern_c``.
    ``options`` are nvcc options: -DX=1/-UX/-I/dir (joined) are passed to g++, the rest ignored.
    """

    def __init__(self, source: str, options: Sequence[str] | None = None, no_extern_c: bool = False) -> None:
        sanitize = _env_flag("GRAPHFLOW_EMU_SANITIZE")
        if sanitize and not _asan_loaded():
            raise DeviceUnavailable(
                "GRAPHFLOW_EMU_SANITIZE=1 needs AddressSanitizer loaded first in the process: run with "
                "LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 python ..."
            )
        self.source = source

        def prepare(source: str) -> tuple[str, dict]:  # runs only when the index has no entry
            kernels = find_kernels(source)
            body = source if no_extern_c else f'extern "C" {{\n{source}\n}}'
            glue = "".join(f"GF_KERNEL_GLUE({k})\n" for k in kernels)
            return (f'#include "cuda_shim.h"\n{body}\n{glue}',
                    {"kernels": kernels, "fibers": sorted(kernels_needing_fibers(source))})

        kept = [o for o in options or () if o[:2] in ("-D", "-U", "-I") and len(o) > 2]
        flags = [*(SANITIZE_FLAGS if sanitize else FLAGS), *kept, "-x", "c++"]
        wrapping = "" if no_extern_c else " extern-c"  # prepare's text depends on it: so does the key
        command = cxx()
        pch = None if sanitize or kept else installed_pch()  # its flags are FLAGS, nothing more
        if pch is not None:  # found before the header itself; the library is the same
            command = [command[0], "-I", str(pch), *command[1:]]
        self.library_path, facts = cache.compile_indexed(source, command, flags, prepare,
                                                         extra_key=shim_hash() + wrapping,
                                                         libs=[] if sanitize else KERNEL_LIBS)
        self.kernels, fibers = facts["kernels"], set(facts["fibers"])
        _load_runtime()  # after compiling (the runtime builds meanwhile), before the kernels resolve it
        self._lib = ctypes.CDLL(str(self.library_path))
        self._functions = {k: Function(self._lib, k, k in fibers) for k in self.kernels}

    def get_function(self, name: str) -> Function:
        if name not in self._functions:
            raise LaunchFailed(f"no __global__ function {name!r} in this module (it has {self.kernels})")
        return self._functions[name]


class EmulatorDriver:
    """PyCUDA's driver API subset used by graphflow's device layer, on the CPU."""

    name = "cpu"
    SourceModule = SourceModule
    DeviceAllocation = DeviceAllocation

    def __init__(self) -> None:
        # build the runtime (cached after the first time) while the caller builds and lowers
        # its graph; the first module waits for it (_load_runtime holds the lock), and a
        # failure here is raised again there
        threading.Thread(target=_load_runtime_quietly, daemon=True).start()

    @staticmethod
    def prepare(entries: Sequence[tuple]) -> LaunchSequence:
        """A launch table run by one native call (see LaunchSequence)."""
        return LaunchSequence(entries)

    @staticmethod
    def compile_jobs() -> int:
        """How many translation units of one program g++ may compile at once: the cores."""
        return usable_cores()

    @staticmethod
    def thread_count() -> int:
        """OS threads a launch may use ($GRAPHFLOW_EMU_THREADS, default: the usable cores)."""
        return _thread_count()

    @staticmethod
    def host_view(alloc: DeviceAllocation, shape: tuple, dtype) -> np.ndarray:
        """A numpy array over device memory (the emulator's is host memory): copies in and out
        become numpy assignments."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        buf = (ctypes.c_char * max(1, count * dtype.itemsize)).from_address(int(alloc))
        return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)

    @staticmethod
    def mem_alloc(nbytes: int) -> DeviceAllocation:
        return DeviceAllocation(int(nbytes))

    @staticmethod
    def memcpy_htod(dest: DeviceAllocation | int, src: object) -> None:
        arr = _host_view(src, writable=False)
        ctypes.memmove(_check_room(dest, arr.nbytes), arr.ctypes.data, arr.nbytes)

    @staticmethod
    def memcpy_dtoh(dest: np.ndarray, src: DeviceAllocation | int) -> None:
        arr = _host_view(dest, writable=True)
        if isinstance(src, DeviceAllocation) and arr.nbytes > src._nbytes:
            raise ValueError(f"copy of {arr.nbytes} bytes overruns an allocation of {src._nbytes} bytes")
        ctypes.memmove(arr.ctypes.data, int(src), arr.nbytes)

    @staticmethod
    def memcpy_dtod(dest: DeviceAllocation | int, src: DeviceAllocation | int, size: int) -> None:
        if isinstance(src, DeviceAllocation) and size > src._nbytes:
            raise ValueError(f"copy of {size} bytes overruns an allocation of {src._nbytes} bytes")
        ctypes.memmove(_check_room(dest, size), int(src), size)

    @staticmethod
    def memset_d8(dest: DeviceAllocation | int, data: int, count: int) -> None:
        ctypes.memset(_check_room(dest, count), data & 0xFF, count)

    @staticmethod
    def memset_d32(dest: DeviceAllocation | int, data: int, count: int) -> None:
        view = (ctypes.c_uint32 * count).from_address(_check_room(dest, 4 * count))
        np.frombuffer(view, dtype=np.uint32)[:] = data & 0xFFFFFFFF

    @staticmethod
    def synchronize() -> None:
        """Launches are synchronous on the emulator."""
