"""Elementwise ops, as tables: one row per op with its numpy reference and gradient.

Binary ops broadcast like numpy; their gradients are reduced back to each
operand's shape with `unbroadcast`.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..errors import DTypeError
from ..graph import Tensor
from ..registry import NO_GRADIENT, Spec, register
from ..shapes import broadcast_shapes
from .array import unbroadcast
from .core import as_tensor, builder, cast, make, match_dtypes, zeros_like

_erf = np.frompyfunc(math.erf, 1, 1)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _np_erf(x):
    return np.asarray(_erf(x), dtype=x.dtype)  # frompyfunc gives a bare float for 0-d x


def _np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(x.dtype.type(_SQRT_2_OVER_PI) * (x + x.dtype.type(0.044715) * x**3)))


def _np_softplus(x):
    return np.logaddexp(x, x.dtype.type(0))


def _np_sigmoid(x):  # stable for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _gelu_grad(x, y, g):
    cdf = 0.5 * (1.0 + erf(x * (1 / math.sqrt(2.0))))
    pdf = exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    return g * (cdf + x * pdf)


def _gelu_tanh_grad(x, y, g):
    inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
    t = tanh(inner)
    dinner = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
    return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner)


def _silu_grad(x, y, g):
    s = sigmoid(x)
    return g * (s * (1.0 + x * (1.0 - s)))


def _relu_grad(x, y, g):
    return where(greater(x, 0), g, zeros_like(g))


def _elu_grad(x, y, g):
    return where(greater(x, 0), g, g * (y + 1.0))


def _np_round(x):  # half to even, as TF (np.rint); integers pass through
    return x if x.dtype.kind in "iu" else np.rint(x)


# type: (public name, numpy reference, gradient(x, y, g) or None, accepted dtypes)
UNARY = {
    "Neg": ("negative", np.negative, lambda x, y, g: -g, "number"),
    "Abs": ("abs", np.abs, lambda x, y, g: g * sign(x), "number"),
    "Sign": ("sign", np.sign, None, "number"),
    "Square": ("square", np.square, lambda x, y, g: g * (x * 2.0), "number"),
    "Sqrt": ("sqrt", np.sqrt, lambda x, y, g: g * 0.5 / y, "float"),
    "Rsqrt": ("rsqrt", lambda x: (1 / np.sqrt(x)).astype(x.dtype),
              lambda x, y, g: g * (y * y * y) * -0.5, "float"),
    "Exp": ("exp", np.exp, lambda x, y, g: g * y, "float"),
    "Log": ("log", np.log, lambda x, y, g: g / x, "float"),
    "Sin": ("sin", np.sin, lambda x, y, g: g * cos(x), "float"),
    "Cos": ("cos", np.cos, lambda x, y, g: -(g * sin(x)), "float"),
    "Tanh": ("tanh", np.tanh, lambda x, y, g: g * (1.0 - y * y), "float"),
    "Sigmoid": ("sigmoid", _np_sigmoid, lambda x, y, g: g * (y * (1.0 - y)), "float"),
    "Erf": ("erf", _np_erf,
            lambda x, y, g: g * (2 / math.sqrt(math.pi)) * exp(-(x * x)), "float"),
    "Relu": ("relu", lambda x: np.maximum(x, x.dtype.type(0)), _relu_grad, "number"),
    "Gelu": ("gelu", lambda x: (0.5 * x * (1 + _np_erf(x / x.dtype.type(math.sqrt(2))))).astype(
        x.dtype), _gelu_grad, "float"),
    "GeluTanh": ("gelu_tanh", _np_gelu_tanh, _gelu_tanh_grad, "float"),
    "Silu": ("silu", lambda x: x * _np_sigmoid(x), _silu_grad, "float"),
    "Softplus": ("softplus", _np_softplus, lambda x, y, g: g * sigmoid(x), "float"),
    "Elu": ("elu", lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))).astype(x.dtype),
            _elu_grad, "float"),
    "Log1p": ("log1p", np.log1p, lambda x, y, g: g / (x + 1.0), "float"),
    # no gradient, as in TF1 (the derivative is zero almost everywhere)
    "Floor": ("floor", np.floor, None, "float"),
    "Ceil": ("ceil", np.ceil, None, "float"),
    "Round": ("round", _np_round, None, "number"),
    "BitwiseNot": ("bitwise_not", np.invert, None, "int"),
}


_KIND_TESTS = {"float": ("a floating dtype", lambda d: d.is_floating),
               "int": ("an integer dtype", lambda d: d.is_integer),
               "number": ("a number dtype", lambda d: d.is_floating or d.is_integer),
               "any": ("", lambda d: True)}


def _check_kind(op_type: str, dtype, kinds: str) -> None:
    needed, ok = _KIND_TESTS[kinds]
    if not ok(dtype):
        raise DTypeError(f"{op_type} does not accept {dtype.name} ({needed} needed)")


def _unary_infer(kinds, op_type):
    def infer(specs):
        _check_kind(op_type, specs[0].dtype, kinds)
        return specs[0]
    return infer


def _unary_grad(rule):
    return lambda op, g: [rule(op.inputs[0], op.outputs[0], g)]


def _unary_builder(op_type: str, public: str):
    def build(x, name: str | None = None) -> Tensor:
        return make(op_type, [as_tensor(x)], name=name)
    build.__name__ = build.__qualname__ = public
    build.__doc__ = f"Elementwise {public}."
    return builder(public)(build)


for _type, (_public, _np_fn, _rule, _kinds) in UNARY.items():
    register(_type, infer=_unary_infer(_kinds, _type), compute=_np_fn,
             grad=NO_GRADIENT if _rule is None else _unary_grad(_rule))
    globals()[_public] = _unary_builder(_type, _public)


# ---- binary -----------------------------------------------------------------
def _div_grads(x, y, g):
    return g / y, -(g * x / y / y)


def _pow_grads(x, y, g):
    z = pow(x, y)
    safe_log = where(greater(x, 0), log(where(greater(x, 0), x, ones_like_(x))), zeros_like(x))
    return g * y * pow(x, y - 1.0), g * z * safe_log


def ones_like_(x):
    from .core import ones_like
    return ones_like(x)


# type: (public name, numpy reference, gradients(x, y, g) or None, accepted dtypes, bool result)
BINARY = {
    "Add": ("add", np.add, lambda x, y, g: (g, g), "number", False),
    "Sub": ("subtract", np.subtract, lambda x, y, g: (g, -g), "number", False),
    "Mul": ("multiply", np.multiply, lambda x, y, g: (g * y, g * x), "number", False),
    "Div": ("divide", lambda x, y: (np.floor_divide(x, y) if x.dtype.kind in "iu"
                                    else np.true_divide(x, y)), _div_grads, "number", False),
    "Pow": ("pow", np.power, _pow_grads, "number", False),
    "Maximum": ("maximum", np.maximum,
                lambda x, y, g: (where(greater_equal(x, y), g, zeros_like(g)),
                                 where(less(x, y), g, zeros_like(g))), "number", False),
    "Minimum": ("minimum", np.minimum,
                lambda x, y, g: (where(less_equal(x, y), g, zeros_like(g)),
                                 where(greater(x, y), g, zeros_like(g))), "number", False),
    "Equal": ("equal", np.equal, None, "any", True),
    "NotEqual": ("not_equal", np.not_equal, None, "any", True),
    "Less": ("less", np.less, None, "number", True),
    "LessEqual": ("less_equal", np.less_equal, None, "number", True),
    "Greater": ("greater", np.greater, None, "number", True),
    "GreaterEqual": ("greater_equal", np.greater_equal, None, "number", True),
    "LogicalAnd": ("logical_and", np.logical_and, None, "bool", True),
    "LogicalOr": ("logical_or", np.logical_or, None, "bool", True),
    "BitwiseAnd": ("bitwise_and", np.bitwise_and, None, "int", False),
    "BitwiseOr": ("bitwise_or", np.bitwise_or, None, "int", False),
    "BitwiseXor": ("bitwise_xor", np.bitwise_xor, None, "int", False),
    # float remainders: C's fmod (sign of x) and numpy's mod (sign of y)
    "FMod": ("fmod", np.fmod, None, "float", False),
    "FloorMod": ("floormod", np.mod, None, "float", False),
    # shifts by the bit width or more give 0 (numpy's rule; C leaves it undefined)
    "LeftShift": ("left_shift", np.left_shift, None, "int", False),
    "RightShift": ("right_shift", np.right_shift, None, "int", False),
}


def _binary_infer(op_type, kinds, boolean):
    def infer(specs):
        x, y = specs
        if x.dtype is not y.dtype:
            raise DTypeError(f"{op_type}: dtypes {x.dtype.name} and {y.dtype.name} differ")
        if kinds == "bool":
            if not x.dtype.is_bool:
                raise DTypeError(f"{op_type} needs bool tensors, got {x.dtype.name}")
        else:
            _check_kind(op_type, x.dtype, kinds)
        return Spec(broadcast_shapes(x.shape, y.shape), dtypes.bool_ if boolean else x.dtype)
    return infer


def _binary_grad(rule):
    def grad(op, g):
        x, y = op.inputs
        gx, gy = rule(x, y, g)
        return [unbroadcast(gx, x, [y]), unbroadcast(gy, y, [x])]
    return grad


def _binary_builder(op_type: str, public: str):
    def build(x, y, name: str | None = None) -> Tensor:
        x, y = match_dtypes(public, x, y)
        return make(op_type, [x, y], name=name)
    build.__name__ = build.__qualname__ = public
    build.__doc__ = f"Elementwise {public}, with numpy broadcasting."
    return builder(public)(build)


for _type, (_public, _np_fn, _rule, _kinds, _bool) in BINARY.items():
    register(_type, infer=_binary_infer(_type, _kinds, _bool), compute=_np_fn,
             grad=NO_GRADIENT if _rule is None else _binary_grad(_rule))
    globals()[_public] = _binary_builder(_type, _public)

_raw_divide = globals()["divide"]


@builder("divide")
def divide(x, y, name: str | None = None) -> Tensor:
    """x / y. Integer tensors divide as float64, as TF1's truediv does."""
    x, y = match_dtypes("divide", x, y)
    if x.dtype.is_integer:
        x, y = cast(x, dtypes.float64), cast(y, dtypes.float64)
    return _raw_divide(x, y, name)


@builder("floordiv")
def floordiv(x, y, name: str | None = None) -> Tensor:
    """x // y, rounding toward -inf (integers only here; floats use floor(x / y))."""
    x, y = match_dtypes("floordiv", x, y)
    if not x.dtype.is_integer:
        raise DTypeError(f"floordiv of {x.dtype.name} tensors: only integers are supported")
    return _raw_divide(x, y, name or "floordiv")


# ---- where -------------------------------------------------------------------
def _where_infer(specs):
    cond, a, b = specs
    if not cond.dtype.is_bool:
        raise DTypeError(f"where: condition must be bool, got {cond.dtype.name}")
    if a.dtype is not b.dtype:
        raise DTypeError(f"where: branches have different dtypes {a.dtype.name} and {b.dtype.name}")
    return Spec(broadcast_shapes(cond.shape, a.shape, b.shape), a.dtype)


def _where_grad(op, g):
    cond, a, b = op.inputs
    zero = zeros_like(g)
    return [None, unbroadcast(where(cond, g, zero), a, [cond, b]),
            unbroadcast(where(cond, zero, g), b, [cond, a])]


register("Select", infer=_where_infer, compute=lambda c, a, b: np.where(c, a, b), grad=_where_grad)


@builder("where")
def where(condition, x, y, name: str | None = None) -> Tensor:
    """Pick x where condition is true, else y; all three broadcast."""
    condition = as_tensor(condition)
    x, y = match_dtypes("where", x, y)
    return make("Select", [condition, x, y], name=name or "where")


# ---- Tensor operators -----------------------------------------------------------
def _install_operators() -> None:
    from .array import strided_slice
    ops = globals()
    T = Tensor
    T.__add__ = lambda a, b: ops["add"](a, b)
    T.__radd__ = lambda a, b: ops["add"](b, a)
    T.__sub__ = lambda a, b: ops["subtract"](a, b)
    T.__rsub__ = lambda a, b: ops["subtract"](b, a)
    T.__mul__ = lambda a, b: ops["multiply"](a, b)
    T.__rmul__ = lambda a, b: ops["multiply"](b, a)
    T.__truediv__ = lambda a, b: divide(a, b)
    T.__rtruediv__ = lambda a, b: divide(b, a)
    T.__floordiv__ = lambda a, b: floordiv(a, b)
    T.__rfloordiv__ = lambda a, b: floordiv(b, a)
    T.__pow__ = lambda a, b: ops["pow"](a, b)
    T.__rpow__ = lambda a, b: ops["pow"](b, a)
    T.__neg__ = lambda a: ops["negative"](a)
    T.__abs__ = lambda a: ops["abs"](a)
    T.__lt__ = lambda a, b: ops["less"](a, b)
    T.__le__ = lambda a, b: ops["less_equal"](a, b)
    T.__gt__ = lambda a, b: ops["greater"](a, b)
    T.__ge__ = lambda a, b: ops["greater_equal"](a, b)
    T.__and__ = lambda a, b: ops["logical_and"](a, b)
    T.__or__ = lambda a, b: ops["logical_or"](a, b)
    T.__getitem__ = lambda a, key: strided_slice(a, key)


_install_operators()

# names assigned through globals() above, listed for readers and linters
negative = globals()["negative"]
abs = globals()["abs"]  # noqa: A001 - TF1's public name
sign = globals()["sign"]
square = globals()["square"]
sqrt = globals()["sqrt"]
rsqrt = globals()["rsqrt"]
exp = globals()["exp"]
log = globals()["log"]
sin = globals()["sin"]
cos = globals()["cos"]
tanh = globals()["tanh"]
sigmoid = globals()["sigmoid"]
erf = globals()["erf"]
relu = globals()["relu"]
silu = globals()["silu"]
softplus = globals()["softplus"]
elu = globals()["elu"]
log1p = globals()["log1p"]
floor = globals()["floor"]
ceil = globals()["ceil"]
round = globals()["round"]  # noqa: A001 - TF1's public name
elu.__doc__ = "Exponential linear unit: x if x > 0 else exp(x) - 1 (computed with expm1)."
log1p.__doc__ = "log(1 + x), accurate for small x."
floor.__doc__ = "Largest integer <= x, elementwise (no gradient, as in TF1)."
ceil.__doc__ = "Smallest integer >= x, elementwise (no gradient, as in TF1)."
round.__doc__ = "Round to the nearest integer, halves to even as TF does (no gradient)."
gelu_tanh = globals()["gelu_tanh"]
_gelu_exact = globals()["gelu"]
add = globals()["add"]
subtract = globals()["subtract"]
multiply = globals()["multiply"]
pow = globals()["pow"]  # noqa: A001 - TF1's public name
maximum = globals()["maximum"]
minimum = globals()["minimum"]
equal = globals()["equal"]
not_equal = globals()["not_equal"]
less = globals()["less"]
less_equal = globals()["less_equal"]
greater = globals()["greater"]
greater_equal = globals()["greater_equal"]
logical_and = globals()["logical_and"]
logical_or = globals()["logical_or"]
bitwise_and = globals()["bitwise_and"]
bitwise_or = globals()["bitwise_or"]
bitwise_xor = globals()["bitwise_xor"]
bitwise_not = globals()["bitwise_not"]
left_shift = globals()["left_shift"]
fmod = globals()["fmod"]
floormod = globals()["floormod"]
right_shift = globals()["right_shift"]


@builder("gelu")
def gelu(x, approximate: bool = False, name: str | None = None) -> Tensor:
    """GELU; the erf form by default, the tanh form with approximate=True."""
    return gelu_tanh(x, name) if approximate else _gelu_exact(x, name)
