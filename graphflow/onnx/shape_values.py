"""Shape arithmetic on partly known shapes (a dynamic batch dim, say).

`Shape` of a tensor with unknown dims gives a ShapeValue: its entries are ints, or None where
the dim is known only at run time. The usual exported chains (Gather, Unsqueeze, Concat, Slice,
Cast, integer arithmetic) run on it at import, and Reshape accepts it when at most one entry
is unknown (that entry becomes -1). Anything else that needs the value at run time is refused.
"""
from __future__ import annotations

import numpy as np

from ..graph import Tensor
from ..ops import array as arr
from .common import Unsupported, const_value, input_at, static_ints


class ShapeValue:
    """An int64 vector (or scalar) of dims; None entries are known only at run time."""

    def __init__(self, values, scalar: bool = False, dtype=np.int64) -> None:
        self.values = list(values)
        self.scalar = scalar
        self.dtype = np.dtype(dtype)

    def known(self) -> np.ndarray | None:
        """The value as an array once every entry is known, else None."""
        if None in self.values:
            return None
        arr_ = np.array(self.values, self.dtype)
        return arr_.reshape(()) if self.scalar else arr_

    def __repr__(self) -> str:
        return f"ShapeValue({self.values}{', scalar' if self.scalar else ''})"


def as_shape_value(t) -> ShapeValue | None:
    """A ShapeValue as is; a constant integer vector or scalar as a ShapeValue; else None."""
    if isinstance(t, ShapeValue):
        return t
    value = const_value(t) if isinstance(t, Tensor) else None
    if value is None or value.dtype.kind not in "iu" or value.ndim > 1:
        return None
    return ShapeValue([int(v) for v in value.reshape(-1)], value.ndim == 0, value.dtype)


def _operands(inputs) -> list[ShapeValue]:
    values = [as_shape_value(t) for t in inputs]
    if any(v is None for v in values):
        raise Unsupported("mixes a run-time shape with run-time tensor values")
    return values


def _elementwise(fn):
    def convert(node, inputs, attrs, opset):
        a, b = _operands(inputs)
        n = max(len(a.values), len(b.values))
        av = a.values * n if len(a.values) == 1 else a.values
        bv = b.values * n if len(b.values) == 1 else b.values
        if len(av) != len(bv):
            raise Unsupported("shape arithmetic on vectors of different lengths")
        out = [None if x is None or y is None else fn(x, y) for x, y in zip(av, bv)]
        return ShapeValue(out, a.scalar and b.scalar, a.dtype)
    return convert


def _trunc_div(x: int, y: int) -> int:
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q


def _gather(node, inputs, attrs, opset):
    data = _operands(inputs[:1])[0]
    idx = const_value(inputs[1])
    if idx is None or attrs.get("axis", 0) not in (0, -1) or data.scalar:
        raise Unsupported("Gather on a run-time shape needs constant indices on axis 0")
    n = len(data.values)
    picked = [data.values[int(i)] for i in np.asarray(idx).reshape(-1) if -n <= int(i) < n]
    if len(picked) != idx.size:
        raise Unsupported("Gather index out of range of the shape")
    if idx.ndim > 1:
        _refuse()
    return ShapeValue(picked, idx.ndim == 0, data.dtype)


def _refuse():
    raise Unsupported("this use of a run-time shape is not supported")


def _unsqueeze(node, inputs, attrs, opset):
    v = _operands(inputs[:1])[0]
    axes = list(attrs.get("axes")) if opset < 13 else static_ints(input_at(inputs, 1), "axes")
    if not v.scalar or axes not in ([0], [-1]):
        _refuse()
    return ShapeValue(v.values, False, v.dtype)


def _squeeze(node, inputs, attrs, opset):
    v = _operands(inputs[:1])[0]
    if opset < 13:
        attrs.get("axes")
    if v.scalar or len(v.values) != 1:
        _refuse()
    return ShapeValue(v.values, True, v.dtype)


def _concat(node, inputs, attrs, opset):
    attrs.get("axis")
    out, values = [], _operands(inputs)
    for v in values:
        if v.scalar:
            _refuse()
        out.extend(v.values)
    return ShapeValue(out, False, values[0].dtype)


def _slice(node, inputs, attrs, opset):
    v = _operands(inputs[:1])[0]
    if opset < 10:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        attrs.get("axes")
        steps = [1]
    else:
        starts, ends = static_ints(inputs[1], "starts"), static_ints(inputs[2], "ends")
        steps = [1] if input_at(inputs, 4) is None else static_ints(inputs[4], "steps")
    if v.scalar or len(starts) != 1:
        _refuse()
    return ShapeValue(v.values[slice(starts[0], ends[0], steps[0])], False, v.dtype)


def _cast(node, inputs, attrs, opset):
    attrs.get("saturate")
    to = attrs.get("to")
    v = _operands(inputs[:1])[0]
    if to not in (6, 7):
        _refuse()
    return ShapeValue(v.values, v.scalar, np.int32 if to == 6 else np.int64)


def _reshape(node, inputs, attrs, opset):
    x = inputs[0]
    if isinstance(x, ShapeValue):
        _refuse()
    target = _operands(inputs[1:2])[0].values
    allowzero = attrs.get("allowzero", 0) if opset >= 14 else 0
    dims = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            d = x.shape[i] if i < len(x.shape) else _refuse()
        dims.append(-1 if d is None else d)
    if dims.count(-1) > 1:
        raise Unsupported(f"Reshape to a run-time shape with several unknown dims "
                          f"({['?' if d is None else d for d in target]})")
    return arr.reshape(x, dims)


def _identity(node, inputs, attrs, opset):
    return _operands(inputs)[0]


CONVERTERS = {
    "Gather": _gather, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Concat": _concat,
    "Slice": _slice, "Cast": _cast, "Reshape": _reshape, "Identity": _identity,
    "Add": _elementwise(lambda x, y: x + y), "Sub": _elementwise(lambda x, y: x - y),
    "Mul": _elementwise(lambda x, y: x * y), "Div": _elementwise(_trunc_div),
}
