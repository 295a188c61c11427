"""Matrix multiplication: batched for rank > 2, with numpy broadcasting of batch dims."""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..graph import Tensor
from ..registry import Spec, register
from ..shapes import broadcast_shapes, same_dim
from .array import sum_to_like
from .core import builder, make, match_dtypes


def _matmul_infer(specs, transpose_a, transpose_b):
    a, b = specs
    if a.dtype is not b.dtype:
        raise DTypeError(f"matmul: dtypes {a.dtype.name} and {b.dtype.name} differ")
    if a.dtype.is_bool:
        raise DTypeError("matmul of bool tensors")
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ShapeError(f"matmul needs tensors of rank >= 2, got shapes {list(a.shape)} and "
                         f"{list(b.shape)}")
    m, ka = (a.shape[-1], a.shape[-2]) if transpose_a else (a.shape[-2], a.shape[-1])
    kb, n = (b.shape[-1], b.shape[-2]) if transpose_b else (b.shape[-2], b.shape[-1])
    if not same_dim(ka, kb):
        raise ShapeError(f"matmul: inner dims differ, {list(a.shape)}{' (transposed)' * transpose_a}"
                         f" @ {list(b.shape)}{' (transposed)' * transpose_b}: {ka} vs {kb}")
    try:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"matmul: batch dims of {list(a.shape)} and {list(b.shape)} do not "
                         "broadcast") from None
    return Spec(batch + (m, n), a.dtype)


def _matmul_compute(a, b, transpose_a, transpose_b):
    if transpose_a:
        a = np.swapaxes(a, -1, -2)
    if transpose_b:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


def _batch_unbroadcast(g: Tensor, x: Tensor, other: Tensor) -> Tensor:
    if len(x.shape) == len(g.shape) and (len(x.shape) == 2 or (
            x.shape[:-2] == other.shape[:-2] and None not in x.shape[:-2])):
        return g
    return sum_to_like(g, x)


def _matmul_grad(op, g):
    a, b = op.inputs
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    if not ta and not tb:
        ga, gb = matmul(g, b, transpose_b=True), matmul(a, g, transpose_a=True)
    elif not ta and tb:
        ga, gb = matmul(g, b), matmul(g, a, transpose_a=True)
    elif ta and not tb:
        ga, gb = matmul(b, g, transpose_b=True), matmul(a, g)
    else:
        ga, gb = matmul(b, g, True, True), matmul(g, a, True, True)
    return [_batch_unbroadcast(ga, a, b), _batch_unbroadcast(gb, b, a)]


register("MatMul", infer=_matmul_infer, compute=_matmul_compute, grad=_matmul_grad)


@builder("matmul")
def matmul(a, b, transpose_a: bool = False, transpose_b: bool = False,
           name: str | None = None) -> Tensor:
    """a @ b over the last two dims; leading (batch) dims broadcast."""
    a, b = match_dtypes("matmul", a, b)
    return make("MatMul", [a, b], {"transpose_a": bool(transpose_a),
                                   "transpose_b": bool(transpose_b)}, name)


Tensor.__matmul__ = lambda a, b: matmul(a, b)
Tensor.__rmatmul__ = lambda a, b: matmul(b, a)
