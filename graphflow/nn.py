"""gf.nn: activations, softmax family, losses, normalization, convolution, pooling, dropout."""
from __future__ import annotations

from .graph import Tensor
from .ops.array import gather
from .ops.composite import (
    batch_normalization,
    elu,
    l2_loss,
    leaky_relu,
    moments,
    sigmoid_cross_entropy_with_logits,
)
from .ops.core import as_tensor, builder, zeros_like
from .ops.elementwise import gelu, relu, sigmoid, silu, softplus, tanh, where
from .ops.nn import (
    avg_pool2d,
    conv2d,
    layer_norm,
    log_softmax,
    max_pool2d,
    softmax,
    softmax_cross_entropy_with_logits,
    sparse_softmax_cross_entropy_with_logits,
)
from .ops.random import random_uniform_like
from .ops.scan import selective_scan

__all__ = ["relu", "gelu", "silu", "softplus", "sigmoid", "tanh", "softmax", "log_softmax",
           "layer_norm", "sparse_softmax_cross_entropy_with_logits",
           "softmax_cross_entropy_with_logits", "conv2d", "max_pool2d", "avg_pool2d",
           "embedding_lookup", "dropout", "bias_add", "elu", "leaky_relu",
           "sigmoid_cross_entropy_with_logits", "l2_loss", "moments", "batch_normalization",
           "selective_scan"]


@builder("embedding_lookup")
def embedding_lookup(params, ids, name: str | None = None) -> Tensor:
    """Rows of params picked by ids (a gather on axis 0; its gradient is dense)."""
    return gather(params, ids, axis=0, name=name or "embedding_lookup")


@builder("dropout")
def dropout(x, rate: float, seed: int | None = None, name: str | None = None) -> Tensor:
    """Zero each element with probability `rate`; scale kept ones by 1/(1-rate).

    The mask is a fresh Philox draw at every run (the same on every device).
    """
    x = as_tensor(x)
    if not 0.0 <= float(rate) < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate!r}")
    if rate == 0:
        return x
    with x.graph.as_default():
        keep = random_uniform_like(x, seed) >= float(rate)
        return where(keep, x * (1.0 / (1.0 - float(rate))), zeros_like(x), name=name or "dropout")


@builder("bias_add")
def bias_add(value, bias, name: str | None = None) -> Tensor:
    """value + bias along the last axis."""
    return as_tensor(value) + bias
