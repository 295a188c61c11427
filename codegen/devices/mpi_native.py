"""The native MPI collectives (mpi_collectives.c): built with mpicc, cached, loaded once.

On the cpu device a collective then runs as an entry of the step's one native launch
sequence instead of a return to Python. `library()` gives the loaded library, or None with
`reason()` saying why (no mpicc, a failed build, an mpicc whose MPI is not mpi4py's): the
collectives then stay Python host steps. $GRAPHFLOW_MPICC names the compiler (default mpicc),
read when the library is first needed.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import threading
from pathlib import Path

from . import CompileFailed, cache

SOURCE = Path(__file__).with_name("mpi_collectives.c")
FLAGS = ["-O2", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-fPIC", "-shared", "-x", "c"]
_lock = threading.Lock()


class Args(ctypes.Structure):
    """gf_mpi_args: one collective's argument block (the two buffer slots first)."""

    _fields_ = [("src", ctypes.c_void_p), ("dst", ctypes.c_void_p), ("count", ctypes.c_longlong),
                ("elem_bytes", ctypes.c_longlong), ("comm", ctypes.c_longlong), ("root", ctypes.c_longlong),
                ("timeout", ctypes.c_double), ("timeout_message", ctypes.c_char_p),
                ("label", ctypes.c_char_p), ("pending", ctypes.c_void_p), ("counts", ctypes.c_void_p)]


_loaded: dict = {}  # "lib": CDLL or None, "reason": why None


def _build(mpi) -> tuple[ctypes.CDLL | None, str]:
    compiler = os.environ.get("GRAPHFLOW_MPICC", "mpicc")
    if shutil.which(compiler) is None:
        return None, f"{compiler} not found"
    mpi_version = mpi.Get_library_version().replace("\0", "").strip()
    try:
        path = cache.compile_cached(SOURCE.read_text(), [compiler], FLAGS, extra_key=mpi_version,
                                    source_suffix=".c")
    except (CompileFailed, FileNotFoundError) as e:
        return None, f"{compiler} failed: {str(e).splitlines()[0]}"
    lib = ctypes.CDLL(str(path))
    text = ctypes.create_string_buffer(4096)
    lib.gf_mpi_library_version(text, len(text))
    if text.value.decode(errors="replace").strip() != mpi_version:
        return None, f"{compiler} builds against another MPI library than mpi4py's"
    for name in ("gf_mpi_args_bytes", "gf_mpi_pending_bytes"):
        getattr(lib, name).restype = ctypes.c_int
    if lib.gf_mpi_args_bytes() != ctypes.sizeof(Args):
        return None, f"{SOURCE.name}'s gf_mpi_args does not match mpi_native.Args"
    return lib, ""


def library(mpi) -> ctypes.CDLL | None:
    """The loaded collectives library (mpi: mpi4py's MPI module), or None: see reason()."""
    with _lock:
        if "lib" not in _loaded:
            _loaded["lib"], _loaded["reason"] = _build(mpi)
        return _loaded["lib"]


def reason() -> str:
    """Why library() gave None ('' when it did not, or was not asked yet)."""
    return _loaded.get("reason", "")


def function(lib: ctypes.CDLL, name: str) -> int:
    """The address of one of the library's host functions (for the launch sequence)."""
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
