"""ONNX MatMul, Gemm, convolutions and pooling (NCHW, 1-D and 2-D) on graphflow's NHWC ops."""
from __future__ import annotations

import math

import numpy as np

from ..graph import Tensor
from ..ops import array as arr
from ..ops import elementwise as ew
from ..ops import nn as gnn
from ..ops import reduction as red
from ..ops.core import constant, fill_like
from ..ops.linalg import matmul
from .common import Unsupported, input_at
from .convert_shape import pad


def _matmul(node, inputs, attrs, opset):
    a, b = inputs
    if a.dtype is not b.dtype or a.dtype.is_bool:
        raise Unsupported(f"MatMul of {a.dtype.name} and {b.dtype.name}")
    if len(a.shape) == 0 or len(b.shape) == 0:
        raise Unsupported("MatMul of a scalar")
    a2 = arr.expand_dims(a, 0) if len(a.shape) == 1 else a
    b2 = arr.expand_dims(b, 1) if len(b.shape) == 1 else b
    out = matmul(a2, b2)
    if len(b.shape) == 1:
        out = arr.squeeze(out, -1)
    if len(a.shape) == 1:
        out = arr.squeeze(out, -2 if len(b.shape) > 1 else -1)
    return out


def _gemm(node, inputs, attrs, opset):
    a, b = inputs[:2]
    c = input_at(inputs, 2)
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if opset < 7:
        attrs.get("broadcast")
    if a.dtype is not b.dtype or not a.dtype.is_floating and (alpha != 1 or beta != 1):
        raise Unsupported(f"Gemm of {a.dtype.name} with alpha/beta")
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise Unsupported("Gemm needs 2-D A and B")
    y = matmul(a, b, transpose_a=bool(attrs.get("transA", 0)),
               transpose_b=bool(attrs.get("transB", 0)))
    if alpha != 1:
        y = y * alpha
    if c is not None:
        y = y + (c if beta == 1 else c * beta)
    return y


# ---- window geometry ------------------------------------------------------------------
def _window_pads(attrs, sizes, kernel, strides, dilations) -> list[int]:
    """Explicit pads (begins + ends) from auto_pad / pads."""
    n = len(sizes)
    auto = attrs.only("auto_pad", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")
    if auto == "NOTSET":
        pads = list(attrs.get("pads", [0] * 2 * n))
        if len(pads) != 2 * n:
            raise Unsupported(f"pads {pads} for {n} spatial dims")
        return pads
    if auto == "VALID":
        attrs.get("pads")
        return [0] * 2 * n
    attrs.get("pads")
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        if size is None:
            raise Unsupported(f"auto_pad {auto} on a spatial dim of unknown size")
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else big)
        ends.append(big if auto == "SAME_UPPER" else small)
    return begins + ends


def _geometry(x: Tensor, attrs, kernel: list[int]):
    spatial = len(x.shape) - 2
    if spatial not in (1, 2):
        raise Unsupported(f"{spatial}-D windows (only 1-D and 2-D are supported)")
    strides = list(attrs.get("strides", [1] * spatial))
    dilations = list(attrs.get("dilations", [1] * spatial))
    if len(kernel) != spatial or len(strides) != spatial or len(dilations) != spatial:
        raise Unsupported("kernel_shape/strides/dilations do not match the input rank")
    pads = _window_pads(attrs, list(x.shape[2:]), kernel, strides, dilations)
    return strides, dilations, pads


def _to_nhwc(x: Tensor) -> Tensor:
    """NCW or NCHW -> NHWC (1-D gets a unit H)."""
    if len(x.shape) == 3:
        x = arr.expand_dims(x, 2)
    return arr.transpose(x, [0, 2, 3, 1])


def _from_nhwc(y: Tensor, spatial: int) -> Tensor:
    y = arr.transpose(y, [0, 3, 1, 2])
    return arr.squeeze(y, 2) if spatial == 1 else y


def _as2d(values: list[int], spatial: int, fill: int) -> list[int]:
    return [fill] + values if spatial == 1 else values


def _pads2d(pads: list[int], spatial: int) -> list[int]:
    """ONNX spatial pads -> NHWC pads (begins + ends over N, H, W, C)."""
    if spatial == 1:
        pads = [0, pads[0], 0, pads[1]]
    return [0, pads[0], pads[1], 0, 0, pads[2], pads[3], 0]


def _dilate(t: Tensor, axis: int, d: int) -> Tensor:
    """Insert d-1 zeros between elements along a known-size axis."""
    n = t.shape[axis]
    if d == 1 or n == 1:
        return t
    shape = list(t.shape)
    shape[axis] = d - 1
    zeros = None if None in shape else constant(0, t.dtype, shape=shape)
    parts = []
    for i in range(n):
        parts.append(arr.strided_slice(t, (slice(None),) * axis + (slice(i, i + 1),)))
        if i < n - 1:
            parts.append(zeros if zeros is not None else _zeros_like_slice(t, axis, d - 1))
    return arr.concat(parts, axis)


def _zeros_like_slice(t: Tensor, axis: int, count: int) -> Tensor:
    one = fill_like(arr.strided_slice(t, (slice(None),) * axis + (slice(0, 1),)), 0)
    return arr.concat([one] * count, axis) if count > 1 else one


def _grouped(x: Tensor, w: Tensor, group: int, conv) -> Tensor:
    """Split channels (NHWC axis 3, HWIO axis 3 of w) into groups and join the results."""
    if group == 1:
        return conv(x, w)
    cin, cout = x.shape[3], w.shape[3]
    if cin is None or cin % group or cout % group:
        raise Unsupported(f"group={group} does not divide the channels")
    gi, go = cin // group, cout // group
    outs = [conv(x[:, :, :, g * gi:(g + 1) * gi], w[:, :, :, g * go:(g + 1) * go])
            for g in range(group)]
    return arr.concat(outs, 3)


def _conv(node, inputs, attrs, opset):
    x, w = inputs[:2]
    b = input_at(inputs, 2)
    if not x.dtype.is_floating or w.dtype is not x.dtype:
        raise Unsupported(f"Conv of {x.dtype.name} and {w.dtype.name}")
    spatial = len(x.shape) - 2
    if None in w.shape:
        raise Unsupported("Conv weights need a known shape")
    kernel = list(attrs.get("kernel_shape", w.shape[2:]))
    if kernel != list(w.shape[2:]):
        raise Unsupported(f"kernel_shape {kernel} does not match the weights {list(w.shape)}")
    strides, dilations, pads = _geometry(x, attrs, kernel)
    group = attrs.get("group", 1)
    xh = pad(_to_nhwc(x), _pads2d(pads, spatial), "constant", 0.0)
    wh = arr.transpose(arr.expand_dims(w, 2) if spatial == 1 else w, [2, 3, 1, 0])  # HWIO
    dil = _as2d(dilations, spatial, 1)
    wh = _dilate(_dilate(wh, 0, dil[0]), 1, dil[1])
    st = _as2d(strides, spatial, 1)
    _check_fits(xh, wh)
    y = _grouped(xh, wh, group, lambda xi, wi: gnn.conv2d(xi, wi, st, "VALID"))
    y = _from_nhwc(y, spatial)
    if b is not None:
        y = y + arr.reshape(b, [-1] + [1] * spatial)
    return y


def _check_fits(xh: Tensor, wh: Tensor) -> None:
    for axis in (1, 2):
        if xh.shape[axis] is not None and xh.shape[axis] < wh.shape[axis - 1]:
            raise Unsupported("the (padded) input is smaller than the kernel")


def _conv_transpose(node, inputs, attrs, opset):
    x, w = inputs[:2]
    b = input_at(inputs, 2)
    if not x.dtype.is_floating or w.dtype is not x.dtype:
        raise Unsupported(f"ConvTranspose of {x.dtype.name} and {w.dtype.name}")
    spatial = len(x.shape) - 2
    if spatial not in (1, 2) or None in w.shape or None in x.shape[1:]:
        raise Unsupported("ConvTranspose needs 1-D or 2-D windows with known C and spatial dims")
    group = attrs.get("group", 1)
    kernel = list(attrs.get("kernel_shape", w.shape[2:]))
    if kernel != list(w.shape[2:]):
        raise Unsupported(f"kernel_shape {kernel} does not match the weights {list(w.shape)}")
    strides = list(attrs.get("strides", [1] * spatial))
    dilations = list(attrs.get("dilations", [1] * spatial))
    out_pad = list(attrs.get("output_padding", [0] * spatial))
    sizes = list(x.shape[2:])
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    auto = attrs.only("auto_pad", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")
    out_shape = attrs.get("output_shape")
    pads = list(attrs.get("pads", [0] * 2 * spatial))
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        if out_shape is None:
            out_shape = [n * s for n, s in zip(sizes, strides)]
        out_shape = list(out_shape)[-spatial:]
        begins, ends = [], []
        for n, s, e, op_, o in zip(sizes, strides, eff, out_pad, out_shape):
            total = s * (n - 1) + op_ + e - o  # negative: the output grows past the full one
            if auto == "SAME_UPPER":
                begins.append(total // 2)
                ends.append(total - total // 2)
            else:
                begins.append(total - total // 2)
                ends.append(total // 2)
        pads = begins + ends
    elif auto == "VALID":
        pads = [0] * 2 * spatial
    if len(pads) != 2 * spatial:
        raise Unsupported(f"pads {pads} for {spatial} spatial dims")
    xh = _to_nhwc(x)
    st = _as2d(strides, spatial, 1)
    xh = _dilate(_dilate(xh, 1, st[0]), 2, st[1])
    e2, op2 = _as2d(eff, spatial, 1), _as2d(out_pad, spatial, 0)
    p2 = pads if spatial == 2 else [0, pads[0], 0, pads[1]]
    full = [e2[0] - 1 - p2[0], e2[1] - 1 - p2[1],
            e2[0] - 1 - p2[2] + op2[0], e2[1] - 1 - p2[3] + op2[1]]
    xh = pad(xh, [0, full[0], full[1], 0, 0, full[2], full[3], 0], "constant", 0.0)
    # w is [C, O/group, kh, kw]: flip spatially, as HWIO per group [kh, kw, C/group, O/group]
    w4 = arr.expand_dims(w, 2) if spatial == 1 else w
    wh = arr.transpose(w4, [2, 3, 0, 1])[::-1, ::-1]
    dil = _as2d(dilations, spatial, 1)
    wh = _dilate(_dilate(wh, 0, dil[0]), 1, dil[1])
    _check_fits(xh, wh)
    cin = x.shape[1]
    if cin % group:
        raise Unsupported(f"group={group} does not divide {cin} channels")
    gi = cin // group
    outs = [gnn.conv2d(xh[:, :, :, g * gi:(g + 1) * gi], wh[:, :, g * gi:(g + 1) * gi, :],
                       [1, 1], "VALID") for g in range(group)]
    y = _from_nhwc(arr.concat(outs, 3) if group > 1 else outs[0], spatial)
    if b is not None:
        y = y + arr.reshape(b, [-1] + [1] * spatial)
    return y


# ---- pooling -------------------------------------------------------------------------
def _ceil_pads(sizes, kernel, strides, pads, ceil_mode: int, max_pool: bool) -> list[int]:
    """Extra end padding so VALID (floor) windows give ceil_mode's output size."""
    if not ceil_mode:
        return pads
    n = len(sizes)
    pads = list(pads)
    for i, (size, k, s) in enumerate(zip(sizes, kernel, strides)):
        if size is None:
            raise Unsupported("ceil_mode on a spatial dim of unknown size")
        padded = size + pads[i] + pads[i + n]
        floor_out = (padded - k) // s + 1
        ceil_out = -(-(padded - k) // s) + 1
        if (ceil_out - 1) * s >= size + pads[i]:
            ceil_out -= 1  # ONNX drops a last window that would start in the end padding
        if ceil_out != floor_out:
            if not max_pool:
                raise Unsupported("ceil_mode with a partial last window in AveragePool")
            pads[i + n] += (ceil_out - 1) * s + k - padded
    return pads


def _pool(kind: str):
    def convert(node, inputs, attrs, opset):
        x = inputs[0]
        if not x.dtype.is_floating:
            raise Unsupported(f"{kind} of {x.dtype.name}")
        if len(node.output) > 1 and node.output[1]:
            raise Unsupported("MaxPool's Indices output")
        kernel = list(attrs["kernel_shape"])
        spatial = len(x.shape) - 2
        if spatial < 1 or len(kernel) != spatial:
            raise Unsupported("kernel_shape does not match the input rank")
        strides = list(attrs.get("strides", [1] * spatial))
        dilations = list(attrs.get("dilations", [1] * spatial))
        pads = _window_pads(attrs, list(x.shape[2:]), kernel, strides, dilations)
        ceil_mode = attrs.get("ceil_mode", 0)
        if kind == "MaxPool":
            attrs.only("storage_order", 0)
        include = attrs.get("count_include_pad", 0) if kind == "AveragePool" else 0
        p = attrs.get("p", 2) if kind == "LpPool" else None
        eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
        pads = _ceil_pads(list(x.shape[2:]), eff, strides, pads, ceil_mode, kind != "AveragePool")
        if kind == "LpPool" or spatial > 2 or any(d != 1 for d in dilations):
            return _pool_taps(kind, x, kernel, strides, dilations, pads, include, p)
        k2, s2 = _as2d(kernel, spatial, 1), _as2d(strides, spatial, 1)
        p2 = _pads2d(pads, spatial)
        xh = _to_nhwc(x)
        if kind == "MaxPool":
            y = gnn.max_pool2d(pad(xh, p2, "constant", -math.inf), k2, s2, "VALID")
        else:
            y = gnn.avg_pool2d(pad(xh, p2, "constant", 0.0), k2, s2, "VALID")
            if not include and any(pads):
                y = y * constant(_avg_scale(xh.shape[1:3], k2, s2, p2), x.dtype)
        return _from_nhwc(y, spatial)
    return convert


def _pool_taps(kind, x, kernel, strides, dilations, pads, include, p) -> Tensor:
    """Any-rank pooling as a max/sum over one strided slice per kernel tap."""
    spatial = len(kernel)
    sizes = list(x.shape[2:])
    if None in sizes:
        raise Unsupported("pooling with dilations or 3-D windows needs known spatial dims")
    value = -math.inf if kind == "MaxPool" else 0.0
    xp = pad(x, [0, 0] + pads[:spatial] + [0, 0] + pads[spatial:], "constant", value)
    padded = list(xp.shape[2:])
    out = [(n - ((k - 1) * d + 1)) // s + 1 for n, k, d, s in zip(padded, kernel, dilations,
                                                                   strides)]
    if min(out) < 1:
        raise Unsupported("the (padded) input is smaller than the window")
    src = ew.abs(xp) if kind == "LpPool" else xp
    if kind == "LpPool":
        src = ew.pow(src, float(p))
    acc = None
    for tap in np.ndindex(*kernel):
        key = (slice(None), slice(None)) + tuple(
            slice(t * d, t * d + (o - 1) * s + 1, s)
            for t, d, o, s in zip(tap, dilations, out, strides))
        part = src[key]
        acc = part if acc is None else (ew.maximum(acc, part) if kind == "MaxPool" else acc + part)
    if kind == "LpPool":
        return ew.pow(acc, 1.0 / float(p))
    if kind == "AveragePool":
        count = np.zeros(out)
        inside = np.pad(np.ones(sizes), [(pads[i], pads[i + spatial]) for i in range(spatial)])
        if include:
            inside = np.ones(padded)
        for tap in np.ndindex(*kernel):
            key = tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                        for t, d, o, s in zip(tap, dilations, out, strides))
            count += inside[key]
        if (count == 0).any():
            raise Unsupported("an AveragePool window lies entirely in the padding")
        return acc * constant((1.0 / count).astype(x.dtype.np))
    return acc


def _avg_scale(hw, kernel, strides, p2) -> np.ndarray:
    """kh*kw / (unpadded cells) per output position, as [1, Ho, Wo, 1]."""
    if None in hw:
        raise Unsupported("AveragePool with padding on spatial dims of unknown size")
    ones = np.pad(np.ones(hw), ((p2[1], p2[5]), (p2[2], p2[6])))
    ho = (ones.shape[0] - kernel[0]) // strides[0] + 1
    wo = (ones.shape[1] - kernel[1]) // strides[1] + 1
    counts = np.array([[ones[i * strides[0]:i * strides[0] + kernel[0],
                             j * strides[1]:j * strides[1] + kernel[1]].sum() for j in range(wo)]
                       for i in range(ho)])
    if (counts == 0).any():
        raise Unsupported("an AveragePool window lies entirely in the padding")
    return (kernel[0] * kernel[1] / counts).reshape(1, ho, wo, 1)


def _global_pool(fn):
    def convert(node, inputs, attrs, opset):
        x = inputs[0]
        if not x.dtype.is_floating or len(x.shape) < 3:
            raise Unsupported("global pooling needs a floating N, C, spatial... tensor")
        return fn(x, list(range(2, len(x.shape))), keepdims=True)
    return convert


NN = {
    "MatMul": _matmul, "Gemm": _gemm, "Conv": _conv, "ConvTranspose": _conv_transpose,
    "MaxPool": _pool("MaxPool"), "AveragePool": _pool("AveragePool"), "LpPool": _pool("LpPool"),
    "GlobalAveragePool": _global_pool(red.reduce_mean),
    "GlobalMaxPool": _global_pool(red.reduce_max),
}
