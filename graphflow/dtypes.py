"""Dtypes: thin named wrappers over numpy dtypes, with TF1's conversion rules."""
from __future__ import annotations

import numpy as np

from .errors import DTypeError


class DType:
    """A graphflow dtype; compares equal only to itself."""

    def __init__(self, name: str, np_dtype: type) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)

    @property
    def is_floating(self) -> bool:
        """True for float16, float32, float64."""
        return self.np.kind == "f"

    @property
    def is_integer(self) -> bool:
        """True for the signed and unsigned integer dtypes."""
        return self.np.kind in "iu"

    @property
    def is_bool(self) -> bool:
        """True for bool."""
        return self.np.kind == "b"

    @property
    def size(self) -> int:
        """Bytes per element."""
        return self.np.itemsize

    def __repr__(self) -> str:
        return f"gf.{self.name}"

    def __reduce__(self):  # dtypes are singletons
        return (as_dtype, (self.name,))


float16 = DType("float16", np.float16)
float32 = DType("float32", np.float32)
float64 = DType("float64", np.float64)
int8 = DType("int8", np.int8)
int16 = DType("int16", np.int16)
int32 = DType("int32", np.int32)
int64 = DType("int64", np.int64)
uint8 = DType("uint8", np.uint8)
uint16 = DType("uint16", np.uint16)
uint32 = DType("uint32", np.uint32)
uint64 = DType("uint64", np.uint64)
bool_ = DType("bool", np.bool_)

ALL = (float16, float32, float64, int8, int16, int32, int64, uint8, uint16, uint32, uint64, bool_)
_BY_NP = {d.np: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL} | {"bool_": bool_}


def as_dtype(value) -> DType:
    """Accept a DType, a numpy dtype or type, or a name like 'float32'."""
    if isinstance(value, DType):
        return value
    if isinstance(value, str) and value in _BY_NAME:
        return _BY_NAME[value]
    try:
        np_dtype = np.dtype(value)
    except TypeError:
        raise DTypeError(f"{value!r} is not a dtype graphflow knows") from None
    if np_dtype in _BY_NP:
        return _BY_NP[np_dtype]
    raise DTypeError(f"numpy dtype {np_dtype} has no graphflow dtype "
                     f"(supported: {', '.join(d.name for d in ALL)})")


def infer_python_dtype(value) -> DType:
    """TF1's rule for constants: Python float -> float32, int -> int32, numpy keeps its own."""
    if isinstance(value, np.ndarray | np.generic):
        return as_dtype(value.dtype)
    arr = np.asarray(value)
    if arr.dtype.kind == "b":
        return bool_
    if arr.dtype.kind in "iu":
        return int32 if np.all(np.abs(arr.astype(np.int64)) < 2**31) else int64
    if arr.dtype.kind == "f":
        return float32
    raise DTypeError(f"cannot make a tensor from {type(value).__name__} value {value!r}")
