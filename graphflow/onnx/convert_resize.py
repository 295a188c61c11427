"""ONNX Resize / Upsample with static sizes: each resized axis is a constant [out, in] matrix.

Interpolation is separable, so the weights of every axis come from ONNX's own reference 1-D
interpolation applied to an identity matrix (exact ONNX semantics for every coordinate mode,
nearest rounding rule, cubic coefficient and antialias). Nearest becomes a gather (no
arithmetic at all); linear and cubic a matmul along the axis.
"""
from __future__ import annotations

import numpy as np

from ..graph import Tensor
from ..ops import array as arr
from ..ops.core import constant, identity
from ..ops.linalg import matmul
from .common import Unsupported, input_at, norm_axis, static


def _reference():
    try:
        from onnx.reference.ops import op_resize
        return op_resize
    except ImportError:  # pragma: no cover - depends on the onnx version
        raise Unsupported("Resize needs onnx.reference (onnx >= 1.13)") from None


def _coeff_fn(ref, mode: str, nearest_mode: str, cubic_a: float, antialias: bool):
    if mode == "nearest":
        if antialias:
            raise Unsupported("antialias with nearest")
        return lambda ratio, scale: ref._nearest_coeffs(ratio, mode=nearest_mode)
    if mode == "linear":
        return ref._linear_coeffs_antialias if antialias else ref._linear_coeffs
    cubic = ref._cubic_coeffs_antialias if antialias else ref._cubic_coeffs
    return lambda ratio, scale: cubic(ratio, scale, A=cubic_a)


def _sizes(shape, scales, sizes, axes, policy) -> tuple[list[float], list[int]]:
    r = len(shape)
    if scales is not None:
        full = [1.0] * r
        for i, a in enumerate(axes):
            full[a] = float(scales[i])
        return full, [int(s * n) for s, n in zip(full, shape)]
    out = list(shape)
    for i, a in enumerate(axes):
        out[a] = int(sizes[i])
    factors = [o / n for o, n in zip(out, shape)]
    if policy != "stretch":
        pick = min if policy == "not_larger" else max
        scale = pick(factors[a] for a in axes)
        factors = [scale if i in axes else 1.0 for i in range(r)]
        out = [int(scale * shape[i] + 0.5) if i in axes else shape[i] for i in range(r)]
    return factors, out


def _resize_axis(x: Tensor, axis: int, w: np.ndarray, nearest: bool) -> Tensor:
    if nearest:
        if not ((w == 0) | (w == 1)).all() or not (w.sum(1) == 1).all():
            raise Unsupported("nearest Resize weights are not a selection")
        return arr.gather(x, constant(w.argmax(1).astype(np.int64)), axis)
    rank = len(x.shape)
    perm = [i for i in range(rank) if i != axis] + [axis]
    back = [0] * rank
    for i, p in enumerate(perm):
        back[p] = i
    moved = arr.transpose(x, perm)
    y = matmul(moved, constant(w.T.astype(x.dtype.np)))
    return arr.transpose(y, back)


def _resize(node, inputs, attrs, opset):
    x = inputs[0]
    if not x.dtype.is_floating:
        raise Unsupported(f"Resize of {x.dtype.name}")
    shape = list(x.shape)
    if None in shape:
        raise Unsupported("Resize needs a fully known input shape")
    mode = attrs.only("mode", "nearest", "linear", "cubic")
    if opset < 11:
        scales, sizes = static(inputs[1], "scales").astype(np.float64), None
        ctm, nearest_mode, cubic_a, exclude, antialias = "asymmetric", "floor", -0.75, 0, 0
        if mode == "cubic":
            raise Unsupported("cubic Resize before opset 11")
        axes = list(range(len(shape)))
        policy = "stretch"
    else:
        ctm = attrs.only("coordinate_transformation_mode", "half_pixel", "asymmetric",
                         "align_corners", "pytorch_half_pixel", "half_pixel_symmetric")
        nearest_mode = attrs.only("nearest_mode", "round_prefer_floor", "round_prefer_ceil",
                                  "floor", "ceil")
        cubic_a = attrs.get("cubic_coeff_a", -0.75)
        exclude = attrs.get("exclude_outside", 0)
        attrs.get("extrapolation_value")  # only used by tf_crop_and_resize, refused above
        antialias = attrs.get("antialias", 0)
        policy = attrs.only("keep_aspect_ratio_policy", "stretch", "not_larger", "not_smaller")
        axes = attrs.get("axes")
        axes = list(range(len(shape))) if axes is None else [norm_axis(a, len(shape))
                                                             for a in axes]
        s_t, z_t = input_at(inputs, 2), input_at(inputs, 3)
        scales = None if s_t is None or static(s_t, "scales").size == 0 else \
            static(s_t, "scales").astype(np.float64).reshape(-1)
        sizes = None if z_t is None else static(z_t, "sizes").reshape(-1)
        if (scales is None) == (sizes is None):
            raise Unsupported("Resize needs exactly one of scales and sizes")
    if scales is not None and policy != "stretch":
        raise Unsupported("keep_aspect_ratio_policy with scales")
    ref = _reference()
    fn = _coeff_fn(ref, mode, nearest_mode, cubic_a, bool(antialias))
    factors, out = _sizes(shape, scales, sizes, axes, policy)
    y = x
    for axis, (n, m, s) in enumerate(zip(shape, out, factors)):
        if n == m and s == 1.0:
            continue
        if m <= 0 or n == 0:
            raise Unsupported("Resize to or from an empty axis")
        w = ref._interpolate_1d_along_axis(np.eye(n), 0, s, m, fn, None, 0.0, ctm,
                                           bool(exclude))
        if np.array_equal(w, np.eye(n)):
            continue
        y = _resize_axis(y, axis, np.asarray(w, np.float64), mode == "nearest")
    return identity(y) if y is x else y


def _upsample(node, inputs, attrs, opset):
    mode = attrs.only("mode", "nearest", "linear")
    x = inputs[0]
    if opset < 9:
        scales = np.array(attrs["scales"], np.float64)
    else:
        scales = static(inputs[1], "scales").astype(np.float64)
    ref = _reference()
    fn = _coeff_fn(ref, mode, "floor", -0.75, False)
    shape = list(x.shape)
    if None in shape or not x.dtype.is_floating:
        raise Unsupported("Upsample needs a floating input of known shape")
    y = x
    for axis, (n, s) in enumerate(zip(shape, scales)):
        m = int(n * s)
        if m == n and s == 1:
            continue
        w = ref._interpolate_1d_along_axis(np.eye(n), 0, s, m, fn, None, 0.0, "asymmetric",
                                           False)
        y = _resize_axis(y, axis, np.asarray(w, np.float64), mode == "nearest")
    return identity(y) if y is x else y


RESIZE = {"Resize": _resize, "Upsample": _upsample}
