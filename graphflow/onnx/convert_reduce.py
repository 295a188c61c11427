"""ONNX reductions, ArgMax/ArgMin, softmax family and the normalizations built from them."""
from __future__ import annotations

import math

from .. import dtypes
from ..graph import Tensor
from ..ops import array as arr
from ..ops import elementwise as ew
from ..ops import nn as gnn
from ..ops import reduction as red
from ..ops.core import cast, identity, zeros_like
from .common import Unsupported, input_at, norm_axis, static_ints


def _log_sum_exp(x: Tensor, axes, keepdims: bool) -> Tensor:
    m = red.reduce_max(x, axes, keepdims=True)
    m = ew.where(ew.equal(ew.abs(m), math.inf), zeros_like(m), m)  # keep infinities exact
    out = ew.log(red.reduce_sum(ew.exp(x - m), axes, keepdims=True)) + m
    return out if keepdims else arr.squeeze(out, axes)


# kind: (opset where axes became an input, builder(x, axes, keepdims), float only)
_REDUCE = {
    "ReduceSum": (13, red.reduce_sum, False),
    "ReduceMean": (18, red.reduce_mean, False),
    "ReduceMax": (18, red.reduce_max, False),
    "ReduceMin": (18, red.reduce_min, False),
    "ReduceProd": (18, red.reduce_prod, False),
    "ReduceL1": (18, lambda x, a, k: red.reduce_sum(ew.abs(x), a, k), False),
    "ReduceL2": (18, lambda x, a, k: ew.sqrt(red.reduce_sum(x * x, a, k)), True),
    "ReduceSumSquare": (18, lambda x, a, k: red.reduce_sum(x * x, a, k), False),
    "ReduceLogSum": (18, lambda x, a, k: ew.log(red.reduce_sum(x, a, k)), True),
    "ReduceLogSumExp": (18, _log_sum_exp, True),
}


# what a reduction over no elements gives (numpy's and ONNX's identities); Mean's 0/0 is refused
_EMPTY = {"ReduceSum": 0.0, "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceSumSquare": 0.0,
          "ReduceProd": 1.0, "ReduceLogSum": -math.inf, "ReduceLogSumExp": -math.inf,
          "ReduceMax": -math.inf, "ReduceMin": math.inf}


def _empty_reduce(kind: str, x: Tensor, axes: list, keepdims: bool) -> Tensor:
    """A reduction over an empty axis: a constant of the reduction's identity."""
    import numpy as np

    from ..ops.core import constant
    from .common import known_shape
    if kind not in _EMPTY:
        raise Unsupported(f"{kind} over an empty axis")
    shape = [1 if i in axes else d for i, d in enumerate(known_shape(x))]
    if not keepdims:
        shape = [d for i, d in enumerate(shape) if i not in axes]
    value = _EMPTY[kind]
    if x.dtype.is_bool:
        value = value > 0  # max of nothing is False, min of nothing True
    elif x.dtype.is_integer and math.isinf(value):
        info = np.iinfo(x.dtype.np)
        value = info.min if value < 0 else info.max
    return constant(np.full(shape, value, x.dtype.np))


def _reduce(kind: str):
    since, build, float_only = _REDUCE[kind]

    def convert(node, inputs, attrs, opset):
        x = inputs[0]
        as_bool = x.dtype.is_bool and kind in ("ReduceMax", "ReduceMin") and opset >= 20
        if as_bool:
            x = cast(x, dtypes.int32)
        if x.dtype.is_bool or float_only and not x.dtype.is_floating:
            raise Unsupported(f"{kind} of a {x.dtype.name} tensor")
        keepdims = bool(attrs.get("keepdims", 1))
        if opset < since:
            axes = attrs.get("axes")
            noop = False
        else:
            t = input_at(inputs, 1)
            axes = None if t is None else static_ints(t, "axes")
            noop = bool(attrs.get("noop_with_empty_axes", 0))
        if not axes:
            if noop:
                return identity(inputs[0])
            axes = list(range(len(x.shape)))
        axes = sorted({norm_axis(a, len(x.shape)) for a in axes})
        if any(x.shape[a] == 0 for a in axes):
            return _empty_reduce(kind, inputs[0], axes, keepdims)
        if not axes:
            return identity(inputs[0])
        out = build(x, axes, keepdims)
        return cast(out, dtypes.bool_) if as_bool else out
    return convert


def _arg(kind: str):
    fn = red.argmax if kind == "ArgMax" else red.argmin

    def convert(node, inputs, attrs, opset):
        x = inputs[0]
        axis = norm_axis(attrs.get("axis", 0), len(x.shape))
        keepdims = attrs.get("keepdims", 1)
        n = x.shape[axis]
        if n == 0:
            raise Unsupported(f"{kind} over an empty axis")
        if attrs.get("select_last_index", 0):
            if n is None:
                raise Unsupported("select_last_index on an axis of unknown size")
            key = (slice(None),) * axis + (slice(None, None, -1),)
            out = (n - 1) - fn(arr.strided_slice(x, key), axis)
        else:
            out = fn(x, axis)
        return arr.expand_dims(out, axis) if keepdims else out
    return convert


def _flat2d(x: Tensor, axis: int) -> list[int]:
    outer, inner = x.shape[:axis], x.shape[axis:]
    dims = [math.prod(outer) if None not in outer else -1,
            math.prod(inner) if None not in inner else -1]
    if dims.count(-1) > 1:
        raise Unsupported("softmax (opset < 13) of a tensor with unknown dims on both sides")
    return dims


def _softmax_like(kind: str):
    def convert(node, inputs, attrs, opset):
        x = inputs[0]
        if not x.dtype.is_floating:
            raise Unsupported(f"{kind} of a {x.dtype.name} tensor")
        rank = len(x.shape)
        if opset < 13:
            axis = norm_axis(attrs.get("axis", 1), rank)
            if any(d is None for d in x.shape) or rank == 0:
                if axis != rank - 1:
                    raise Unsupported(f"{kind} (opset < 13) with unknown dims")
                return _apply(kind, x, axis)
            flat = arr.reshape(x, _flat2d(x, axis))
            return arr.reshape(_apply(kind, flat, 1), list(x.shape))
        return _apply(kind, x, norm_axis(attrs.get("axis", -1), rank))
    return convert


def _apply(kind: str, x: Tensor, axis: int) -> Tensor:
    if kind == "Softmax":
        return gnn.softmax(x, axis)
    if kind == "LogSoftmax":
        return gnn.log_softmax(x, axis)
    rank = len(x.shape)
    n = x.shape[axis]
    if n is None:
        raise Unsupported("Hardmax over an axis of unknown size")
    perm = [i for i in range(rank) if i != axis] + [axis]
    moved = arr.transpose(x, perm)
    hot = arr.one_hot(red.argmax(moved, rank - 1), n, dtype=x.dtype)
    back = [0] * rank
    for i, p in enumerate(perm):
        back[p] = i
    return arr.transpose(hot, back)


# ---- normalizations --------------------------------------------------------------------
def _moments(x: Tensor, axes: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """(mean, x - mean, biased variance), reduced with keepdims."""
    mean = red.reduce_mean(x, axes, keepdims=True)
    d = x - mean
    return mean, d, red.reduce_mean(d * d, axes, keepdims=True)


def _per_channel(t: Tensor, rank: int) -> Tensor:
    """A [C] parameter shaped to broadcast over N, C, spatial..."""
    return arr.reshape(t, [-1] + [1] * (rank - 2))


def _batch_norm(node, inputs, attrs, opset):
    x, scale, bias, mean, var = inputs
    if not x.dtype.is_floating:
        raise Unsupported(f"BatchNormalization of {x.dtype.name}")
    attrs.get("momentum")
    if opset < 7:
        attrs.get("is_test")
    if opset < 9 and attrs.get("spatial", 1) != 1:
        raise Unsupported("BatchNormalization spatial=0")
    if attrs.get("training_mode", 0):
        raise Unsupported("BatchNormalization in training mode")
    if opset < 6:
        attrs.get("consumed_inputs")
    if sum(1 for n in node.output[1:] if n):
        raise Unsupported("BatchNormalization's running statistics outputs (training mode)")
    for t in (scale, bias, mean, var):
        if t.dtype is not x.dtype:
            raise Unsupported("BatchNormalization parameters of a different dtype")
    rank = len(x.shape)
    if rank < 2:
        raise Unsupported("BatchNormalization of a rank < 2 input")
    inv = ew.rsqrt(_per_channel(var, rank) + attrs.get("epsilon", 1e-5))
    return (x - _per_channel(mean, rank)) * inv * _per_channel(scale, rank) + \
        _per_channel(bias, rank)


def _layer_norm(node, inputs, attrs, opset):
    x, scale = inputs[:2]
    bias = input_at(inputs, 2)
    if not x.dtype.is_floating:
        raise Unsupported(f"LayerNormalization of {x.dtype.name}")
    attrs.only("stash_type", 1)
    rank = len(x.shape)
    axis = norm_axis(attrs.get("axis", -1), rank)
    eps = attrs.get("epsilon", 1e-5)
    extra = [n for n in node.output[1:] if n]
    if (not extra and axis == rank - 1 and bias is not None and len(scale.shape) == 1
            and len(bias.shape) == 1 and scale.shape[0] == x.shape[-1] == bias.shape[0]
            and x.shape[-1] is not None):
        return gnn.layer_norm(x, scale, bias, axis=-1, epsilon=eps)
    axes = list(range(axis, rank))
    mean, d, var = _moments(x, axes)
    inv = ew.rsqrt(var + eps)
    y = d * inv * scale
    if bias is not None:
        y = y + bias
    return [y, mean, inv]


def _instance_norm(node, inputs, attrs, opset):
    x, scale, bias = inputs
    if not x.dtype.is_floating:
        raise Unsupported(f"InstanceNormalization of {x.dtype.name}")
    rank = len(x.shape)
    _, d, var = _moments(x, list(range(2, rank)))
    y = d * ew.rsqrt(var + attrs.get("epsilon", 1e-5))
    return y * _per_channel(scale, rank) + _per_channel(bias, rank)


def _group_norm(node, inputs, attrs, opset):
    x, scale, bias = inputs
    if not x.dtype.is_floating:
        raise Unsupported(f"GroupNormalization of {x.dtype.name}")
    attrs.only("stash_type", 1)
    groups = attrs["num_groups"]
    rank = len(x.shape)
    if rank < 3 or None in x.shape[1:] or x.shape[1] % groups:
        raise Unsupported("GroupNormalization needs known C (a multiple of num_groups) and "
                          "spatial dims")
    c = x.shape[1]
    if opset < 21:
        raise Unsupported("GroupNormalization before opset 21 (per-group scale and bias)")
    n = -1 if x.shape[0] is None else x.shape[0]
    grouped = arr.reshape(x, [n, groups, -1])
    _, d, var = _moments(grouped, [2])
    y = arr.reshape(d * ew.rsqrt(var + attrs.get("epsilon", 1e-5)), [n] + list(x.shape[1:]))
    return y * _per_channel(scale, rank) + _per_channel(bias, rank) if c else y


def _rms_norm(node, inputs, attrs, opset):
    x, scale = inputs
    if not x.dtype.is_floating:
        raise Unsupported(f"RMSNormalization of {x.dtype.name}")
    attrs.only("stash_type", 1)
    rank = len(x.shape)
    axis = norm_axis(attrs.get("axis", -1), rank)
    ms = red.reduce_mean(x * x, list(range(axis, rank)), keepdims=True)
    return x * ew.rsqrt(ms + attrs.get("epsilon", 1e-5)) * scale


def _lp_norm(node, inputs, attrs, opset):
    x = inputs[0]
    if not x.dtype.is_floating:
        raise Unsupported(f"LpNormalization of {x.dtype.name}")
    axis = norm_axis(attrs.get("axis", -1), len(x.shape))
    p = attrs.only("p", 2, 1)
    norm = red.reduce_sum(ew.abs(x), axis, keepdims=True) if p == 1 else \
        ew.sqrt(red.reduce_sum(x * x, axis, keepdims=True))
    zero = ew.equal(norm, 0.0)
    return ew.where(zero, zeros_like(x), x / ew.where(zero, norm + 1.0, norm))


TOPK_MAX_LEN = 1024  # TopK compares every pair along the axis


def _top_k(node, inputs, attrs, opset):
    """TopK by ranks: element i's rank counts the elements before it in the sorted order
    (larger, or equal with a lower index: ONNX's tie rule); output r is the rank-r element."""
    import numpy as np

    from ..ops.core import constant
    from .common import known_shape, static
    x = inputs[0]
    shape = known_shape(x)
    rank = len(shape)
    axis = norm_axis(attrs.get("axis", -1), rank)
    largest = attrs.get("largest", 1)
    attrs.get("sorted", 1)  # sorted output is one of the orders sorted=0 allows
    k = int(np.asarray(static(inputs[1], "k")).reshape(-1)[0])
    n = shape[axis]
    if not 0 <= k <= n or n > TOPK_MAX_LEN or x.dtype.is_bool:
        raise Unsupported(f"TopK k={k} over {n} {x.dtype.name} elements (at most {TOPK_MAX_LEN})")
    perm = [i for i in range(rank) if i != axis] + [axis]
    back = [perm.index(i) for i in range(rank)]
    xt = arr.transpose(x, perm) if axis != rank - 1 else x
    xi, xj = arr.expand_dims(xt, -1), arr.expand_dims(xt, -2)  # [..., i, 1], [..., 1, j]
    before = ew.greater(xj, xi) if largest else ew.less(xj, xi)
    earlier = constant(np.tril(np.ones((n, n), bool), -1))  # j < i
    before = ew.logical_or(before, ew.logical_and(ew.equal(xj, xi), earlier))
    ranks = red.reduce_sum(cast(before, dtypes.int64), -1)  # [..., n]
    pick = ew.equal(arr.expand_dims(ranks, -2),
                    constant(np.arange(k, dtype=np.int64).reshape(k, 1)))  # [..., k, n]
    index = red.reduce_sum(ew.where(pick, constant(np.arange(n, dtype=np.int64)),
                                    constant(np.int64(0))), -1)
    values = red.reduce_sum(ew.where(pick, arr.expand_dims(xt, -2), zeros_like(xj)), -1)
    if axis != rank - 1:
        values, index = arr.transpose(values, back), arr.transpose(index, back)
    return [values, index]


REDUCE = {kind: _reduce(kind) for kind in _REDUCE} | {
    "TopK": _top_k,
    "ArgMax": _arg("ArgMax"), "ArgMin": _arg("ArgMin"),
    "Softmax": _softmax_like("Softmax"), "LogSoftmax": _softmax_like("LogSoftmax"),
    "Hardmax": _softmax_like("Hardmax"),
    "BatchNormalization": _batch_norm, "LayerNormalization": _layer_norm,
    "InstanceNormalization": _instance_norm, "GroupNormalization": _group_norm, "RMSNormalization": _rms_norm,
    "LpNormalization": _lp_norm,
}
