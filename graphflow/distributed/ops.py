"""Collective ops: AllReduce (mean over ranks) and Broadcast (root's value everywhere).

Both are stateful (never folded, merged or fused) and carry `label` (what the error messages
call them) and `fingerprint` (what every rank must agree on before the first call). Their
numpy compute calls MPI; compiled devices run the same functions as host steps
(codegen/emit/collective.py) on the device buffers.
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError
from ..registry import NO_GRADIENT, Spec, register
from . import comm


def _float_infer(specs, label, fingerprint, **_):
    (x,) = specs
    if not x.dtype.is_floating:
        raise DTypeError(f"{label}: collectives average floating tensors, got {x.dtype.name}")
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


register("AllReduce", infer=_float_infer, compute=allreduce_compute, grad=NO_GRADIENT, stateful=True)
register("Broadcast", infer=_same_infer, compute=broadcast_compute, grad=NO_GRADIENT, stateful=True)
