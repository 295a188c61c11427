"""Collectives (AllReduce, AllReduceStart/Wait, Broadcast) as host steps on the device buffers.

No CUDA text: the translation unit shows a comment line. On the cpu device each step has a
native form, a C function of codegen/devices/mpi_collectives.c (built with mpicc), that runs as
an entry of the step's one native launch sequence: a warm step never returns to Python for
MPI. Without mpicc (gf.distributed.STATS['native'] says why) the steps run from Python between
native sequences, on numpy views of the host buffers (no copy). On cuda they are staged through
pinned host buffers (a CUDA-aware MPI could take the device pointers; not done yet).
"""
from __future__ import annotations

import ctypes

import numpy as np

from graphflow.distributed import comm
from graphflow.errors import DistributedError
from graphflow.graph import Operation

from ..devices import mpi_native
from ..devices.emulator import DeviceAllocation as HostAllocation
from ..kernel import EmitContext, Launch, numel
from ..launch import NativeCall
from . import emitter

MAX_MPI_COUNT = 2**31 - 1  # MPI's int count: larger collectives stay Python host steps
_pending: dict[str, ctypes.Array] = {}  # AllReduceStart key -> its request, shared with the wait


def _view(alloc, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """A numpy array over a cpu-device buffer (no copy)."""
    n = numel(shape)
    if n == 0:
        return np.empty(shape, dtype)
    raw = (ctypes.c_char * (n * dtype.itemsize)).from_address(int(alloc))
    return np.frombuffer(raw, dtype).reshape(shape)


def _host_step(op: Operation, collective):
    """host(args, shapes) running collective(src, dst) on the op's input and output buffers
    (shapes: per argument, its tensor's shape)."""
    dtype = op.outputs[0].dtype.np
    staging: dict = {}

    def run(args, shapes) -> None:
        comm.count("host_step_calls")
        src, dst = args
        shape = shapes[1]  # the output's
        if isinstance(dst, HostAllocation):
            collective(_view(src, shape, dtype), _view(dst, shape, dtype))
            return
        import pycuda.driver as cuda  # the cuda device: stage through a pinned host buffer

        if shape not in staging:
            staging[shape] = cuda.pagelocked_empty(shape, dtype)
        host = staging[shape]
        if host.size:
            cuda.memcpy_dtoh(host, src)
        collective(host, host)
        if host.size:
            cuda.memcpy_htod(dst, host)

    return run


def _native_form(name: str, op: Operation, symbol: str):
    """native(args, shapes) -> a NativeCall running `symbol` of mpi_collectives.c on the step's
    buffers, or None (no usable library, or a count MPI's int cannot hold). Checks that every
    rank agrees (once per fingerprint) before any data moves, as the Python path does."""
    attrs = op.attrs
    itemsize = op.outputs[0].dtype.np.itemsize

    def native(args: list, shapes: dict) -> NativeCall | None:
        lib = mpi_native.library(comm.mpi())
        if lib is None:
            comm.note_native(f"no: {mpi_native.reason()}; collectives run as Python host steps")
            return None
        count = numel(shapes[1])  # the output's
        if count * itemsize > MAX_MPI_COUNT:
            return None
        comm.note_native("yes")
        world = comm.init()
        comm.check_agreement(attrs["fingerprint"], attrs["label"])
        if op.type == "Broadcast" and not 0 <= attrs["root"] < world.Get_size():
            raise DistributedError(f"{attrs['label']}: root {attrs['root']} is not a rank "
                                   f"(size {world.Get_size()})")
        pending = None
        if op.type in ("AllReduceStart", "AllReduceWait"):
            pending = _pending.get(attrs["key"])
            if pending is None:
                pending = _pending[attrs["key"]] = ctypes.create_string_buffer(lib.gf_mpi_pending_bytes())
        limit = comm.timeout()
        message = f"{op.describe()}: {comm.timeout_message(attrs['label'], limit)}".encode()
        label = f"{op.describe()}: {attrs['label']}".encode()
        block = mpi_native.Args(count=count, elem_bytes=itemsize, comm=world.py2f(),
                                root=attrs.get("root", 0), timeout=limit, timeout_message=message,
                                label=label,
                                pending=ctypes.addressof(pending) if pending is not None else None,
                                counts=comm.COUNTERS.ctypes.data)
        call = NativeCall(name, mpi_native.function(lib, symbol), block, 2, DistributedError,
                          keep=(message, label, pending))
        for i, arg in enumerate(args):
            call.set_arg(i, arg)
        return call

    return native


def _add(ctx: EmitContext, op: Operation, base: str, comment: str, collective, symbol: str) -> None:
    kb = ctx.builder(base, [op])
    kb.input(op.inputs[0])
    kb.output(op.outputs[0])
    kernel = kb.build(body="", launch=lambda shapes, device: Launch((1, 1, 1), (1, 1, 1)), comment=comment)
    kernel.host = _host_step(op, collective)
    if ctx.device == "cpu":  # the emulator's launch sequence runs host C functions too
        kernel.host.native = _native_form(kernel.name, op, symbol)
    ctx.add(kernel)


@emitter("AllReduce")
def emit_allreduce(ctx: EmitContext, op: Operation) -> None:
    label, fingerprint = op.attrs["label"], op.attrs["fingerprint"]
    _add(ctx, op, "allreduce", f"MPI all-reduce (mean over ranks) of {label}",
         lambda src, dst: comm.allreduce_average(src, dst, label, fingerprint), "gf_mpi_allreduce")


@emitter("AllReduceStart")
def emit_allreduce_start(ctx: EmitContext, op: Operation) -> None:
    attrs = op.attrs
    _add(ctx, op, "allreduce_start", f"MPI all-reduce started (Iallreduce) for {attrs['label']}",
         lambda src, dst: comm.start_allreduce(attrs["key"], src, dst, attrs["label"], attrs["fingerprint"]),
         "gf_mpi_allreduce_start")


@emitter("AllReduceWait")
def emit_allreduce_wait(ctx: EmitContext, op: Operation) -> None:
    attrs = op.attrs
    _add(ctx, op, "allreduce_wait", f"MPI all-reduce finished (wait, mean over ranks) for {attrs['label']}",
         lambda src, dst: comm.finish_allreduce(attrs["key"], dst), "gf_mpi_allreduce_wait")


@emitter("Broadcast")
def emit_broadcast(ctx: EmitContext, op: Operation) -> None:
    label, fingerprint, root = op.attrs["label"], op.attrs["fingerprint"], op.attrs["root"]
    _add(ctx, op, "broadcast", f"MPI broadcast from rank {root} of {label}",
         lambda src, dst: comm.broadcast(src, dst, root, label, fingerprint), "gf_mpi_broadcast")
