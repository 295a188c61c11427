"""TF1 functions built exactly from other ops (which fuse with their neighbours):
clip_by_value, leaky_relu, sigmoid_cross_entropy_with_logits, l2_loss, moments,
batch_normalization (and elu: TF1's argument names over the Elu op). Each follows
TF1's own formula, so values and gradients (including ties and kinks) match TF1.
"""
from __future__ import annotations

from ..errors import DTypeError, ShapeError
from ..graph import Tensor
from ..shapes import normalize_axes, same_dim
from .array import squeeze
from .core import as_tensor, builder, match_dtypes, stop_gradient, zeros_like
from .elementwise import elu as _elu
from .elementwise import exp, greater_equal, log1p, maximum, minimum, rsqrt, square, where
from .reduction import reduce_mean, reduce_sum


def _site() -> str:
    from ..graph import definition_site
    return definition_site()


@builder("clip_by_value")
def clip_by_value(t, clip_value_min, clip_value_max, name: str | None = None) -> Tensor:
    """Clamp t to [clip_value_min, clip_value_max] (bounds broadcast against t).

    As TF1: maximum(minimum(t, max), min); the gradient passes where t is inside the
    bounds, ties included."""
    t = as_tensor(t)
    with t.graph.as_default(), t.graph.name_scope(name or "clip_by_value"):
        return maximum(minimum(t, clip_value_max), clip_value_min)


@builder("leaky_relu")
def leaky_relu(features, alpha: float = 0.2, name: str | None = None) -> Tensor:
    """max(alpha * x, x) for alpha <= 1 (TF1's formula); x if x > 0 else alpha * x otherwise."""
    x = as_tensor(features)
    with x.graph.as_default(), x.graph.name_scope(name or "LeakyRelu"):
        if alpha <= 1:
            return maximum(x * float(alpha), x)
        return where(x > 0, x, x * float(alpha))


@builder("elu")
def elu(features, name: str | None = None) -> Tensor:
    """Exponential linear unit: x if x > 0 else exp(x) - 1 (one elementwise op, Elu)."""
    return _elu(features, name)


@builder("sigmoid_cross_entropy_with_logits")
def sigmoid_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None,
                                      name: str | None = None) -> Tensor:
    """Per-element -z*log(sigmoid(x)) - (1-z)*log(1-sigmoid(x)), with TF's stable formula
    max(x, 0) - x*z + log(1 + exp(-|x|)). labels (z) and logits (x) have the same shape.

    As the softmax cross-entropies here, no gradient flows into labels."""
    if _sentinel is not None or labels is None or logits is None:
        raise TypeError("call sigmoid_cross_entropy_with_logits with named arguments: "
                        "labels=..., logits=...")
    x, z = match_dtypes("sigmoid_cross_entropy_with_logits", logits, labels)
    if len(x.shape) != len(z.shape) or not all(same_dim(a, b) for a, b in zip(x.shape, z.shape)):
        raise ShapeError(f"sigmoid_cross_entropy_with_logits: logits {list(x.shape)} and labels "
                         f"{list(z.shape)} must have the same shape (at {_site()})")
    if not x.dtype.is_floating:
        raise DTypeError(f"sigmoid_cross_entropy_with_logits needs floating logits, got "
                         f"{x.dtype.name} (at {_site()})")
    with x.graph.as_default(), x.graph.name_scope(name or "logistic_loss"):
        z = stop_gradient(z)
        positive = greater_equal(x, zeros_like(x))
        relu_logits = where(positive, x, zeros_like(x))
        neg_abs_logits = where(positive, -x, x)
        return relu_logits - x * z + log1p(exp(neg_abs_logits))


@builder("l2_loss")
def l2_loss(t, name: str | None = None) -> Tensor:
    """sum(t ** 2) / 2, a scalar."""
    t = as_tensor(t)
    with t.graph.as_default(), t.graph.name_scope(name or "L2Loss"):
        return reduce_sum(t * t) * 0.5


@builder("moments")
def moments(x, axes, shift=None, name: str | None = None, keep_dims: bool | None = None,
            keepdims: bool | None = None) -> tuple[Tensor, Tensor]:
    """(mean, variance) of x over `axes` (biased variance, as TF1). `shift` is ignored,
    as in TF1; `keep_dims` is TF1's older spelling of `keepdims`."""
    x = as_tensor(x)
    keep = bool(keepdims if keepdims is not None else keep_dims)
    axes = normalize_axes(axes, len(x.shape))
    with x.graph.as_default(), x.graph.name_scope(name or "moments"):
        mean = reduce_mean(x, axes, keepdims=True)
        # d variance / d mean is 0, so the mean needs no gradient here (TF1 does the same)
        variance = reduce_mean(square(x - stop_gradient(mean)), axes, keepdims=True)
        if keep:
            return mean, variance
        return squeeze(mean, axes), squeeze(variance, axes)


@builder("batch_normalization")
def batch_normalization(x, mean, variance, offset, scale, variance_epsilon: float,
                        name: str | None = None) -> Tensor:
    """(x - mean) * scale / sqrt(variance + epsilon) + offset, all broadcasting against x;
    offset and scale may be None. TF1's formula: x * inv + (offset - mean * inv)."""
    x = as_tensor(x)
    with x.graph.as_default(), x.graph.name_scope(name or "batchnorm"):
        mean, variance = as_tensor(mean, x.dtype), as_tensor(variance, x.dtype)
        inv = rsqrt(variance + float(variance_epsilon))
        if scale is not None:
            inv = inv * as_tensor(scale, x.dtype)
        shift = -mean * inv if offset is None else as_tensor(offset, x.dtype) - mean * inv
        return x * inv + shift
