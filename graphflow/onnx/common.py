"""What every ONNX converter shares: the refusal exception, attribute reading, static values.

A converter is `fn(node, inputs, attrs, opset) -> Tensor | list[Tensor]`. It raises
`Unsupported(reason)` for anything it cannot run with ONNX's exact semantics; the importer
turns that into `UnsupportedOpError` naming the op type, the opset and the node.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..graph import Tensor

# ONNX TensorProto element types graphflow runs, and the names of all of them
DTYPES = {1: dtypes.float32, 2: dtypes.uint8, 3: dtypes.int8, 4: dtypes.uint16, 5: dtypes.int16,
          6: dtypes.int32, 7: dtypes.int64, 9: dtypes.bool_, 10: dtypes.float16, 11: dtypes.float64,
          12: dtypes.uint32, 13: dtypes.uint64}
DTYPE_NAMES = {0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16",
               6: "INT32", 7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE",
               12: "UINT32", 13: "UINT64", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16",
               17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ",
               21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2",
               26: "INT2"}


class Unsupported(Exception):  # noqa: N818 - internal signal, never escapes the importer
    """A converter's refusal; the importer adds the op, opset and node."""


class Attrs(dict):
    """A node's attributes; remembers which ones the converter read.

    The importer refuses a node whose converter left an attribute unread, so an
    attribute graphflow does not understand can never be silently ignored.
    """

    def __init__(self, values: dict) -> None:
        super().__init__(values)
        self.used: set[str] = set()

    def get(self, name: str, default=None):
        self.used.add(name)
        return super().get(name, default)

    def __getitem__(self, name: str):
        self.used.add(name)
        return super().__getitem__(name)

    def only(self, name: str, *allowed):
        """The attribute's value, refused unless it is one of `allowed` (first is the default)."""
        value = self.get(name, allowed[0])
        if value not in allowed:
            raise Unsupported(f"attribute {name}={value!r} is not supported (only "
                              f"{', '.join(repr(a) for a in allowed)})")
        return value


class NeedsValue(Unsupported):
    """A value needed at import time is computed from graph inputs only: the importer
    specializes the model on those inputs' values fed at run time (importer.SpecializedModel)."""

    def __init__(self, tensors: list, message: str) -> None:
        super().__init__(message)
        self.tensors = tensors


def _placeholders_upstream(t: Tensor) -> list | None:
    """The graph inputs t is computed from, if nothing else it depends on varies at run time
    (no variables, no random ops); else None."""
    from ..registry import get as get_op_def
    found, seen, stack = [], set(), [t.op]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if op.type == "Placeholder":
            found.append(op.outputs[0])
            continue
        op_def = get_op_def(op.type)
        if op_def.stateful or op_def.needs_context or op.type == "Variable":
            return None
        stack.extend(i.op for i in op.inputs)
    return found or None


def const_value(t: Tensor | None) -> np.ndarray | None:
    """The value of a constant tensor, else None."""
    if t is not None and t.op.type == "Const":
        return t.op.attrs["value"]
    return None


def static(t: Tensor | None, what: str) -> np.ndarray:
    """A value the converter needs at import time (a shape, axes, pads, ...)."""
    value = const_value(t)
    if value is None and t is not None:
        sources = _placeholders_upstream(t)
        if sources:
            raise NeedsValue(sources, f"{what} is computed from graph input(s) "
                             f"{[s.name for s in sources]}, known only at run time")
    if value is None:
        raise Unsupported(f"{what} must be known at import time (a constant or initializer, or "
                          f"computed from static shapes); here it is computed at run time")
    return value


def static_ints(t: Tensor | None, what: str) -> list[int]:
    return [int(v) for v in np.asarray(static(t, what)).reshape(-1)]


def input_at(inputs: list, i: int) -> Tensor | None:
    """Optional input i (None when absent or named '')."""
    return inputs[i] if i < len(inputs) else None


def need_float(x: Tensor, what: str = "input") -> None:
    if not x.dtype.is_floating:
        raise Unsupported(f"{what} of dtype {x.dtype.name} is not supported (floating only)")


def known_shape(x: Tensor, what: str = "input") -> tuple:
    if None in x.shape:
        raise Unsupported(f"{what} needs a fully known shape at import time, got "
                          f"{['?' if d is None else d for d in x.shape]}")
    return tuple(x.shape)


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise Unsupported(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def to_dtype(elem_type: int) -> dtypes.DType:
    """The graphflow dtype of an ONNX element type; refused when graphflow has none."""
    if elem_type not in DTYPES:
        raise Unsupported(f"ONNX dtype {DTYPE_NAMES.get(elem_type, elem_type)} is not supported "
                          "(graphflow runs float16/32/64, int8/16/32/64, uint8/16/32/64 and bool)")
    return DTYPES[elem_type]
