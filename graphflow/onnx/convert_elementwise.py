"""ONNX elementwise ops (unary, binary, variadic, comparisons, logic, casts) as graphflow ops."""
from __future__ import annotations

import math
from functools import reduce

import numpy as np

from .. import dtypes
from ..graph import Tensor
from ..nn import relu, softplus
from ..ops import elementwise as ew
from ..ops.core import cast, constant, zeros_like
from .common import Unsupported, input_at, need_float, to_dtype


def _float_unary(fn):
    def convert(node, inputs, attrs, opset):
        need_float(inputs[0])
        return fn(inputs[0])
    return convert


def _unary(fn):
    return lambda node, inputs, attrs, opset: fn(inputs[0])


def _leaky_relu(node, inputs, attrs, opset):
    x, alpha = inputs[0], attrs.get("alpha", 0.01)
    need_float(x)
    return ew.where(ew.less(x, 0.0), x * alpha, x)


def _elu(node, inputs, attrs, opset):
    x, alpha = inputs[0], attrs.get("alpha", 1.0)
    need_float(x)
    return ew.where(ew.less(x, 0.0), (ew.exp(x) - 1.0) * alpha, x)


def _selu(node, inputs, attrs, opset):
    x = inputs[0]
    need_float(x)
    alpha = attrs.get("alpha", 1.67326319217681884765625)
    gamma = attrs.get("gamma", 1.05070102214813232421875)
    return ew.where(ew.less_equal(x, 0.0), ew.exp(x) * (alpha * gamma) - alpha * gamma, x * gamma)


def _celu(node, inputs, attrs, opset):
    x, alpha = inputs[0], attrs.get("alpha", 1.0)
    need_float(x)
    return relu(x) + ew.minimum(ew.exp(x / alpha) - 1.0, 0.0) * alpha


def _hard_sigmoid(node, inputs, attrs, opset):
    x = inputs[0]
    need_float(x)
    return ew.maximum(ew.minimum(x * attrs.get("alpha", 0.2) + attrs.get("beta", 0.5), 1.0), 0.0)


def _hard_swish(node, inputs, attrs, opset):
    x = inputs[0]
    need_float(x)
    return x * ew.maximum(ew.minimum(x * (1 / 6) + 0.5, 1.0), 0.0)


def _thresholded_relu(node, inputs, attrs, opset):
    x = inputs[0]
    need_float(x)
    return ew.where(ew.greater(x, attrs.get("alpha", 1.0)), x, zeros_like(x))


def _softsign(node, inputs, attrs, opset):
    need_float(inputs[0])
    return inputs[0] / (ew.abs(inputs[0]) + 1.0)


def _mish(node, inputs, attrs, opset):
    need_float(inputs[0])
    return inputs[0] * ew.tanh(softplus(inputs[0]))


def _swish(node, inputs, attrs, opset):
    need_float(inputs[0])
    return inputs[0] * ew.sigmoid(inputs[0] * attrs.get("alpha", 1.0))


def _prelu(node, inputs, attrs, opset):
    x, slope = inputs
    need_float(x)
    return ew.where(ew.less(x, 0.0), x * slope, x)


def _shrink(node, inputs, attrs, opset):
    x = inputs[0]
    need_float(x)
    lambd, bias = attrs.get("lambd", 0.5), attrs.get("bias", 0.0)
    return ew.where(ew.less(x, -lambd), x + bias,
                    ew.where(ew.greater(x, lambd), x - bias, zeros_like(x)))


def _gelu(node, inputs, attrs, opset):
    need_float(inputs[0])
    return ew.gelu(inputs[0], approximate=attrs.only("approximate", "none", "tanh") == "tanh")


def _reciprocal(node, inputs, attrs, opset):
    need_float(inputs[0])
    return 1.0 / inputs[0]


def _tan(node, inputs, attrs, opset):
    need_float(inputs[0])
    return ew.sin(inputs[0]) / ew.cos(inputs[0])


def _sinh(node, inputs, attrs, opset):
    need_float(inputs[0])
    return (ew.exp(inputs[0]) - ew.exp(-inputs[0])) * 0.5


def _cosh(node, inputs, attrs, opset):
    need_float(inputs[0])
    return (ew.exp(inputs[0]) + ew.exp(-inputs[0])) * 0.5


def _is_nan(node, inputs, attrs, opset):
    need_float(inputs[0])
    return ew.not_equal(inputs[0], inputs[0])


def _is_inf(node, inputs, attrs, opset):
    x = inputs[0]
    need_float(x)
    pos, neg = attrs.get("detect_positive", 1), attrs.get("detect_negative", 1)
    parts = ([ew.equal(x, math.inf)] if pos else []) + ([ew.equal(x, -math.inf)] if neg else [])
    if not parts:
        return ew.not_equal(x, x) & ew.equal(x, x)
    return reduce(ew.logical_or, parts)


def _not(node, inputs, attrs, opset):
    return ew.equal(inputs[0], False)


# ---- binary -----------------------------------------------------------------------------
def _same_dtype(a: Tensor, b: Tensor) -> None:
    if a.dtype is not b.dtype:
        raise Unsupported(f"operands have different dtypes ({a.dtype.name}, {b.dtype.name})")


def _binary(fn):
    def convert(node, inputs, attrs, opset):
        a, b = inputs
        _same_dtype(a, b)
        return fn(a, b)
    return convert


def _int_binary(fn):
    def convert(node, inputs, attrs, opset):
        a, b = inputs
        _same_dtype(a, b)
        if not a.dtype.is_integer:
            raise Unsupported(f"{node.op_type} of {a.dtype.name} tensors (integers only)")
        return fn(a, b)
    return convert


def _bitwise_not(node, inputs, attrs, opset):
    if not inputs[0].dtype.is_integer:
        raise Unsupported(f"BitwiseNot of {inputs[0].dtype.name} tensors (integers only)")
    return ew.bitwise_not(inputs[0])


def _bit_shift(node, inputs, attrs, opset):
    direction = attrs.only("direction", "LEFT", "RIGHT")
    fn = ew.left_shift if direction == "LEFT" else ew.right_shift
    return _int_binary(fn)(node, inputs, attrs, opset)


def trunc_div(a: Tensor, b: Tensor) -> Tensor:
    """Integer division rounding toward zero (C's and ONNX's), from floor division."""
    q = ew.floordiv(a, b)
    inexact = ew.not_equal(q * b, a)
    signs_differ = ew.not_equal(ew.less(a, 0), ew.less(b, 0))
    return q + cast(inexact & signs_differ, a.dtype)


def _div(node, inputs, attrs, opset):
    a, b = inputs
    _same_dtype(a, b)
    if a.dtype.is_integer:
        return trunc_div(a, b)
    return ew.divide(a, b)


def _mod(node, inputs, attrs, opset):
    a, b = inputs
    _same_dtype(a, b)
    fmod = attrs.get("fmod", 0)
    if a.dtype.is_floating:
        return ew.fmod(a, b) if fmod else ew.floormod(a, b)
    if not a.dtype.is_integer:
        raise Unsupported(f"Mod of {a.dtype.name} tensors is not supported")
    q = trunc_div(a, b) if fmod else ew.floordiv(a, b)
    return a - q * b


def _pow(node, inputs, attrs, opset):
    x, y = inputs
    if x.dtype.is_bool or y.dtype.is_bool:
        raise Unsupported("Pow of bool tensors")
    if x.dtype is y.dtype:
        return ew.pow(x, y)
    if x.dtype.is_floating:
        return ew.pow(x, cast(y, x.dtype))
    return cast(ew.pow(cast(x, dtypes.float64), cast(y, dtypes.float64)), x.dtype)


def _logic(fn):
    def convert(node, inputs, attrs, opset):
        a, b = inputs
        if not (a.dtype.is_bool and b.dtype.is_bool):
            raise Unsupported("logical ops need bool tensors")
        return fn(a, b)
    return convert


def _variadic(fn):
    def convert(node, inputs, attrs, opset):
        for t in inputs[1:]:
            _same_dtype(inputs[0], t)
        return reduce(fn, inputs)
    return convert


def _mean(node, inputs, attrs, opset):
    need_float(inputs[0])
    return _variadic(ew.add)(node, inputs, attrs, opset) / float(len(inputs))


def _where(node, inputs, attrs, opset):
    cond, a, b = inputs
    _same_dtype(a, b)
    return ew.where(cond, a, b)


def _cast(node, inputs, attrs, opset):
    attrs.get("saturate")  # only meaningful for float8 targets, which are refused
    if attrs.get("round_mode", "up") != "up":
        raise Unsupported("Cast round_mode other than 'up'")
    return cast(inputs[0], to_dtype(attrs["to"]))


def _cast_like(node, inputs, attrs, opset):
    attrs.get("saturate")
    if attrs.get("round_mode", "up") != "up":
        raise Unsupported("CastLike round_mode other than 'up'")
    return cast(inputs[0], inputs[1].dtype)


def _clip(node, inputs, attrs, opset):
    x = inputs[0]
    if x.dtype.is_bool:
        raise Unsupported("Clip of a bool tensor")
    if opset < 11:
        lo, hi = attrs.get("min", -np.inf), attrs.get("max", np.inf)
        lo = None if lo == -np.inf else constant(lo, x.dtype)
        hi = None if hi == np.inf else constant(hi, x.dtype)
    else:
        lo, hi = input_at(inputs, 1), input_at(inputs, 2)
    for bound in (lo, hi):
        if bound is not None:
            _same_dtype(x, bound)
            if len(bound.shape) > 0 and bound.shape != (1,):
                raise Unsupported("Clip bounds must be scalars")
    out = x
    if lo is not None:
        out = ew.maximum(out, _scalar(lo))
    if hi is not None:
        out = ew.minimum(out, _scalar(hi))
    return out


def _scalar(t: Tensor) -> Tensor:
    from ..ops.array import reshape
    return reshape(t, ()) if len(t.shape) else t


ELEMENTWISE = {
    "Abs": _unary(ew.abs), "Neg": _unary(ew.negative), "Sign": _unary(ew.sign),
    "Relu": _unary(relu),
    "Sqrt": _float_unary(ew.sqrt), "Exp": _float_unary(ew.exp), "Log": _float_unary(ew.log),
    "Sin": _float_unary(ew.sin), "Cos": _float_unary(ew.cos), "Tanh": _float_unary(ew.tanh),
    "Sigmoid": _float_unary(ew.sigmoid), "Erf": _float_unary(ew.erf),
    "Softplus": _float_unary(softplus), "Floor": _float_unary(ew.floor),
    "Ceil": _float_unary(ew.ceil), "Round": _float_unary(ew.round), "Tan": _tan, "Sinh": _sinh, "Cosh": _cosh,
    "Reciprocal": _reciprocal, "LeakyRelu": _leaky_relu, "Elu": _elu, "Selu": _selu,
    "Celu": _celu, "HardSigmoid": _hard_sigmoid, "HardSwish": _hard_swish,
    "ThresholdedRelu": _thresholded_relu, "Softsign": _softsign, "Mish": _mish,
    "Swish": _swish, "PRelu": _prelu, "Shrink": _shrink, "Gelu": _gelu, "IsNaN": _is_nan,
    "IsInf": _is_inf, "Not": _not,
    "Add": _binary(ew.add), "Sub": _binary(ew.subtract), "Mul": _binary(ew.multiply),
    "Div": _div, "Mod": _mod, "Pow": _pow,
    "Equal": _binary(ew.equal), "Less": _binary(ew.less), "Greater": _binary(ew.greater),
    "LessOrEqual": _binary(ew.less_equal), "GreaterOrEqual": _binary(ew.greater_equal),
    "And": _logic(ew.logical_and), "Or": _logic(ew.logical_or), "Xor": _logic(ew.not_equal),
    "Max": _variadic(ew.maximum), "Min": _variadic(ew.minimum), "Sum": _variadic(ew.add),
    "BitwiseAnd": _int_binary(ew.bitwise_and), "BitwiseOr": _int_binary(ew.bitwise_or),
    "BitwiseXor": _int_binary(ew.bitwise_xor), "BitwiseNot": _bitwise_not,
    "BitShift": _bit_shift,
    "Mean": _mean, "Where": _where, "Cast": _cast, "CastLike": _cast_like, "Clip": _clip,
}
