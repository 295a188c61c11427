"""ONNX DFT as matrix products with constant cosine/sine tables (static lengths)."""
from __future__ import annotations

import numpy as np

from ..ops import array as arr
from ..ops.core import constant, zeros_like
from ..ops.linalg import matmul
from .common import Unsupported, input_at, known_shape, norm_axis, static

DFT_MAX_LEN = 4096  # the tables are [length, length]


def _table(kind, k: np.ndarray, t: np.ndarray, length: int, dtype) -> object:
    angle = 2 * np.pi * np.outer(t, k) / length  # [t, k]: a right-multiplied matrix
    return constant((np.cos(angle) if kind == "cos" else np.sin(angle)).astype(dtype.np))


def _dft(node, inputs, attrs, opset):
    x = inputs[0]
    if not x.dtype.is_floating:
        raise Unsupported(f"DFT of {x.dtype.name} tensors")
    shape = known_shape(x)
    rank = len(shape)
    if rank < 2 or shape[-1] not in (1, 2):
        raise Unsupported(f"DFT input of shape {list(shape)} (the last dim must be 1 or 2)")
    if opset < 20:
        axis = attrs.get("axis", 1)
    else:
        a = input_at(inputs, 2)
        axis = -2 if a is None else int(np.asarray(static(a, "axis")).reshape(-1)[0])
    axis = norm_axis(axis, rank)
    if axis == rank - 1:
        raise Unsupported("DFT over the real/imaginary axis")
    inverse, onesided = bool(attrs.get("inverse", 0)), bool(attrs.get("onesided", 0))
    n = shape[axis]
    given = input_at(inputs, 1)
    if given is not None:
        length = int(np.asarray(static(given, "dft_length")).reshape(-1)[0])
    else:
        length = 2 * (n - 1) if inverse and onesided else n
    if not 0 < length <= DFT_MAX_LEN:
        raise Unsupported(f"DFT length {length} (1 to {DFT_MAX_LEN})")
    perm = [i for i in range(rank - 1) if i != axis] + [axis, rank - 1]
    xt = arr.transpose(x, perm)  # [..., n, C]
    re = xt[..., 0]
    im = xt[..., 1] if shape[-1] == 2 else zeros_like(re)
    if inverse and onesided:  # numpy's irfft: a real signal from the one-sided spectrum
        used = min(n, length // 2 + 1)
        k, t = np.arange(used), np.arange(length)
        w = np.where((k == 0) | (2 * k == length), 1.0, 2.0) / length
        cos = constant((np.cos(2 * np.pi * np.outer(k, t) / length) * w[:, None]).astype(x.dtype.np))
        sin = constant((np.sin(2 * np.pi * np.outer(k, t) / length) * w[:, None]).astype(x.dtype.np))
        out_re = matmul(re[..., :used], cos) - matmul(im[..., :used], sin)
        parts = [out_re]
    else:
        used = min(n, length)  # a longer length pads the signal with zeros, a shorter cuts it
        m = length // 2 + 1 if onesided else length
        k, t = np.arange(m), np.arange(used)
        cos, sin = _table("cos", k, t, length, x.dtype), _table("sin", k, t, length, x.dtype)
        re, im = re[..., :used], im[..., :used]
        if inverse:
            scale = 1.0 / length
            parts = [(matmul(re, cos) - matmul(im, sin)) * scale,
                     (matmul(im, cos) + matmul(re, sin)) * scale]
        else:
            parts = [matmul(re, cos) + matmul(im, sin), matmul(im, cos) - matmul(re, sin)]
    out = arr.stack(parts, -1)  # [..., m, C']
    back = [perm.index(i) for i in range(rank)]
    return arr.transpose(out, back)


SIGNAL = {"DFT": _dft}
