"""ONNX GatherElements, NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss, from one_hot masks."""
from __future__ import annotations

from .. import dtypes
from ..graph import Tensor
from ..ops import array as arr
from ..ops import elementwise as ew
from ..ops import nn as gnn
from ..ops import reduction as red
from ..ops.core import cast, zeros_like
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


LOSS = {"GatherElements": _gather_elements, "NegativeLogLikelihoodLoss": _nll_loss,
        "SoftmaxCrossEntropyLoss": _sce_loss}
