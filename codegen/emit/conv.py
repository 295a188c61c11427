"""Convolution and pooling (NHWC activations, HWIO filters).

Conv2D and both of its backprops are implicit GEMMs on the tiled kernel of gemm.py: the
im2col matrix is never written; the GEMM's tile loader computes each element's input
position (and returns 0 for padding) while staging it in shared memory.

    Conv2D                 out[N*Ho*Wo, O]   = im2col(x)[N*Ho*Wo, kh*kw*C] @ w[kh*kw*C, O]
    Conv2DBackpropFilter   dw[kh*kw*C, O]    = im2col(x)^T             @ dy[N*Ho*Wo, O]
    Conv2DBackpropInput    dx[N*H*W, C]      = gather(dy)[N*H*W, kh*kw*O] @ w^T[kh*kw*O, C]
                           (row (n, h, w), column (i, j, o) reads dy at the output position
                           whose window tap (i, j) lands on (h, w): a col2im with no atomics)

Pooling kernels walk their output (or, for the gradients, their input) one element per
thread: the gradients gather over the windows that contain each input cell, so there are
no atomics and the result is deterministic.
"""

from __future__ import annotations

from graphflow.graph import Operation, Tensor
from graphflow.ops.nn import window_geometry

from ..kernel import EmitContext, KernelBuilder, add_map_kernel, add_zero_kernel, ctype, index_type_for, numel
from . import emitter
from .elementwise import Dialect
from .gemm import Operand, check_gemm_dtype, gemm_body, gemm_launch, tiling_for


def _pad_before(kb: KernelBuilder, x: Tensor, y: Tensor, axis: int, k: int, s: int, padding: str) -> str:
    """C expression for the padding before spatial `axis` (1 or 2) of input x, output y."""
    if padding == "VALID":
        return "0"
    if x.shape[axis] is not None:
        return str(window_geometry(x.shape[axis], k, s, padding)[1])
    size, out = kb.dim(x, axis), kb.dim(y, axis)  # SAME: total = max((out-1)*s + k - size, 0)
    total = f"(({out} - 1) * {s} + {k} - {size})"
    return f"({total} > 0 ? {total} / 2 : 0)"


class _Geometry:
    """C expressions for one window op: input x [N, H, W, C], output y [N, Ho, Wo, C']."""

    def __init__(self, kb: KernelBuilder, x: Tensor, y: Tensor, ksize, strides, padding: str) -> None:
        self.kh, self.kw = ksize
        self.sh, self.sw = strides
        self.H, self.W, self.C = kb.dim(x, 1), kb.dim(x, 2), kb.dim(x, 3)
        self.Ho, self.Wo = kb.dim(y, 1), kb.dim(y, 2)
        self.ph = _pad_before(kb, x, y, 1, self.kh, self.sh, padding)
        self.pw = _pad_before(kb, x, y, 2, self.kw, self.sw, padding)

    def text(self) -> str:
        return (f"{self.kh}x{self.kw} window, strides {self.sh}x{self.sw}, "
                f"padding before {self.ph}/{self.pw}")


def _gemm_kernel(ctx: EmitContext, op: Operation, m: str, n: str, k: str, a: Operand,
                 b: Operand, mnk, comment: str, kb: KernelBuilder, itype: str,
                 split_k: bool = False) -> None:
    out = op.outputs[0]
    t = tiling_for(out.dtype)
    c = kb.output(out)
    if split_k:  # K splits add their partial sums into the zeroed output
        store = lambda row, col, v: f"atomicAdd(&{c}[{row} * N + {col}], {v})"
        comment += "; split K over blockIdx.z, atomicAdd into the output zeroed by the kernel before"
    else:
        store = lambda row, col, v: f"{c}[{row} * N + {col}] = {v}"
    body = gemm_body(ctype(out.dtype), itype, t, m, n, k, a, b, store, split_k=split_k)
    ctx.add(kb.build(
        body,
        gemm_launch(t, lambda s: (mnk(s)[0], mnk(s)[1], 1), (lambda s: mnk(s)[2]) if split_k else None),
        flops=lambda s: 2 * mnk(s)[0] * mnk(s)[1] * mnk(s)[2],
        comment=f"{comment}; implicit GEMM, {t.describe()}",
    ))


def _im2col_load(g: _Geometry, px: str, itype: str, t: str, pixel: str, tap: str) -> tuple[str, str]:
    """(setup lines, value) of im2col(x) at output pixel `pixel` = (n, oh, ow) and filter tap
    `tap` = (i, j, c), read straight from x (0 in the padding): the forward conv and the
    filter gradient read the same matrix, one of them transposed."""
    return (
        f"const {itype} ow_ = {pixel} % {g.Wo}, oh_ = ({pixel} / {g.Wo}) % {g.Ho}, "
        f"n_ = {pixel} / {g.Wo} / {g.Ho};\n"
        f"const {itype} c_ = {tap} % {g.C}, tap_ = {tap} / {g.C};\n"
        f"const {itype} h_ = oh_ * {g.sh} - {g.ph} + tap_ / {g.kw};\n"
        f"const {itype} w_ = ow_ * {g.sw} - {g.pw} + tap_ % {g.kw};\n",
        f"(h_ >= 0 && h_ < {g.H} && w_ >= 0 && w_ < {g.W}) ? "
        f"{px}[((n_ * {g.H} + h_) * {g.W} + w_) * {g.C} + c_] : ({t})0",
    )


def _conv_attrs(op: Operation, w_shape) -> tuple:
    return (w_shape[0], w_shape[1]), op.attrs["strides"], op.attrs["padding"]


@emitter("Conv2D")
def emit_conv2d(ctx: EmitContext, op: Operation) -> None:
    check_gemm_dtype(op)
    x, w = op.inputs
    out = op.outputs[0]
    t = tiling_for(out.dtype)
    kb = ctx.builder(f"conv2d_gemm_{t.name}", [op])
    kb.output(out)
    px, pw_ = kb.input(x), kb.input(w)
    g = _Geometry(kb, x, out, *_conv_attrs(op, w.shape))
    itype = index_type_for(x, w, out)
    chans = kb.dim(w, 3)
    M = f"{kb.dim(out, 0)} * {g.Ho} * {g.Wo}"
    K = f"{g.kh * g.kw} * {g.C}"

    def load_x(m: str, k: str) -> tuple[str, str]:  # im2col(x)[m = (n, oh, ow), k = (i, j, c)]
        return _im2col_load(g, px, itype, ctype(out.dtype), pixel=m, tap=k)

    def mnk(s):
        so, sw = s[out], s[w]
        return so[0] * so[1] * so[2], sw[3], sw[0] * sw[1] * sw[2]

    _gemm_kernel(ctx, op, M, chans, K, Operand("k", load=load_x), Operand("n", pw_, chans), mnk,
                 f"conv2d {list(x.shape)} * {list(w.shape)} -> {list(out.shape)}, {g.text()}", kb, itype)


@emitter("Conv2DBackpropFilter")
def emit_conv2d_backprop_filter(ctx: EmitContext, op: Operation) -> None:
    check_gemm_dtype(op)
    x, dy, w_ref = op.inputs
    out = op.outputs[0]  # dw, shaped like w_ref (HWIO)
    t = tiling_for(out.dtype)
    # dw is small and K = N*Ho*Wo long: split K across blocks (atomics into a zeroed dw)
    add_zero_kernel(ctx, op, "conv2d_backprop_filter_zero",
                    f"zero {list(out.shape)} before the split-K GEMM accumulates into it")
    kb = ctx.builder(f"conv2d_backprop_filter_gemm_{t.name}", [op])
    kb.output(out)
    px, pdy = kb.input(x), kb.input(dy)
    g = _Geometry(kb, x, dy, *_conv_attrs(op, w_ref.shape))
    itype = index_type_for(x, dy, out)
    chans = kb.dim(out, 3)
    M = f"{g.kh * g.kw} * {g.C}"
    K = f"{kb.dim(dy, 0)} * {g.Ho} * {g.Wo}"

    def load_x(m: str, k: str) -> tuple[str, str]:  # im2col(x)^T[m = (i, j, c), k = (n, oh, ow)]
        return _im2col_load(g, px, itype, ctype(out.dtype), pixel=k, tap=m)

    def mnk(s):
        so, sd = s[out], s[dy]
        return so[0] * so[1] * so[2], so[3], sd[0] * sd[1] * sd[2]

    _gemm_kernel(ctx, op, M, chans, K, Operand("m", load=load_x),
                 Operand("n", pdy, chans), mnk,
                 f"conv2d filter gradient: x {list(x.shape)}, dy {list(dy.shape)} -> dw {list(out.shape)}, "
                 f"{g.text()}", kb, itype, split_k=True)


@emitter("Conv2DBackpropInput")
def emit_conv2d_backprop_input(ctx: EmitContext, op: Operation) -> None:
    check_gemm_dtype(op)
    dy, w, x_ref = op.inputs
    out = op.outputs[0]  # dx, shaped like x_ref (NHWC)
    t = tiling_for(out.dtype)
    kb = ctx.builder(f"conv2d_backprop_input_gemm_{t.name}", [op])
    kb.output(out)
    pdy, pw_ = kb.input(dy), kb.input(w)
    g = _Geometry(kb, out, dy, *_conv_attrs(op, w.shape))
    itype = index_type_for(dy, w, out)
    chans = kb.dim(w, 3)
    M = f"{kb.dim(out, 0)} * {g.H} * {g.W}"
    K = f"{g.kh * g.kw} * {chans}"
    zero = f"({ctype(out.dtype)})0"

    def tap_ok(p: str, s: int, limit: str) -> str:
        return f"{p} >= 0 && {p} < {limit} * {s}" + (f" && {p} % {s} == 0" if s > 1 else "")

    def load_dy(m: str, k: str) -> tuple[str, str]:  # [m = (n, h, w), k = (i, j, o)]
        return (
            f"const {itype} w_ = {m} % {g.W}, h_ = ({m} / {g.W}) % {g.H}, n_ = {m} / {g.W} / {g.H};\n"
            f"const {itype} o_ = {k} % {chans}, tap_ = {k} / {chans};\n"
            f"const {itype} hp_ = h_ + {g.ph} - tap_ / {g.kw}, wp_ = w_ + {g.pw} - tap_ % {g.kw};\n",
            f"({tap_ok('hp_', g.sh, g.Ho)} && {tap_ok('wp_', g.sw, g.Wo)}) ? "
            f"{pdy}[((n_ * {g.Ho} + hp_ / {g.sh}) * {g.Wo} + wp_ / {g.sw}) * {chans} + o_] : {zero}",
        )

    def load_w(k: str, n: str) -> tuple[str, str]:  # w^T[k = (i, j, o), n = c]
        return (f"const {itype} o_ = {k} % {chans}, tap_ = {k} / {chans};\n",
                f"{pw_}[(tap_ * {g.C} + {n}) * {chans} + o_]")

    def mnk(s):
        so, sw = s[out], s[w]
        return so[0] * so[1] * so[2], so[3], sw[0] * sw[1] * sw[3]

    _gemm_kernel(ctx, op, M, g.C, K, Operand("k", load=load_dy),
                 Operand("k", load=load_w), mnk,
                 f"conv2d input gradient: dy {list(dy.shape)}, w {list(w.shape)} -> dx {list(out.shape)}, "
                 f"{g.text()}", kb, itype)


# ---- pooling -------------------------------------------------------------------------------
def _unravel(i: str, g: _Geometry, spatial: tuple[str, str], itype: str) -> str:
    """nb, py, px, c of flat NHWC index i over [N, spatial..., C]."""
    hh, ww = spatial
    return (f"const {itype} c = {i} % {g.C}, px = ({i} / {g.C}) % {ww}, py = ({i} / {g.C} / {ww}) % {hh};\n"
            f"const {itype} nb = {i} / {g.C} / {ww} / {hh};\n")


def _window_origin(g: _Geometry, itype: str, oy: str = "py", ox: str = "px") -> str:
    return f"const {itype} h0 = {oy} * {g.sh} - {g.ph}, w0 = {ox} * {g.sw} - {g.pw};\n"


def _cell_count(g: _Geometry, itype: str, padding: str) -> str:
    """Unpadded cells of the window at (h0, w0) (SAME divides by these, VALID by kh*kw)."""
    if padding == "VALID":
        return f"const {itype} count = {g.kh * g.kw};\n"
    return (
        f"const {itype} count = ((h0 + {g.kh} < {g.H} ? h0 + {g.kh} : {g.H}) - (h0 > 0 ? h0 : 0)) *\n"
        f"                       ((w0 + {g.kw} < {g.W} ? w0 + {g.kw} : {g.W}) - (w0 > 0 ? w0 : 0));\n"
    )


def _pool_kernel(ctx, op, walk: Tensor, inner: str, comment: str, kb, itype):
    kh, kw = op.attrs["ksize"]
    add_map_kernel(ctx, kb, walk, inner, itype, comment, flops=lambda s: numel(s[walk]) * kh * kw)


@emitter("MaxPool", "AvgPool")
def emit_pool(ctx: EmitContext, op: Operation) -> None:
    x, out = op.inputs[0], op.outputs[0]
    is_max = op.type == "MaxPool"
    kb = ctx.builder("max_pool" if is_max else "avg_pool", [op])
    o, px = kb.output(out), kb.input(x)
    g = _Geometry(kb, x, out, op.attrs["ksize"], op.attrs["strides"], op.attrs["padding"])
    itype = index_type_for(x, out)
    d = Dialect(out.dtype)
    T = ctype(out.dtype)
    load = f"{px}[((nb * {g.H} + h) * {g.W} + w) * {g.C} + c]"
    if is_max:  # padded cells are -inf; NaN propagates like np.max
        init, update, result = f"{T} best = {d.lit(float('-inf'))};", \
            f"const {T} v = {load};\n      if (v > best || v != v) best = v;", "best"
    else:
        init, update, result = f"{T} total = {d.lit(0)};", f"total += {load};", "total / count"
    inner = (
        _unravel("i", g, (g.Ho, g.Wo), itype) + _window_origin(g, itype) + init + "\n"
        + f"for (int i_ = 0; i_ < {g.kh}; ++i_) {{\n"
        f"  const {itype} h = h0 + i_;\n"
        f"  if (h < 0 || h >= {g.H}) continue;\n"
        f"  for (int j_ = 0; j_ < {g.kw}; ++j_) {{\n"
        f"    const {itype} w = w0 + j_;\n"
        f"    if (w >= 0 && w < {g.W}) {{\n      {update}\n    }}\n"
        f"  }}\n"
        f"}}\n"
        + ("" if is_max else _cell_count(g, itype, op.attrs["padding"]))
        + f"{o}[i] = {result};"
    )
    what = "max" if is_max else "average"
    _pool_kernel(ctx, op, out, inner,
                 f"{what} pool {list(x.shape)} -> {list(out.shape)}, {g.text()}; one output per thread",
                 kb, itype)


def _window_range(g: _Geometry, itype: str) -> str:
    """The windows (oy in [oy0, oy1], ox in [ox0, ox1]) that contain input cell (py, px)."""
    return (
        f"const {itype} hp = py + {g.ph}, wp = px + {g.pw};\n"
        f"const {itype} oy0 = hp >= {g.kh} ? (hp - {g.kh}) / {g.sh} + 1 : 0;\n"
        f"const {itype} ox0 = wp >= {g.kw} ? (wp - {g.kw}) / {g.sw} + 1 : 0;\n"
        f"const {itype} oy1 = hp / {g.sh} < {g.Ho} - 1 ? hp / {g.sh} : {g.Ho} - 1;\n"
        f"const {itype} ox1 = wp / {g.sw} < {g.Wo} - 1 ? wp / {g.sw} : {g.Wo} - 1;\n"
    )


def _first_max_tap(g: _Geometry, px: str, itype: str, t: str, d: Dialect, indent: str) -> str:
    """Code setting best_tap: the window at (h0, w0)'s first maximum in row-major order
    (padding is -inf, a NaN wins), as the reference's argmax picks it."""
    lines = [
        "// the window's first maximum in row-major order (padding is -inf, a NaN wins)",
        "int best_tap = 0;",
        f"{t} best = {d.lit(float('-inf'))};",
        "#pragma unroll",
        f"for (int tap = 0; tap < {g.kh * g.kw}; ++tap) {{",
        f"  const {itype} h = h0 + tap / {g.kw}, w = w0 + tap % {g.kw};",
        f"  const {t} v = (h >= 0 && h < {g.H} && w >= 0 && w < {g.W})",
        f"      ? {px}[((nb * {g.H} + h) * {g.W} + w) * {g.C} + c] : {d.lit(float('-inf'))};",
        "  if (tap == 0 || v > best || (v != v && best == best)) { best = v; best_tap = tap; }",
        "}",
    ]
    return "".join(indent + line + "\n" for line in lines)


@emitter("MaxPoolGradGrad")
def emit_max_pool_grad_grad(ctx: EmitContext, op: Operation) -> None:
    """The adjoint of MaxPoolGrad: each window reads h at its first maximum (second order)."""
    x, h_in = op.inputs
    out = op.outputs[0]  # shaped like the pooled output
    kb = ctx.builder("max_pool_grad_grad", [op])
    o, px, ph = kb.output(out), kb.input(x), kb.input(h_in)
    g = _Geometry(kb, x, out, op.attrs["ksize"], op.attrs["strides"], op.attrs["padding"])
    itype = index_type_for(x, out)
    T, d = ctype(out.dtype), Dialect(out.dtype)
    inner = (
        _unravel("i", g, (g.Ho, g.Wo), itype) + _window_origin(g, itype)
        + _first_max_tap(g, px, itype, T, d, "")
        + f"const {itype} hb = h0 + best_tap / {g.kw}, wb = w0 + best_tap % {g.kw};\n"
        + f"{o}[i] = (hb >= 0 && hb < {g.H} && wb >= 0 && wb < {g.W})\n"
        + f"    ? {ph}[((nb * {g.H} + hb) * {g.W} + wb) * {g.C} + c] : {d.lit(0)};"
    )
    _pool_kernel(ctx, op, out, inner,
                 f"max pool second-order gradient {list(h_in.shape)} -> {list(out.shape)}, {g.text()}",
                 kb, itype)


@emitter("MaxPoolGrad")
def emit_max_pool_grad(ctx: EmitContext, op: Operation) -> None:
    x, gy = op.inputs
    out = op.outputs[0]  # dx, shaped like x
    kb = ctx.builder("max_pool_grad", [op])
    o, px, pg = kb.output(out), kb.input(x), kb.input(gy)
    g = _Geometry(kb, x, gy, op.attrs["ksize"], op.attrs["strides"], op.attrs["padding"])
    itype = index_type_for(x, gy, out)
    T = ctype(out.dtype)
    d = Dialect(out.dtype)
    inner = (
        _unravel("i", g, (g.H, g.W), itype) + _window_range(g, itype)
        + f"{T} acc = {d.lit(0)};\n"
        f"for ({itype} oy = oy0; oy <= oy1; ++oy) {{\n"
        f"  for ({itype} ox = ox0; ox <= ox1; ++ox) {{\n"
        f"    const {itype} h0 = oy * {g.sh} - {g.ph}, w0 = ox * {g.sw} - {g.pw};\n"
        + _first_max_tap(g, px, itype, T, d, "    ")
        + f"    if (best_tap == (py - h0) * {g.kw} + (px - w0))\n"
        f"      acc += {pg}[((nb * {g.Ho} + oy) * {g.Wo} + ox) * {g.C} + c];\n"
        f"  }}\n"
        f"}}\n"
        f"{o}[i] = acc;"
    )
    _pool_kernel(ctx, op, out, inner,
                 f"max pool gradient {list(gy.shape)} -> {list(out.shape)}, {g.text()}; each input cell "
                 "gathers the gradient of the windows whose first maximum it is", kb, itype)


@emitter("AvgPoolGrad")
def emit_avg_pool_grad(ctx: EmitContext, op: Operation) -> None:
    gy, x_ref = op.inputs
    out = op.outputs[0]  # dx, shaped like x_ref
    kb = ctx.builder("avg_pool_grad", [op])
    o, pg = kb.output(out), kb.input(gy)
    g = _Geometry(kb, out, gy, op.attrs["ksize"], op.attrs["strides"], op.attrs["padding"])
    itype = index_type_for(gy, out)
    T = ctype(out.dtype)
    d = Dialect(out.dtype)
    inner = (
        _unravel("i", g, (g.H, g.W), itype) + _window_range(g, itype)
        + f"{T} acc = {d.lit(0)};\n"
        f"for ({itype} oy = oy0; oy <= oy1; ++oy) {{\n"
        f"  for ({itype} ox = ox0; ox <= ox1; ++ox) {{\n"
        + "".join("    " + line + "\n" for line in
                  (_window_origin(g, itype, "oy", "ox") + _cell_count(g, itype, op.attrs["padding"]))
                  .splitlines())
        + f"    acc += {pg}[((nb * {g.Ho} + oy) * {g.Wo} + ox) * {g.C} + c] / ({T})count;\n"
        f"  }}\n"
        f"}}\n"
        f"{o}[i] = acc;"
    )
    _pool_kernel(ctx, op, out, inner,
                 f"average pool gradient {list(gy.shape)} -> {list(out.shape)}, {g.text()}; each input "
                 "cell gathers from the windows that contain it", kb, itype)
