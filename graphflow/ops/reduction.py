"""Reductions over any set of axes, and argmax/argmin."""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError
from ..graph import Tensor
from ..registry import NO_GRADIENT, Spec, register
from ..shapes import normalize_axes, normalize_axis, num_elements
from .array import broadcast_like, expand_dims
from .core import as_tensor, builder, cast, make


def _reduce_infer(specs, axis, keepdims):
    x = specs[0]
    if x.dtype.is_bool:
        raise DTypeError("cannot reduce a bool tensor; cast it to a number first")
    if keepdims:
        shape = tuple(1 if i in axis else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axis)
    return Spec(shape, x.dtype)


def _keepdims_grad(op, g):
    """g reshaped so it broadcasts against the reduction's input."""
    if op.attrs["keepdims"]:
        return g
    for a in op.attrs["axis"]:
        g = expand_dims(g, a)
    return g


def _mean_compute(x, axis, keepdims):
    if x.dtype.kind in "iu":
        count = max(1, int(np.prod([x.shape[a] for a in axis])))
        return np.trunc(np.sum(x, axis=axis, keepdims=keepdims) / count).astype(x.dtype)
    return np.mean(x, axis=axis, keepdims=keepdims).astype(x.dtype)


def _sum_grad(op, g):
    return [broadcast_like(_keepdims_grad(op, g), op.inputs[0])]


def _mean_grad(op, g):
    x = op.inputs[0]
    count = num_elements([x.shape[a] for a in op.attrs["axis"]])
    if count is None:
        count = make("ReducedSize", [x], {"axis": op.attrs["axis"]})
    return [broadcast_like(_keepdims_grad(op, g), x) / count]


def _extremum_grad(op, g):
    from .elementwise import equal
    x, y = op.inputs[0], op.outputs[0]
    y = _keepdims_grad(op, y)
    mask = cast(equal(x, y), x.dtype)
    ties = reduce_sum(mask, op.attrs["axis"], keepdims=True)
    return [mask / ties * _keepdims_grad(op, g)]


def _prod_grad(op, g):
    """d prod / d x_i = product of the other elements, exact with zeros among them:
    prod/x_i when no element is 0; the product of the nonzeros at the single 0; else 0."""
    from .core import ones_like
    from .elementwise import equal, where
    x, axis = op.inputs[0], op.attrs["axis"]
    zero = equal(x, 0.0)
    nonzero = where(zero, ones_like(x), x)
    prod_nonzero = reduce_prod(nonzero, axis, keepdims=True)
    zeros = reduce_sum(cast(zero, x.dtype), axis, keepdims=True)
    nothing = zeros_like_(prod_nonzero)
    others = where(zero, where(equal(zeros, 1.0), prod_nonzero, nothing),
                   where(equal(zeros, 0.0), prod_nonzero / nonzero, zeros_like_(x)))
    return [broadcast_like(_keepdims_grad(op, g), x) * others]


def zeros_like_(x):
    from .core import zeros_like
    return zeros_like(x)


REDUCTIONS = {
    "ReduceSum": ("reduce_sum", lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims,
                                                                 dtype=x.dtype), _sum_grad),
    "ReduceMean": ("reduce_mean", _mean_compute, _mean_grad),
    "ReduceMax": ("reduce_max", lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims),
                  _extremum_grad),
    "ReduceMin": ("reduce_min", lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims),
                  _extremum_grad),
    "ReduceProd": ("reduce_prod", lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims,
                                                                   dtype=x.dtype), _prod_grad),
}

for _type, (_public, _fn, _grad) in REDUCTIONS.items():
    register(_type, infer=_reduce_infer, compute=_fn, grad=_grad)


def _reduce(op_type: str, x, axis, keepdims: bool, name: str | None) -> Tensor:
    x = as_tensor(x)
    axes = normalize_axes(axis, len(x.shape), f"{REDUCTIONS[op_type][0]} axis")
    if not axes and not x.dtype.is_bool:
        return x
    return make(op_type, [x], {"axis": axes, "keepdims": bool(keepdims)}, name)


@builder("reduce_sum")
def reduce_sum(x, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Sum over `axis` (None: all axes; an int or a list; negatives count from the end)."""
    return _reduce("ReduceSum", x, axis, keepdims, name)


@builder("reduce_mean")
def reduce_mean(x, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Mean over `axis` (None: all axes); integer means truncate toward zero."""
    return _reduce("ReduceMean", x, axis, keepdims, name)


@builder("reduce_max")
def reduce_max(x, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Maximum over `axis` (None: all axes); the gradient splits evenly between ties."""
    return _reduce("ReduceMax", x, axis, keepdims, name)


@builder("reduce_min")
def reduce_min(x, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Minimum over `axis` (None: all axes); the gradient splits evenly between ties."""
    return _reduce("ReduceMin", x, axis, keepdims, name)


@builder("reduce_prod")
def reduce_prod(x, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Product over `axis` (None: all axes); its gradient is exact when elements are 0."""
    return _reduce("ReduceProd", x, axis, keepdims, name)


@builder("reduce_logsumexp")
def reduce_logsumexp(x, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """log(sum(exp(x))) over `axis`, computed stably as log(sum(exp(x - max))) + max."""
    from .array import squeeze
    from .core import stop_gradient
    from .elementwise import equal, exp, log, where
    x = as_tensor(x)
    if not x.dtype.is_floating:
        from ..graph import definition_site
        raise DTypeError(f"reduce_logsumexp needs a floating tensor, got {x.name} of dtype "
                         f"{x.dtype.name} (at {definition_site()})")
    axes = normalize_axes(axis, len(x.shape))
    with x.graph.as_default(), x.graph.name_scope(name or "reduce_logsumexp"):
        top = reduce_max(x, axes, keepdims=True)
        # an infinite max (all -inf, or some +inf) shifts by 0 instead: inf - inf would be NaN
        top = stop_gradient(where(equal(top - top, 0.0), top, zeros_like_(top)))
        total = log(reduce_sum(exp(x - top), axes, keepdims=keepdims))
        return total + (top if keepdims else squeeze(top, axes))


register("ReducedSize", infer=lambda specs, axis: Spec((), specs[0].dtype),
         compute=lambda x, axis: np.array(np.prod([x.shape[a] for a in axis]), x.dtype),
         grad=NO_GRADIENT)


# ---- argmax / argmin -------------------------------------------------------------
def _arg_infer(specs, axis, output_type):
    x = specs[0]
    if x.dtype.is_bool:
        raise DTypeError("argmax/argmin of a bool tensor; cast it first")
    return Spec(tuple(d for i, d in enumerate(x.shape) if i != axis), output_type)


register("ArgMax", infer=_arg_infer, grad=NO_GRADIENT,
         compute=lambda x, axis, output_type: np.argmax(x, axis).astype(output_type.np))
register("ArgMin", infer=_arg_infer, grad=NO_GRADIENT,
         compute=lambda x, axis, output_type: np.argmin(x, axis).astype(output_type.np))


@builder("argmax")
def argmax(x, axis: int = 0, output_type=dtypes.int64, name: str | None = None) -> Tensor:
    """Index of the largest value along axis (the first one on ties), int64."""
    x = as_tensor(x)
    axis = normalize_axis(axis, len(x.shape), "argmax axis")
    return make("ArgMax", [x], {"axis": axis, "output_type": dtypes.as_dtype(output_type)}, name)


@builder("argmin")
def argmin(x, axis: int = 0, output_type=dtypes.int64, name: str | None = None) -> Tensor:
    """Index of the smallest value along axis (the first one on ties), int64."""
    x = as_tensor(x)
    axis = normalize_axis(axis, len(x.shape), "argmin axis")
    return make("ArgMin", [x], {"axis": axis, "output_type": dtypes.as_dtype(output_type)}, name)

