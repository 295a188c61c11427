"""The MPI side of gf.distributed: one communicator, bounded waits, the agreement check.

Every collective is nonblocking (Iallreduce, Ibcast, Iallgather) and polled with `Test`
until $GRAPHFLOW_MPI_TIMEOUT seconds (default 60) have passed, so a rank that died or
stalled gives a clear error instead of a hang. Before the first collective of a new kind
the ranks exchange a fingerprint of what they are about to run (ops, shapes, dtypes,
buckets; never values) and stop with the first difference. mpi4py is imported on first use.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterator, Mapping

import numpy as np

from ..errors import DistributedError

# Counters in one int64 array: the native collectives (codegen/devices/mpi_collectives.c, same
# order) add to it in place. native_calls: collectives run inside the cpu device's native launch
# sequence; host_step_calls: collectives run from Python between kernels (cpu without mpicc, cuda).
COUNTER_NAMES = ("allreduce_calls", "allreduce_bytes", "broadcast_calls", "broadcast_bytes",
                 "native_calls", "host_step_calls")
COUNTERS = np.zeros(len(COUNTER_NAMES), np.int64)
_state: dict = {"comm": None, "MPI": None, "verified": set(), "pending": {}, "native": ""}


class _Stats(Mapping):
    """gf.distributed.STATS: the counters above, and 'native': how compiled collectives run on
    the cpu device ('' before any ran, 'yes', or 'no: <why>' when they are Python host steps)."""

    def __getitem__(self, key: str):
        if key == "native":
            return _state["native"]
        if key not in COUNTER_NAMES:
            raise KeyError(key)
        return int(COUNTERS[COUNTER_NAMES.index(key)])

    def __iter__(self) -> Iterator[str]:
        return iter((*COUNTER_NAMES, "native"))

    def __len__(self) -> int:
        return len(COUNTER_NAMES) + 1

    def __repr__(self) -> str:
        return repr(dict(self))


STATS = _Stats()


def count(name: str, amount: int = 1) -> None:
    """Add to one of STATS's counters."""
    COUNTERS[COUNTER_NAMES.index(name)] += amount


def note_native(text: str) -> None:
    """Record how compiled collectives run (STATS['native'])."""
    _state["native"] = text


def init():
    """Start MPI (through mpi4py) once; return the world communicator. An uncaught exception on
    any rank then aborts the whole job, so the other ranks never wait for a dead peer."""
    if _state["comm"] is None:
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise DistributedError(
                f"gf.distributed needs mpi4py and an MPI library ({e}): pip install "
                "'graphflow[distributed]' and e.g. apt-get install openmpi-bin libopenmpi-dev") from None
        _state["MPI"], _state["comm"] = MPI, MPI.COMM_WORLD
        if MPI.COMM_WORLD.Get_size() > 1:
            _abort_on_uncaught_exception(MPI.COMM_WORLD)
    return _state["comm"]


def _abort_on_uncaught_exception(comm) -> None:
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        comm.Abort(1)

    sys.excepthook = hook


def mpi():
    """mpi4py's MPI module (MPI started)."""
    init()
    return _state["MPI"]


def rank() -> int:
    """This process's rank in the world communicator (0 .. size()-1)."""
    return init().Get_rank()


def size() -> int:
    """How many processes take part."""
    return init().Get_size()


def timeout() -> float:
    """Seconds any one collective may wait: $GRAPHFLOW_MPI_TIMEOUT, default 60."""
    text = os.environ.get("GRAPHFLOW_MPI_TIMEOUT", "60")
    try:
        value = float(text)
    except ValueError:
        raise DistributedError(f"GRAPHFLOW_MPI_TIMEOUT={text!r} is not a number of seconds") from None
    if value <= 0:
        raise DistributedError(f"GRAPHFLOW_MPI_TIMEOUT={text!r} must be > 0 seconds")
    return value


def timeout_message(what: str, limit: float) -> str:
    """The error of a wait for `what` past `limit` seconds."""
    comm = init()
    return (f"rank {comm.Get_rank()} of {comm.Get_size()}: {what} did not complete within "
            f"{limit:g} s (GRAPHFLOW_MPI_TIMEOUT): another rank died, stalled, or runs a "
            "different number of steps")


def wait(request, what: str) -> None:
    """Poll a nonblocking request until it completes or the timeout passes."""
    limit = timeout()
    deadline = time.monotonic() + limit
    pause = 0.0
    while not request.Test():
        if time.monotonic() > deadline:
            raise DistributedError(timeout_message(what, limit))
        time.sleep(pause)
        pause = min(1e-3, pause * 2 + 1e-5)


def check_agreement(fingerprint: tuple, what: str) -> None:
    """Once per fingerprint: every rank must hold the same one, else name the first difference."""
    key = hashlib.sha256("\n".join(fingerprint).encode()).hexdigest()
    if key in _state["verified"]:
        return
    comm, MPI = init(), _state["MPI"]
    if comm.Get_size() > 1:
        data = np.frombuffer("\n".join(fingerprint).encode(), np.uint8)
        lengths = np.zeros(comm.Get_size(), np.int64)
        wait(comm.Iallgather(np.array([data.size], np.int64), lengths), f"agreement check before {what}")
        everything = np.empty(int(lengths.sum()), np.uint8)
        displs = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        wait(comm.Iallgatherv(data, [everything, lengths, displs, MPI.BYTE]),
             f"agreement check before {what}")
        texts = [everything[d:d + n].tobytes().decode() for d, n in zip(displs, lengths)]
        for r, text in enumerate(texts[1:], start=1):
            if text != texts[0]:
                raise DistributedError(_first_difference(texts[0].split("\n"), text.split("\n"), r, what))
    _state["verified"].add(key)


def _first_difference(mine: list, theirs: list, r: int, what: str) -> str:
    for i in range(max(len(mine), len(theirs))):
        a = mine[i] if i < len(mine) else "(nothing)"
        b = theirs[i] if i < len(theirs) else "(nothing)"
        if a != b:
            break
    return (f"ranks disagree before {what}: rank 0 has {a!r} where rank {r} has {b!r} (entry {i} of "
            "the fingerprint of ops, shapes, dtypes and buckets); every rank must build the same graph")


def allreduce_average(src: np.ndarray, dst: np.ndarray, what: str, fingerprint: tuple) -> None:
    """dst = the mean over ranks of src (src may be dst)."""
    check_agreement(fingerprint, what)
    comm, MPI = init(), _state["MPI"]
    count("allreduce_calls")
    count("allreduce_bytes", dst.nbytes)
    if comm.Get_size() == 1 or dst.size == 0:
        if dst.ctypes.data != src.ctypes.data:
            dst[...] = src
        return
    if dst.ctypes.data == src.ctypes.data:
        request = comm.Iallreduce(MPI.IN_PLACE, dst, op=MPI.SUM)
    else:
        request = comm.Iallreduce(src, dst, op=MPI.SUM)
    wait(request, what)
    np.divide(dst, dst.dtype.type(comm.Get_size()), out=dst)


def start_allreduce(key: str, src: np.ndarray, dst: np.ndarray, label: str, fingerprint: tuple) -> None:
    """Start summing src over ranks into dst (src may be dst); finish_allreduce(key) completes it.
    dst must stay untouched until then."""
    check_agreement(fingerprint, label)
    comm, MPI = init(), _state["MPI"]
    if key in _state["pending"]:
        raise DistributedError(f"{label}: started twice without finishing (internal error)")
    count("allreduce_calls")
    count("allreduce_bytes", dst.nbytes)
    if dst.ctypes.data != src.ctypes.data:
        dst[...] = src
    request = None
    if comm.Get_size() > 1 and dst.size:
        request = comm.Iallreduce(MPI.IN_PLACE, dst, op=MPI.SUM)
    _state["pending"][key] = (request, dst, label)


def finish_allreduce(key: str, out: np.ndarray) -> None:
    """Wait for the all-reduce started under `key`; out = the sum / size."""
    request, summed, label = _state["pending"].pop(key)
    if request is not None:
        wait(request, label)
    np.divide(summed, summed.dtype.type(init().Get_size()), out=out)


def broadcast(src: np.ndarray, dst: np.ndarray, root: int, what: str, fingerprint: tuple) -> None:
    """dst = root's src on every rank (src may be dst)."""
    check_agreement(fingerprint, what)
    comm = init()
    if not 0 <= root < comm.Get_size():
        raise DistributedError(f"{what}: root {root} is not a rank (size {comm.Get_size()})")
    count("broadcast_calls")
    count("broadcast_bytes", dst.nbytes)
    if dst.ctypes.data != src.ctypes.data:
        dst[...] = src
    if comm.Get_size() > 1 and dst.size:
        wait(comm.Ibcast(dst, root=root), what)
