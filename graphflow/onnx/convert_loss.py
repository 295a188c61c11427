"""ONNX GatherElements, ScatterElements, NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss, from
one_hot masks (exact: every selected value is picked by a where, never multiplied by 0 or 1)."""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..graph import Tensor
from ..ops import array as arr
from ..ops import elementwise as ew
from ..ops import nn as gnn
from ..ops import reduction as red
from ..ops.core import cast, constant, ones_like, zeros_like
from .common import Unsupported, input_at, norm_axis


def _move_last(rank: int, axis: int) -> tuple[list[int], list[int]]:
    perm = [i for i in range(rank) if i != axis] + [axis]
    back = [0] * rank
    for i, p in enumerate(perm):
        back[p] = i
    return perm, back


def _gather_elements(node, inputs, attrs, opset):
    data, idx = inputs
    rank = len(data.shape)
    axis = norm_axis(attrs.get("axis", 0), rank)
    n = data.shape[axis]
    if n is None or len(idx.shape) != rank:
        raise Unsupported("GatherElements needs a known axis size and equal ranks")
    for i in range(rank):
        if i != axis and (idx.shape[i] is None or idx.shape[i] != data.shape[i]):
            raise Unsupported("GatherElements with indices smaller than the data off the axis")
    perm, back = _move_last(rank, axis)
    d = arr.transpose(data, perm)
    i = arr.transpose(ew.where(ew.less(idx, 0), idx + n, idx), perm)
    hot = ew.equal(arr.one_hot(i, n, dtype=dtypes.int32), 1)   # [..., m, n]
    source = cast(d, dtypes.int64) if d.dtype.is_bool else d
    picked = red.reduce_sum(ew.where(hot, arr.expand_dims(source, -2),
                                     zeros_like(arr.expand_dims(source, -2))), -1)
    picked = cast(picked, data.dtype) if data.dtype.is_bool else picked
    return arr.transpose(picked, back)


def _scatter_elements(node, inputs, attrs, opset):
    data, idx, upd = inputs
    rank = len(data.shape)
    axis = norm_axis(attrs.get("axis", 0), rank)
    reduction = attrs.only("reduction", "none", "add", "mul", "max", "min")
    n = data.shape[axis]
    if n is None or None in idx.shape or tuple(idx.shape) != tuple(upd.shape):
        raise Unsupported("ScatterElements needs known shapes and indices shaped like updates")
    if data.dtype.is_bool or upd.dtype is not data.dtype:
        raise Unsupported("ScatterElements of bool data or mismatched dtypes")
    for i in range(rank):
        if i != axis and idx.shape[i] != data.shape[i]:
            raise Unsupported("ScatterElements with indices smaller than the data off the axis")
    m = idx.shape[axis]
    perm, back = _move_last(rank, axis)
    d = arr.transpose(data, perm)                                     # [..., n]
    i = arr.transpose(ew.where(ew.less(idx, 0), idx + n, idx), perm)   # [..., m]
    u = arr.expand_dims(arr.transpose(upd, perm), -1)                 # [..., m, 1]
    hot = ew.equal(arr.one_hot(i, n, dtype=dtypes.int32), 1)          # [..., m, n]
    order = constant(np.arange(1, m + 1, dtype=np.int32).reshape(m, 1))
    weight = ew.where(hot, order + zeros_like(cast(hot, dtypes.int32)),
                      zeros_like(cast(hot, dtypes.int32)))
    hit = ew.greater(red.reduce_max(weight, -2), 0)                   # [..., n]
    spread = u + zeros_like(cast(hot, d.dtype))                       # [..., m, n]
    if reduction == "none":  # the last update to an index wins, as in ONNX's reference
        last = ew.equal(weight, red.reduce_max(weight, -2, keepdims=True)) & hot
        picked = red.reduce_sum(ew.where(last, spread, zeros_like(spread)), -2)
        out = ew.where(hit, picked, d)
    elif reduction == "add":
        out = d + red.reduce_sum(ew.where(hot, spread, zeros_like(spread)), -2)
    elif reduction == "mul":
        out = d * red.reduce_prod(ew.where(hot, spread, ones_like(spread)), -2)
    else:
        lowest = -np.inf if d.dtype.is_floating else np.iinfo(d.dtype.np).min
        fill = lowest if reduction == "max" else (
            np.inf if d.dtype.is_floating else np.iinfo(d.dtype.np).max)
        pick = red.reduce_max if reduction == "max" else red.reduce_min
        both = ew.maximum if reduction == "max" else ew.minimum
        best = pick(ew.where(hot, spread, constant(fill, d.dtype) + zeros_like(spread)), -2)
        out = ew.where(hit, both(d, best), d)
    return arr.transpose(out, back)


def nll(logp: Tensor, target: Tensor, weight: Tensor | None, reduction: str,
        ignore_index: int | None) -> Tensor:
    """ONNX NegativeLogLikelihoodLoss on [N, C, d...] log-probabilities."""
    rank = len(logp.shape)
    c = logp.shape[1]
    if c is None or not target.dtype.is_integer:
        raise Unsupported("the class count must be known and targets integers")
    valid = None
    if ignore_index is not None:
        valid = ew.not_equal(target, ignore_index)
        target = ew.where(valid, target, zeros_like(target))
    hot = ew.equal(arr.one_hot(target, c, dtype=dtypes.int32), 1)   # [N, d..., C]
    perm = [0, rank - 1] + list(range(1, rank - 1))
    hot = arr.transpose(hot, perm) if rank > 2 else hot
    loss = -red.reduce_sum(ew.where(hot, logp, zeros_like(logp)), 1)
    w = None
    if weight is not None:
        w = arr.gather(weight, target)
    if valid is not None:
        mask = cast(valid, logp.dtype)
        w = mask if w is None else w * mask
    if w is not None:
        loss = loss * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return red.reduce_sum(loss)
    if w is None:
        return red.reduce_mean(loss)
    return red.reduce_sum(loss) / red.reduce_sum(w)


def _nll_loss(node, inputs, attrs, opset):
    logp, target = inputs[:2]
    if not logp.dtype.is_floating:
        raise Unsupported(f"NegativeLogLikelihoodLoss of {logp.dtype.name}")
    reduction = attrs.only("reduction", "mean", "sum", "none")
    return nll(logp, target, input_at(inputs, 2), reduction, attrs.get("ignore_index"))


def _sce_loss(node, inputs, attrs, opset):
    scores, labels = inputs[:2]
    if not scores.dtype.is_floating:
        raise Unsupported(f"SoftmaxCrossEntropyLoss of {scores.dtype.name}")
    reduction = attrs.only("reduction", "mean", "sum", "none")
    logp = gnn.log_softmax(scores, 1)
    loss = nll(logp, labels, input_at(inputs, 2), reduction, attrs.get("ignore_index"))
    return [loss, logp]


LOSS = {"GatherElements": _gather_elements, "ScatterElements": _scatter_elements,
        "Scatter": _scatter_elements,  # ScatterElements before opset 11
        "NegativeLogLikelihoodLoss": _nll_loss, "SoftmaxCrossEntropyLoss": _sce_loss}
