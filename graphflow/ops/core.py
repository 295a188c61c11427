"""Leaf ops and conversions: constant, placeholder, identity, cast, fills, no_op.

`make` is how every op builder creates a node; `as_tensor` and `match_dtypes`
carry TF1's conversion rules (Python scalars adopt the tensor's dtype; two
tensors of different dtypes are an error, never promoted).
"""
from __future__ import annotations

import functools
import numbers
import re
import threading

import numpy as np

from .. import dtypes
from ..dtypes import DType, as_dtype
from ..errors import DTypeError, GraphflowError, ShapeError
from ..graph import Graph, Operation, Tensor, definition_site, get_default_graph
from ..registry import NO_GRADIENT, Spec, register


def make(type_: str, inputs: list[Tensor], attrs: dict | None = None, name: str | None = None,
         graph: Graph | None = None) -> Tensor | Operation:
    """Create an op in the inputs' graph (else the default graph); return its output."""
    graph = graph or (inputs[0].graph if inputs else get_default_graph())
    op = graph.create_op(type_, inputs, attrs, name)
    return op.outputs[0] if op.outputs else op


_BUILDING = threading.local()  # .depth: how many builders are running in this thread


def builder(label: str):
    """Decorator for a public op builder (`label`: its public name, e.g. "reshape").

    A shape rule's error already names its op and the user's file:line (Graph.create_op);
    this does the same for the checks a builder makes before any op exists (arguments,
    dims, indices): their error gets the builder's name and the user's file:line. When
    builders call builders, the outermost one, the call the user wrote, names itself."""
    def wrap(fn):
        @functools.wraps(fn)
        def build(*args, **kwargs):
            depth = getattr(_BUILDING, "depth", 0)
            _BUILDING.depth = depth + 1
            try:
                return fn(*args, **kwargs)
            except (GraphflowError, ValueError, TypeError) as e:
                if depth == 0:
                    _name_the_builder(e, label)
                raise
            finally:
                _BUILDING.depth = depth
        return build
    return wrap


def _name_the_builder(e: Exception, label: str) -> None:
    """Add what e's message lacks of "label (defined at file:line): "."""
    if len(e.args) != 1 or not isinstance(e.args[0], str) or "defined at " in e.args[0]:
        return  # an op's shape rule: create_op named the op and the site
    message, site = e.args[0], definition_site()
    if site not in message:
        message = f"{label} (defined at {site}): {message.removeprefix(label + ': ')}"
    elif not re.search(rf"(?<![\w.]){re.escape(label)}(?![\w])", message):
        message = f"{label}: {message}"
    e.args = (message,)


def normalize_shape(shape, what: str = "shape") -> tuple:
    """A static shape from a list/tuple/TensorShape of ints or None."""
    if shape is None:
        raise ShapeError(f"{what} must be given (a list of dims; use None for unknown dims)")
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ShapeError(f"{what} {shape!r} is not a list of dims") from None
    for d in dims:
        if d is not None and (not isinstance(d, numbers.Integral) or d < 0):
            raise ShapeError(f"{what} {list(dims)} has a bad dim {d!r}: dims are ints >= 0 or None")
    return tuple(None if d is None else int(d) for d in dims)


def _to_array(value, dtype: DType | None, where: str) -> np.ndarray:
    if isinstance(value, Tensor):
        raise DTypeError(f"{where}: expected a constant value, got tensor {value.name}")
    target = dtype or dtypes.infer_python_dtype(value)
    arr = np.asarray(value)
    if arr.dtype == object:
        raise DTypeError(f"{where}: cannot make a tensor from {value!r}")
    if dtype is not None and arr.dtype != target.np:
        ok = np.can_cast(arr.dtype, target.np, "same_kind") or (
            arr.dtype.kind in "iub" and target.is_floating) or (
            arr.dtype.kind in "iu" and target.is_integer)  # values must fit: checked below
        if arr.dtype.kind == "b" and not target.is_bool:
            ok = False
        if not ok:
            raise DTypeError(f"{where}: cannot use {_short(value)} ({arr.dtype}) as {target.name}")
    out = arr.astype(target.np)
    if arr.dtype.kind in "iu" and target.is_integer and not np.array_equal(out, arr):
        raise DTypeError(f"{where}: {_short(value)} does not fit in {target.name}")
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def as_tensor(value, dtype=None, name: str | None = None) -> Tensor:
    """TF1's convert_to_tensor: tensors pass through; values become constants."""
    if isinstance(value, Tensor):
        if dtype is not None and value.dtype is not as_dtype(dtype):
            raise DTypeError(f"expected a {as_dtype(dtype).name} tensor, got {value.name} "
                             f"of dtype {value.dtype.name}")
        return value
    if isinstance(value, list | tuple) and any(isinstance(v, Tensor) for v in value):
        from .array import stack
        return stack([as_tensor(v, dtype) for v in value], axis=0)
    return constant(value, dtype, name)


def match_dtypes(op_name: str, *values) -> list[Tensor]:
    """Convert operands of one op to a common dtype, TF1 style (no promotion)."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    if not tensors:
        return [as_tensor(v) for v in values]
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        if t.dtype is not dtype:
            raise DTypeError(
                f"{op_name}: operands have different dtypes, {tensors[0].name} is {dtype.name} "
                f"and {t.name} is {t.dtype.name} (at {get_site()}); graphflow never promotes, "
                "use gf.cast")
    graph = tensors[0].graph
    with graph.as_default():
        return [v if isinstance(v, Tensor) else constant(v, dtype) for v in values]


def get_site() -> str:
    from ..graph import definition_site
    return definition_site()


# ---- Const -------------------------------------------------------------
register("Const",
         infer=lambda specs, value: Spec(value.shape, as_dtype(value.dtype)),
         compute=lambda value: value,
         grad=NO_GRADIENT)


@builder("constant")
def constant(value, dtype=None, name: str | None = None, shape=None) -> Tensor:
    """A constant tensor. Python float -> float32, int -> int32, numpy keeps its dtype."""
    dtype = None if dtype is None else as_dtype(dtype)
    arr = _to_array(value, dtype, "constant")
    if shape is not None:
        shape = normalize_shape(shape)
        try:
            arr = np.broadcast_to(arr, shape) if arr.size == 1 else arr.reshape(shape)
        except ValueError:
            raise ShapeError(f"constant: value of shape {arr.shape} cannot fill shape {list(shape)}") \
                from None
    arr = np.array(arr, order="C")
    arr.flags.writeable = False
    return make("Const", [], {"value": arr}, name or "Const")


# ---- Placeholder ---------------------------------------------------------
def _no_feed(ctx=None, **attrs):
    raise AssertionError("placeholders are fed by the Session")


register("Placeholder", infer=lambda specs, shape, dtype: Spec(shape, dtype),
         compute=_no_feed, grad=NO_GRADIENT, stateful=True)


@builder("placeholder")
def placeholder(dtype, shape=None, name: str | None = None) -> Tensor:
    """An input fed at run time. Dims of `shape` may be None (e.g. the batch size)."""
    if shape is None:
        raise ShapeError("placeholder: graphflow needs the rank of every placeholder; pass a shape "
                         "such as [None, 784] (None marks a dim known only at run time)")
    return make("Placeholder", [], {"shape": normalize_shape(shape, "placeholder shape"),
                                    "dtype": as_dtype(dtype)}, name or "Placeholder")


# ---- Identity, StopGradient, Cast ----------------------------------------
register("Identity", infer=lambda specs: specs[0], compute=lambda x: x,
         grad=lambda op, g: [g])
register("StopGradient", infer=lambda specs: specs[0], compute=lambda x: x, grad=NO_GRADIENT)


@builder("identity")
def identity(x, name: str | None = None) -> Tensor:
    """x unchanged, as a new op (useful to name a value or hang control dependencies on)."""
    return make("Identity", [as_tensor(x)], name=name)


@builder("stop_gradient")
def stop_gradient(x, name: str | None = None) -> Tensor:
    """Passes x through; no gradient flows back through it."""
    return make("StopGradient", [as_tensor(x)], name=name)


def _cast_grad(op, g):
    src = op.inputs[0].dtype
    if src.is_floating and g.dtype.is_floating:
        return [cast(g, src)]
    return [None]


register("Cast", infer=lambda specs, dtype: Spec(specs[0].shape, dtype),
         compute=lambda x, dtype: x.astype(dtype.np), grad=_cast_grad)


@builder("cast")
def cast(x, dtype, name: str | None = None) -> Tensor:
    """Convert to `dtype`; float -> int truncates toward zero."""
    x, dtype = as_tensor(x), as_dtype(dtype)
    if x.dtype is dtype:
        return x
    return make("Cast", [x], {"dtype": dtype}, name)


# ---- fills ---------------------------------------------------------------
register("FillLike", infer=lambda specs, value, dtype: Spec(specs[0].shape, dtype),
         compute=lambda ref, value, dtype: np.full(ref.shape, value, dtype.np),
         grad=NO_GRADIENT)


def fill_like(ref: Tensor, value, dtype=None, name: str | None = None) -> Tensor:
    """A tensor shaped like `ref` (at run time) filled with `value`."""
    dtype = as_dtype(dtype) if dtype is not None else ref.dtype
    return make("FillLike", [ref], {"value": value, "dtype": dtype}, name)


@builder("zeros_like")
def zeros_like(x, dtype=None, name: str | None = None) -> Tensor:
    """Zeros shaped like x at run time (its dtype unless `dtype`)."""
    return fill_like(as_tensor(x), 0, dtype, name or "zeros_like")


@builder("ones_like")
def ones_like(x, dtype=None, name: str | None = None) -> Tensor:
    """Ones shaped like x at run time (its dtype unless `dtype`)."""
    return fill_like(as_tensor(x), 1, dtype, name or "ones_like")


@builder("zeros")
def zeros(shape, dtype=dtypes.float32, name: str | None = None) -> Tensor:
    """A constant of zeros with a fully known shape."""
    return constant(0, as_dtype(dtype), name or "zeros", shape=shape)


@builder("ones")
def ones(shape, dtype=dtypes.float32, name: str | None = None) -> Tensor:
    """A constant of ones with a fully known shape."""
    return constant(1, as_dtype(dtype), name or "ones", shape=shape)


# ---- NoOp / group --------------------------------------------------------
register("NoOp", infer=lambda specs: None, compute=lambda: None, grad=NO_GRADIENT)


def no_op(name: str | None = None) -> Operation:
    """An op that does nothing (a target for control dependencies)."""
    return make("NoOp", [], name=name or "NoOp")


def group(*inputs, name: str | None = None) -> Operation:
    """An op that runs all `inputs` (ops or tensors, or lists of them)."""
    flat = []
    for item in inputs:
        flat.extend(item if isinstance(item, list | tuple) else [item])
    graph = flat[0].graph if flat else get_default_graph()
    with graph.as_default(), graph.control_dependencies(flat):
        return no_op(name or "group_deps")
