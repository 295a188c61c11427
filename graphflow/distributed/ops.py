"""Collective ops: AllReduce (mean over ranks), Broadcast (root's value everywhere).

AllReduceStart/AllReduceWait split a bucket's all-reduce around the rest of backward. All are
stateful (never folded, merged or fused) and carry `label` (what the error messages
call them) and `fingerprint` (what every rank must agree on before the first call). Their
numpy compute calls MPI; compiled devices run the same functions as host steps
(codegen/emit/collective.py) on the device buffers.
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..graph import Tensor
from ..ops.core import as_tensor, make
from ..registry import NO_GRADIENT, Spec, register
from . import comm


def _float_infer(specs, label, fingerprint, **_):
    (x,) = specs
    if x.dtype.name not in ("float32", "float64"):
        raise DTypeError(f"{label}: all-reduce averages float32 or float64 tensors, got {x.dtype.name}")
    return Spec(x.shape, x.dtype)


def _same_infer(specs, **_):
    return specs[0]


def allreduce_compute(x: np.ndarray, label: str, fingerprint: tuple) -> np.ndarray:
    out = np.array(x, copy=True)
    comm.allreduce_average(out, out, label, fingerprint)
    return out


def broadcast_compute(x: np.ndarray, root: int, label: str, fingerprint: tuple) -> np.ndarray:
    out = np.array(x, copy=True)
    comm.broadcast(out, out, root, label, fingerprint)
    return out


def start_compute(x: np.ndarray, key: str, label: str, fingerprint: tuple) -> np.ndarray:
    out = np.array(x, copy=True)
    comm.start_allreduce(key, out, out, label, fingerprint)
    return out


def wait_compute(x: np.ndarray, key: str, label: str, fingerprint: tuple) -> np.ndarray:
    out = np.empty_like(x)
    comm.finish_allreduce(key, out)
    return out


register("AllReduce", infer=_float_infer, compute=allreduce_compute, grad=NO_GRADIENT, stateful=True)
# A bucket's all-reduce in two halves: started as soon as backward has its gradients, finished
# (waited for, divided by the size) before the update, so the rest of backward runs in between.
register("AllReduceStart", infer=_float_infer, compute=start_compute, grad=NO_GRADIENT, stateful=True)
register("AllReduceWait", infer=_float_infer, compute=wait_compute, grad=NO_GRADIENT, stateful=True)
register("Broadcast", infer=_same_infer, compute=broadcast_compute, grad=NO_GRADIENT, stateful=True)


def describe(t: Tensor) -> str:
    return f"{t.op.type} {t.op.name} {list(t.shape)} {t.dtype.name}"


def graph_fingerprint(tensors: list[Tensor]) -> list[str]:
    """One line per op that `tensors` depend on (type, name, shape, dtype; never values), in
    creation order: what every rank must agree on."""
    seen: set = set()
    stack = [t.op for t in tensors]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    graph = tensors[0].graph
    return [describe(op.outputs[0]) if op.outputs else f"{op.type} {op.name}"
            for op in graph.get_operations() if op in seen]


def allreduce(tensor: Tensor, name: str | None = None) -> Tensor:
    """The mean over every rank of `tensor` (its shape must be fully known)."""
    tensor = as_tensor(tensor)
    if not tensor.shape.is_fully_defined():
        raise ShapeError(f"cannot all-reduce {tensor.name}: its shape {list(tensor.shape)} is not fully "
                         "known, and every rank must send the same number of elements")
    fingerprint = tuple(graph_fingerprint([tensor]) + [f"allreduce of {tensor.name}"])
    return make("AllReduce", [tensor], {"label": f"all-reduce of {tensor.name}", "fingerprint": fingerprint},
                name=name or "allreduce")
