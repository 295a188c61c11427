"""Collectives (AllReduce, Broadcast) as host steps: MPI runs between native kernel sequences.

No CUDA text: the translation unit shows a comment line. On the cpu device the buffers are
host memory, wrapped by numpy without a copy; on cuda they are staged through pinned host
buffers (a CUDA-aware MPI could take the device pointers; not done yet).
"""
from __future__ import annotations

import ctypes

import numpy as np

from graphflow.distributed import comm
from graphflow.graph import Operation

from ..devices.emulator import DeviceAllocation as HostAllocation
from ..kernel import EmitContext, Launch, numel
from . import emitter


def _view(alloc, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """A numpy array over a cpu-device buffer (no copy)."""
    n = numel(shape)
    if n == 0:
        return np.empty(shape, dtype)
    raw = (ctypes.c_char * (n * dtype.itemsize)).from_address(int(alloc))
    return np.frombuffer(raw, dtype).reshape(shape)


def _host_step(op: Operation, collective):
    """host(args, shapes) running collective(src, dst) on the op's input and output buffers."""
    dtype = op.outputs[0].dtype.np
    staging: dict = {}

    def run(args, shapes) -> None:
        src, dst = args
        shape = shapes[op.outputs[0]]
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


def _add(ctx: EmitContext, op: Operation, base: str, comment: str, collective) -> None:
    kb = ctx.builder(base, [op])
    kb.input(op.inputs[0])
    kb.output(op.outputs[0])
    kernel = kb.build(body="", launch=lambda shapes, device: Launch((1, 1, 1), (1, 1, 1)), comment=comment)
    kernel.host = _host_step(op, collective)
    ctx.add(kernel)


@emitter("AllReduce")
def emit_allreduce(ctx: EmitContext, op: Operation) -> None:
    label, fingerprint = op.attrs["label"], op.attrs["fingerprint"]
    _add(ctx, op, "allreduce", f"MPI all-reduce (mean over ranks) of {label}",
         lambda src, dst: comm.allreduce_average(src, dst, label, fingerprint))


@emitter("AllReduceStart")
def emit_allreduce_start(ctx: EmitContext, op: Operation) -> None:
    attrs = op.attrs
    _add(ctx, op, "allreduce_start", f"MPI all-reduce started (Iallreduce) for {attrs['label']}",
         lambda src, dst: comm.start_allreduce(attrs["key"], src, dst, attrs["label"], attrs["fingerprint"]))


@emitter("AllReduceWait")
def emit_allreduce_wait(ctx: EmitContext, op: Operation) -> None:
    attrs = op.attrs
    _add(ctx, op, "allreduce_wait", f"MPI all-reduce finished (wait, mean over ranks) for {attrs['label']}",
         lambda src, dst: comm.finish_allreduce(attrs["key"], dst))


@emitter("Broadcast")
def emit_broadcast(ctx: EmitContext, op: Operation) -> None:
    label, fingerprint, root = op.attrs["label"], op.attrs["fingerprint"], op.attrs["root"]
    _add(ctx, op, "broadcast", f"MPI broadcast from rank {root} of {label}",
         lambda src, dst: comm.broadcast(src, dst, root, label, fingerprint))
