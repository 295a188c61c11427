"""Initializers: each returns `init(shape, dtype=gf.float32) -> Tensor`, seeded Philox draws."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .dtypes import as_dtype, float32
from .graph import Tensor
from .ops import core, random
from .ops.core import normalize_shape

Initializer = Callable[..., Tensor]


def _fans(shape: tuple) -> tuple[int, int]:
    """TF's fan-in/fan-out: conv kernels multiply by the receptive field."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def zeros() -> Initializer:
    """init(shape, dtype) -> zeros."""
    return lambda shape, dtype=float32: core.zeros(normalize_shape(shape), as_dtype(dtype))


def ones() -> Initializer:
    """init(shape, dtype) -> ones."""
    return lambda shape, dtype=float32: core.ones(normalize_shape(shape), as_dtype(dtype))


def constant(value=0.0) -> Initializer:
    """init(shape, dtype) -> `value` broadcast to shape."""
    return lambda shape, dtype=float32: core.constant(value, as_dtype(dtype),
                                                      shape=normalize_shape(shape))


def random_normal(mean: float = 0.0, stddev: float = 1.0, seed: int | None = None) -> Initializer:
    """init(shape, dtype) -> Normal(mean, stddev) draws (Philox, the same on every device)."""
    return lambda shape, dtype=float32: random.random_normal(shape, mean, stddev, dtype, seed)


def truncated_normal(mean: float = 0.0, stddev: float = 1.0,
                     seed: int | None = None) -> Initializer:
    """init(shape, dtype) -> Normal(mean, stddev) draws, redrawn beyond two stddevs."""
    return lambda shape, dtype=float32: random.truncated_normal(shape, mean, stddev, dtype, seed)


def random_uniform(minval: float = 0.0, maxval: float = 1.0,
                   seed: int | None = None) -> Initializer:
    """init(shape, dtype) -> uniform draws in [minval, maxval)."""
    return lambda shape, dtype=float32: random.random_uniform(shape, minval, maxval, dtype, seed)


def variance_scaling(scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal",
                     seed: int | None = None) -> Initializer:
    """TF's VarianceScaling: stddev sqrt(scale / n), n the fan in, out, or their average."""
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"mode must be fan_in, fan_out or fan_avg, got {mode!r}")
    if distribution not in ("truncated_normal", "normal", "uniform"):
        raise ValueError(f"distribution must be truncated_normal, normal or uniform, "
                         f"got {distribution!r}")

    def init(shape, dtype=float32) -> Tensor:
        shape = normalize_shape(shape)
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        var = scale / max(1.0, n)
        if distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return random.random_uniform(shape, -limit, limit, dtype, seed)
        if distribution == "normal":
            return random.random_normal(shape, 0.0, math.sqrt(var), dtype, seed)
        # stddev of a standard normal truncated to [-2, 2]
        return random.truncated_normal(shape, 0.0, math.sqrt(var) / 0.87962566103423978, dtype,
                                       seed)
    return init


def glorot_uniform(seed: int | None = None) -> Initializer:
    """Uniform in +-sqrt(6 / (fan_in + fan_out))."""
    return variance_scaling(1.0, "fan_avg", "uniform", seed)


def glorot_normal(seed: int | None = None) -> Initializer:
    """Truncated normal with stddev sqrt(2 / (fan_in + fan_out)) (TF's glorot_normal)."""
    return variance_scaling(1.0, "fan_avg", "truncated_normal", seed)


def he_normal(seed: int | None = None) -> Initializer:
    """Truncated normal with stddev sqrt(2 / fan_in) (TF's he_normal)."""
    return variance_scaling(2.0, "fan_in", "truncated_normal", seed)


def he_uniform(seed: int | None = None) -> Initializer:
    """Uniform in +-sqrt(6 / fan_in) (TF's he_uniform)."""
    return variance_scaling(2.0, "fan_in", "uniform", seed)
