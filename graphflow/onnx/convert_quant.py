"""ONNX QuantizeLinear / DequantizeLinear to the 8- and 16-bit integer types, written with
elementwise ops (per tensor, per axis or blocked scales and zero points)."""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..graph import Tensor
from ..ops import array as arr
from ..ops import elementwise as ew
from ..ops.core import cast, constant
from .common import Unsupported, input_at, known_shape, norm_axis, to_dtype

RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767)}


def _broadcastable(v: Tensor, shape: tuple, axis: int, block_size: int) -> Tensor:
    """A scale or zero point shaped to broadcast against x (onnx's reshape_input)."""
    vshape = known_shape(v, "scale/zero point")
    if len(vshape) == 0:
        return v
    if int(np.prod(vshape)) == 1:
        return arr.reshape(v, [])
    axis = norm_axis(axis, len(shape))
    if not block_size:
        if len(vshape) != 1 or vshape[0] != shape[axis]:
            raise Unsupported(f"per-axis scale of shape {list(vshape)} for input {list(shape)}")
        dims = [1] * len(shape)
        dims[axis] = vshape[0]
        return arr.reshape(v, dims)
    if len(vshape) != len(shape) or vshape[axis] != -(-shape[axis] // block_size):
        raise Unsupported(f"blocked scale of shape {list(vshape)} for input {list(shape)} and "
                          f"block_size {block_size}")
    index = constant((np.arange(shape[axis]) // block_size).astype(np.int64))
    return arr.gather(v, index, axis)


def _layout(node, x: Tensor, attrs) -> tuple:
    return known_shape(x), attrs.get("axis", 1), attrs.get("block_size", 0)


def _quantize(node, inputs, attrs, opset):
    x, scale, zp = inputs[0], inputs[1], input_at(inputs, 2)
    if not x.dtype.is_floating or scale.dtype is not x.dtype:
        raise Unsupported(f"QuantizeLinear of {x.dtype.name} by a {scale.dtype.name} scale")
    attrs.only("precision", 0)
    attrs.get("saturate", 1)  # integer outputs always saturate
    shape, axis, block = _layout(node, x, attrs)
    out = attrs.get("output_dtype", 0)
    target = zp.dtype if zp is not None else to_dtype(out) if out else dtypes.uint8
    if out and zp is not None and to_dtype(out) is not zp.dtype:
        raise Unsupported("output_dtype differs from the zero point's dtype")
    if target.name not in RANGES:
        raise Unsupported(f"QuantizeLinear to {target.name} (8- and 16-bit integers only)")
    q = cast(ew.round(x / _broadcastable(scale, shape, axis, block)), dtypes.int32)
    if zp is not None:
        q = q + cast(_broadcastable(zp, shape, axis, block), dtypes.int32)
    lo, hi = RANGES[target.name]
    return cast(ew.minimum(ew.maximum(q, lo), hi), target)


def _dequantize(node, inputs, attrs, opset):
    x, scale, zp = inputs[0], inputs[1], input_at(inputs, 2)
    if x.dtype.name not in RANGES and x.dtype.name != "int32":
        raise Unsupported(f"DequantizeLinear of {x.dtype.name} (integers only)")
    if not scale.dtype.is_floating:
        raise Unsupported(f"DequantizeLinear by a {scale.dtype.name} scale")
    shape, axis, block = _layout(node, x, attrs)
    out = attrs.get("output_dtype", 0)
    target = to_dtype(out) if out else scale.dtype
    dx = cast(x, dtypes.float32)
    if zp is not None:
        if zp.dtype is not x.dtype:
            raise Unsupported("the zero point's dtype differs from the input's")
        dx = dx - cast(_broadcastable(zp, shape, axis, block), dtypes.float32)
    y = dx * cast(_broadcastable(scale, shape, axis, block), dtypes.float32)
    return cast(y, target)


QUANT = {"QuantizeLinear": _quantize, "DequantizeLinear": _dequantize}
