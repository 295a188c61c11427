"""Neural-network ops: softmax family, cross-entropy, layer norm, conv2d, pooling.

Each is one op (so codegen can give it a row kernel), with a gradient built
from other graph ops so second derivatives work too.
"""
from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import DTypeError, GraphflowError, ShapeError
from ..graph import Tensor
from ..registry import Spec, register
from ..shapes import normalize_axis, same_dim
from . import elementwise as ew
from .array import expand_dims, one_hot, reshape
from .core import as_tensor, builder, make, match_dtypes
from .reduction import reduce_mean, reduce_sum


def _float_infer(specs, **attrs):
    if not specs[0].dtype.is_floating:
        raise DTypeError(f"needs a floating tensor, got {specs[0].dtype.name}")
    return specs[0]


# ---- softmax / log_softmax -----------------------------------------------------
def _np_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _np_log_softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _softmax_grad(op, g):
    return [make("SoftmaxGrad", [op.outputs[0], g], {"axis": op.attrs["axis"]})]


def _softmax_grad_compute(y, g, axis):
    return (y * (g - np.sum(g * y, axis=axis, keepdims=True))).astype(y.dtype)


def _softmax_grad_grad(op, grad):
    from ..autodiff import gradients  # second derivatives: through the primitive form
    y, g = op.inputs
    expr = y * (g - reduce_sum(g * y, op.attrs["axis"], keepdims=True))
    return gradients(expr, [y, g], grad_ys=grad, name="primitive", stop_gradients=[y, g])


register("SoftmaxGrad", infer=lambda specs, axis: _standardize_grad_infer(specs, axis, 0.0),
         compute=_softmax_grad_compute, grad=_softmax_grad_grad)


def _log_softmax_grad(op, g):
    y, axis = op.outputs[0], op.attrs["axis"]
    return [g - ew.exp(y) * reduce_sum(g, axis, keepdims=True)]


register("Softmax", infer=_float_infer, compute=_np_softmax, grad=_softmax_grad)
register("LogSoftmax", infer=_float_infer, compute=_np_log_softmax, grad=_log_softmax_grad)


@builder("softmax")
def softmax(logits, axis: int = -1, name: str | None = None) -> Tensor:
    """Numerically stable softmax along axis."""
    x = as_tensor(logits)
    return make("Softmax", [x], {"axis": normalize_axis(axis, len(x.shape), "softmax axis")}, name)


@builder("log_softmax")
def log_softmax(logits, axis: int = -1, name: str | None = None) -> Tensor:
    """log(softmax(logits)) along axis, computed stably."""
    x = as_tensor(logits)
    return make("LogSoftmax", [x], {"axis": normalize_axis(axis, len(x.shape),
                                                           "log_softmax axis")}, name)


# ---- cross-entropy ----------------------------------------------------------------
def _sparse_xent_infer(specs):
    logits, labels = specs
    if not logits.dtype.is_floating:
        raise DTypeError(f"logits must be floating, got {logits.dtype.name}")
    if not labels.dtype.is_integer:
        raise DTypeError(f"sparse labels must be int32 or int64, got {labels.dtype.name}")
    if len(logits.shape) != len(labels.shape) + 1 or not all(
            same_dim(a, b) for a, b in zip(logits.shape[:-1], labels.shape)):
        raise ShapeError(f"labels of shape {list(labels.shape)} do not match logits of shape "
                         f"{list(logits.shape)} (labels need the logits' shape without its last dim)")
    return Spec(tuple(a if a is not None else b for a, b in zip(logits.shape[:-1], labels.shape)),
                logits.dtype)


def _sparse_xent_compute(logits, labels):
    classes = logits.shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)].flat[0]
        raise GraphflowError(f"label {bad} is out of range [0, {classes})")
    logp = _np_log_softmax(logits, -1)
    return -np.take_along_axis(logp, labels[..., None].astype(np.int64), -1)[..., 0]


def _sparse_xent_grad(op, g):
    logits, labels = op.inputs
    probs = softmax(logits)
    onehot = one_hot(labels, logits.shape[-1] if logits.shape[-1] is not None else
                     _need_classes(logits), dtype=logits.dtype)
    return [(probs - onehot) * expand_dims(g, -1), None]


def _need_classes(logits):
    raise ShapeError(f"the number of classes (last dim of {logits.name}) must be known")


register("SparseSoftmaxCrossEntropy", infer=_sparse_xent_infer, compute=_sparse_xent_compute,
         grad=_sparse_xent_grad)


@builder("sparse_softmax_cross_entropy_with_logits")
def sparse_softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None,
                                             name: str | None = None) -> Tensor:
    """Per-example -log softmax(logits)[label]; no gradient flows into labels."""
    if _sentinel is not None or labels is None or logits is None:
        raise TypeError("call sparse_softmax_cross_entropy_with_logits with named arguments: "
                        "labels=..., logits=...")
    return make("SparseSoftmaxCrossEntropy", [as_tensor(logits), as_tensor(labels)], name=name)


def _xent_infer(specs):
    logits, labels = specs
    if logits.dtype is not labels.dtype or not logits.dtype.is_floating:
        raise DTypeError(f"logits and labels must share a floating dtype, got "
                         f"{logits.dtype.name} and {labels.dtype.name}")
    if len(logits.shape) != len(labels.shape) or not all(
            same_dim(a, b) for a, b in zip(logits.shape, labels.shape)):
        raise ShapeError(f"labels of shape {list(labels.shape)} and logits of shape "
                         f"{list(logits.shape)} must match")
    return Spec(logits.shape[:-1], logits.dtype)


def _xent_grad(op, g):
    logits, labels = op.inputs
    probs = softmax(logits)
    return [(probs * reduce_sum(labels, -1, keepdims=True) - labels) * expand_dims(g, -1), None]


register("SoftmaxCrossEntropy", infer=_xent_infer,
         compute=lambda logits, labels: -np.sum(labels * _np_log_softmax(logits, -1), axis=-1),
         grad=_xent_grad)


@builder("softmax_cross_entropy_with_logits")
def softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None,
                                      name: str | None = None) -> Tensor:
    """Per-example -sum(labels * log_softmax(logits)); labels get no gradient (TF1)."""
    if _sentinel is not None or labels is None or logits is None:
        raise TypeError("call softmax_cross_entropy_with_logits with named arguments: "
                        "labels=..., logits=...")
    logits, labels = match_dtypes("softmax_cross_entropy_with_logits", logits, labels)
    return make("SoftmaxCrossEntropy", [logits, labels], name=name)


# ---- layer norm: standardize along an axis, then scale and shift ---------------------------
# layer_norm(x) = standardize(x) * gamma + beta, as TF1's contrib layer_norm composes it: the
# standardization is one row op (forward and backward each a row kernel), the scale and shift
# are elementwise (a row kernel's epilogue), and their gradients are plain column sums.
def _standardize_compute(x, axis, epsilon):
    mean = np.mean(x, axis=axis, keepdims=True)
    var = np.mean(np.square(x - mean), axis=axis, keepdims=True)
    return ((x - mean) / np.sqrt(var + x.dtype.type(epsilon))).astype(x.dtype)


def _standardize_grad_compute(x, dy, axis, epsilon):
    xc = x - np.mean(x, axis=axis, keepdims=True)
    rstd = 1 / np.sqrt(np.mean(np.square(xc), axis=axis, keepdims=True) + x.dtype.type(epsilon))
    xhat = xc * rstd
    dx = rstd * (dy - np.mean(dy, axis=axis, keepdims=True)
                 - xhat * np.mean(dy * xhat, axis=axis, keepdims=True))
    return dx.astype(x.dtype)


def _standardize_grad_infer(specs, axis, epsilon):
    x, dy = specs
    if x.dtype is not dy.dtype or len(x.shape) != len(dy.shape) or \
            not all(same_dim(a, b) for a, b in zip(x.shape, dy.shape)):
        raise ShapeError(f"row gradient: x {list(x.shape)} {x.dtype.name} and dy "
                         f"{list(dy.shape)} {dy.dtype.name} must match")
    return x


def _standardize_grad_expr(x, dy, axis, eps):
    """StandardizeGrad from primitive ops (what its own gradient differentiates)."""
    xc = x - reduce_mean(x, axis, keepdims=True)
    rstd = ew.rsqrt(reduce_mean(xc * xc, axis, keepdims=True) + eps)
    xhat = xc * rstd
    return rstd * (dy - reduce_mean(dy, axis, keepdims=True)
                   - xhat * reduce_mean(dy * xhat, axis, keepdims=True))


def _standardize_grad(op, g):
    return [make("StandardizeGrad", [op.inputs[0], g], dict(op.attrs))]


def _standardize_grad_grad(op, g):
    from ..autodiff import gradients  # second derivatives: through the primitive form
    x, dy = op.inputs
    expr = _standardize_grad_expr(x, dy, op.attrs["axis"], op.attrs["epsilon"])
    # partial derivatives only: dy (and x) may depend on x, which the walk outside accounts for
    return gradients(expr, [x, dy], grad_ys=g, name="primitive", stop_gradients=[x, dy])


register("Standardize", infer=lambda specs, axis, epsilon: _float_infer(specs),
         compute=_standardize_compute, grad=_standardize_grad)
register("StandardizeGrad", infer=_standardize_grad_infer, compute=_standardize_grad_compute,
         grad=_standardize_grad_grad)


def _param_shape(rank: int, axis: int) -> tuple:
    return (-1,) + (1,) * (rank - 1 - axis)


@builder("layer_norm")
def layer_norm(x, gamma, beta, axis: int = -1, epsilon: float = 1e-5,
               name: str | None = None) -> Tensor:
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over `axis` (biased variance)."""
    x = as_tensor(x)
    with x.graph.as_default():
        gamma, beta = as_tensor(gamma, x.dtype), as_tensor(beta, x.dtype)
    axis = normalize_axis(axis, len(x.shape), "layer_norm axis")
    if not (x.dtype is gamma.dtype is beta.dtype) or not x.dtype.is_floating:
        raise DTypeError(f"x, gamma, beta must share a floating dtype, got "
                         f"{x.dtype.name}, {gamma.dtype.name}, {beta.dtype.name}")
    for what, t in (("gamma", gamma), ("beta", beta)):
        if len(t.shape) != 1 or not same_dim(t.shape[0], x.shape[axis]):
            raise ShapeError(f"{what} must have shape [{x.shape[axis]}] (x's axis {axis}), "
                             f"got {list(t.shape)}")
    xhat = make("Standardize", [x], {"axis": axis, "epsilon": float(epsilon)})
    shape = _param_shape(len(x.shape), axis)
    if len(shape) > 1:
        gamma, beta = reshape(gamma, shape), reshape(beta, shape)
    return ew.add(ew.multiply(xhat, gamma), beta, name=name)


# ---- windows: conv2d and pooling (NHWC) -------------------------------------------------
def _pair(value, what: str) -> tuple:
    """An int, a pair, or TF's 4-list [1, h, w, 1]."""
    if isinstance(value, numbers.Integral):
        items = (int(value), int(value))
    else:
        items = tuple(value)
        if len(items) == 4:
            if items[0] != 1 or items[3] != 1:
                raise ShapeError(f"{what} {list(items)}: batch and channel entries must be 1")
            items = items[1:3]
        if len(items) != 2:
            raise ShapeError(f"{what} must be an int, a pair or [1, h, w, 1], got {value!r}")
    if any(not isinstance(v, numbers.Integral) or v < 1 for v in items):
        raise ShapeError(f"{what} entries must be ints >= 1, got {value!r}")
    return tuple(int(v) for v in items)


def _padding(padding: str) -> str:
    if not isinstance(padding, str) or padding.upper() not in ("SAME", "VALID"):
        raise ShapeError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    return padding.upper()


def window_geometry(size, k: int, s: int, padding: str) -> tuple:
    """(output size, padding before, padding after) along one spatial dim."""
    if size is None:
        return None, None, None
    if padding == "VALID":
        if size < k:
            raise ShapeError(f"window {k} is larger than the input size {size} with VALID padding")
        return (size - k) // s + 1, 0, 0
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def _windows(x, kh, kw, strides, padding, pad_value=0.0):
    """[N, Ho, Wo, C, kh, kw] view of the (padded) input windows."""
    (ho, ph0, ph1), (wo, pw0, pw1) = (window_geometry(x.shape[1], kh, strides[0], padding),
                                      window_geometry(x.shape[2], kw, strides[1], padding))
    xp = np.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)), constant_values=pad_value)
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))
    return win[:, ::strides[0], ::strides[1]][:, :ho, :wo]


def _spatial_out(x_shape, kh, kw, strides, padding):
    return (window_geometry(x_shape[1], kh, strides[0], padding)[0],
            window_geometry(x_shape[2], kw, strides[1], padding)[0])


def _conv_infer(specs, strides, padding):
    x, w = specs
    if x.dtype is not w.dtype or not x.dtype.is_floating:
        raise DTypeError(f"conv2d: input and filters must share a floating dtype, got "
                         f"{x.dtype.name} and {w.dtype.name}")
    if len(x.shape) != 4 or len(w.shape) != 4:
        raise ShapeError(f"conv2d needs NHWC input and HWIO filters (rank 4), got "
                         f"{list(x.shape)} and {list(w.shape)}")
    if not same_dim(x.shape[3], w.shape[2]):
        raise ShapeError(f"conv2d: input has {x.shape[3]} channels but filters expect "
                         f"{w.shape[2]} (filters {list(w.shape)} are HWIO)")
    if w.shape[0] is None or w.shape[1] is None:
        raise ShapeError("conv2d: filter height and width must be known")
    ho, wo = _spatial_out(x.shape, w.shape[0], w.shape[1], strides, padding)
    return Spec((x.shape[0], ho, wo, w.shape[3]), x.dtype)


def _conv_compute(x, w, strides, padding):
    win = _windows(x, w.shape[0], w.shape[1], strides, padding)
    return np.einsum("nhwcij,ijco->nhwo", win, w, optimize=True).astype(x.dtype)


def _scatter_windows(x_shape, kh, kw, strides, padding, per_tap, dtype):
    """Sum per_tap(i, j) ([N, Ho, Wo, C]) into the input positions each tap read."""
    ho, ph0, ph1 = window_geometry(x_shape[1], kh, strides[0], padding)
    wo, pw0, pw1 = window_geometry(x_shape[2], kw, strides[1], padding)
    out = np.zeros((x_shape[0], x_shape[1] + ph0 + ph1, x_shape[2] + pw0 + pw1, x_shape[3]), dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, i:i + strides[0] * ho:strides[0], j:j + strides[1] * wo:strides[1]] += per_tap(i, j)
    return out[:, ph0:ph0 + x_shape[1], pw0:pw0 + x_shape[2]]


def _conv_input_grad_compute(dy, w, x_ref, strides, padding):
    return _scatter_windows(x_ref.shape, w.shape[0], w.shape[1], strides, padding,
                            lambda i, j: dy @ w[i, j].T, dy.dtype)


def _conv_filter_grad_compute(x, dy, w_ref, strides, padding):
    win = _windows(x, w_ref.shape[0], w_ref.shape[1], strides, padding)
    return np.einsum("nhwcij,nhwo->ijco", win, dy, optimize=True).astype(x.dtype)


def _conv_grad(op, g):
    x, w = op.inputs
    attrs = dict(op.attrs)
    return [make("Conv2DBackpropInput", [g, w, x], attrs),
            make("Conv2DBackpropFilter", [x, g, w], attrs)]


def _conv_input_grad_grad(op, g):  # d/d(dy) and d/dw of the adjoint
    dy, w, _ = op.inputs
    return [make("Conv2D", [g, w], dict(op.attrs)),
            make("Conv2DBackpropFilter", [g, dy, w], dict(op.attrs)), None]


def _conv_filter_grad_grad(op, g):
    x, dy, _ = op.inputs
    return [make("Conv2DBackpropInput", [dy, g, x], dict(op.attrs)),
            make("Conv2D", [x, g], dict(op.attrs)), None]


register("Conv2D", infer=_conv_infer, compute=_conv_compute, grad=_conv_grad)
register("Conv2DBackpropInput", infer=lambda specs, **a: Spec(specs[2].shape, specs[0].dtype),
         compute=_conv_input_grad_compute, grad=_conv_input_grad_grad)
register("Conv2DBackpropFilter", infer=lambda specs, **a: Spec(specs[2].shape, specs[0].dtype),
         compute=_conv_filter_grad_compute, grad=_conv_filter_grad_grad)


@builder("conv2d")
def conv2d(x, filters, strides, padding: str, name: str | None = None) -> Tensor:
    """2-D convolution; x is NHWC, filters HWIO; SAME pads total//2 before."""
    x, filters = match_dtypes("conv2d", x, filters)
    return make("Conv2D", [x, filters], {"strides": _pair(strides, "conv2d strides"),
                                         "padding": _padding(padding)}, name)


def _pool_infer(specs, ksize, strides, padding):
    x = specs[0]
    if len(x.shape) != 4:
        raise ShapeError(f"pooling needs an NHWC tensor (rank 4), got {list(x.shape)}")
    if not x.dtype.is_floating:
        raise DTypeError(f"pooling needs a floating tensor, got {x.dtype.name}")
    ho, wo = _spatial_out(x.shape, ksize[0], ksize[1], strides, padding)
    return Spec((x.shape[0], ho, wo, x.shape[3]), x.dtype)


def _max_pool_compute(x, ksize, strides, padding):
    return _windows(x, *ksize, strides, padding, -np.inf).max(axis=(4, 5))


def _max_pool_grad_compute(x, g, ksize, strides, padding):
    win = _windows(x, *ksize, strides, padding, -np.inf)
    flat = win.reshape(win.shape[:4] + (-1,))
    first_max = np.argmax(flat, axis=-1)  # ties go to the first cell, as in TF

    def tap(i, j):
        return np.where(first_max == i * ksize[1] + j, g, 0).astype(g.dtype)
    return _scatter_windows(x.shape, *ksize, strides, padding, tap, g.dtype)


def _ones_count(shape, ksize, strides, padding):
    ones = np.ones((1, shape[1], shape[2], 1))
    return _windows(ones, *ksize, strides, padding).sum(axis=(4, 5))


def _avg_pool_compute(x, ksize, strides, padding):
    total = _windows(x, *ksize, strides, padding).sum(axis=(4, 5))
    return (total / _ones_count(x.shape, ksize, strides, padding)).astype(x.dtype)


def _avg_pool_grad_compute(g, x_ref, ksize, strides, padding):
    scaled = g / _ones_count(x_ref.shape, ksize, strides, padding)
    return _scatter_windows(x_ref.shape, *ksize, strides, padding,
                            lambda i, j: scaled, g.dtype).astype(g.dtype)


register("MaxPool", infer=_pool_infer, compute=_max_pool_compute,
         grad=lambda op, g: [make("MaxPoolGrad", [op.inputs[0], g], dict(op.attrs))])
def _max_pool_grad_grad_compute(x, h, ksize, strides, padding):
    """The adjoint of MaxPoolGrad in g: each window reads h at its first max cell."""
    win = _windows(x, *ksize, strides, padding, -np.inf)
    first_max = np.argmax(win.reshape(win.shape[:4] + (-1,)), axis=-1)
    h_win = _windows(h, *ksize, strides, padding).reshape(win.shape[:4] + (-1,))
    return np.take_along_axis(h_win, first_max[..., None], -1)[..., 0]


# MaxPoolGrad(x, g) is linear in g and piecewise constant in x (zero gradient almost
# everywhere), so its gradient is its adjoint in g; the two ops are each other's gradients.
register("MaxPoolGrad", infer=lambda specs, **a: specs[0], compute=_max_pool_grad_compute,
         grad=lambda op, h: [None, make("MaxPoolGradGrad", [op.inputs[0], h], dict(op.attrs))])
register("MaxPoolGradGrad", infer=lambda specs, **a: _pool_infer(specs[:1], **a),
         compute=_max_pool_grad_grad_compute,
         grad=lambda op, g: [None, make("MaxPoolGrad", [op.inputs[0], g], dict(op.attrs))])
register("AvgPool", infer=_pool_infer, compute=_avg_pool_compute,
         grad=lambda op, g: [make("AvgPoolGrad", [g, op.inputs[0]], dict(op.attrs))])
register("AvgPoolGrad", infer=lambda specs, **a: specs[1], compute=_avg_pool_grad_compute,
         grad=lambda op, g: [make("AvgPool", [g], dict(op.attrs)), None])


def _pool(op_type, x, ksize, strides, padding, name):
    return make(op_type, [as_tensor(x)], {"ksize": _pair(ksize, "ksize"),
                                          "strides": _pair(strides, "strides"),
                                          "padding": _padding(padding)}, name)


@builder("max_pool2d")
def max_pool2d(x, ksize, strides, padding: str, name: str | None = None) -> Tensor:
    """Max over each window of an NHWC tensor; SAME pads with -inf."""
    return _pool("MaxPool", x, ksize, strides, padding, name)


@builder("avg_pool2d")
def avg_pool2d(x, ksize, strides, padding: str, name: str | None = None) -> Tensor:
    """Average pool; with SAME, each output divides by its number of unpadded cells."""
    return _pool("AvgPool", x, ksize, strides, padding, name)
