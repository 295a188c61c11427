"""Random ops from the counter-based Philox generator: the same numbers on every device.

Element i of a random tensor is drawn from Philox4x64-10 with
    key     = (seed, 0)
    counter = (i, draw, stream, 0)
where `draw` counts rejections (truncated normal) and `stream` is how many
times a stateful op (dropout) has run in this Session (0 for initializers).
numpy's `numpy.random.Philox` is the same generator (Philox4x64-10), so it is
the oracle the tests compare against. A uniform uses word 0; a normal uses
words 0 and 1 (Box-Muller, cosine branch).
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from ..dtypes import as_dtype, float32
from ..errors import DTypeError
from ..graph import Tensor
from ..registry import NO_GRADIENT, Spec, register
from .core import builder, make, normalize_shape

PHILOX_M = (0xD2E7470EE14C6C93, 0xCA5A826395121157)
PHILOX_W = (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)
_MASK32 = np.uint64(0xFFFFFFFF)


def _mulhilo(a: int, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """128-bit product of the constant a and the uint64 array b, as (hi, lo)."""
    a_lo, a_hi = np.uint64(a & 0xFFFFFFFF), np.uint64(a >> 32)
    b_lo, b_hi = b & _MASK32, b >> np.uint64(32)
    lo_lo, hi_lo = a_lo * b_lo, a_hi * b_lo
    lo_hi, hi_hi = a_lo * b_hi, a_hi * b_hi
    cross = (lo_lo >> np.uint64(32)) + (hi_lo & _MASK32) + (lo_hi & _MASK32)
    hi = hi_hi + (hi_lo >> np.uint64(32)) + (lo_hi >> np.uint64(32)) + (cross >> np.uint64(32))
    return hi, np.uint64(a) * b  # the low word wraps modulo 2**64


def philox4x64(counter: list[np.ndarray], key: tuple[int, int], rounds: int = 10) -> list:
    """Philox4x64 block function on arrays of counters (numpy uint64)."""
    c0, c1, c2, c3 = (np.asarray(c, np.uint64) for c in counter)
    k0, k1 = key
    with np.errstate(over="ignore"):
        for r in range(rounds):
            hi0, lo0 = _mulhilo(PHILOX_M[0], c0)
            hi1, lo1 = _mulhilo(PHILOX_M[1], c2)
            c0, c1, c2, c3 = (hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0)
            if r < rounds - 1:
                k0 = (k0 + PHILOX_W[0]) & 0xFFFFFFFFFFFFFFFF
                k1 = (k1 + PHILOX_W[1]) & 0xFFFFFFFFFFFFFFFF
    return [c0, c1, c2, c3]


def _words(n: int, seed: int, draw: np.ndarray | int, stream: int) -> list[np.ndarray]:
    i = np.arange(n, dtype=np.uint64)
    return philox4x64([i, np.broadcast_to(np.uint64(draw), i.shape), np.full(n, stream, np.uint64),
                       np.zeros(n, np.uint64)], (seed & 0xFFFFFFFFFFFFFFFF, 0))


def uniform_from_bits(bits: np.ndarray, dtype) -> np.ndarray:
    """[0, 1) with the dtype's mantissa width, exactly representable (no rounding up to 1)."""
    if np.dtype(dtype) == np.float64:
        return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return ((bits >> np.uint64(40)).astype(np.float64) * 2.0**-24).astype(dtype)


def normal_from_bits(w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """Box-Muller in float64: u1 in (0, 1], u2 in [0, 1)."""
    u1 = ((w0 >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53
    u2 = (w1 >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


def random_uniform_array(shape, dtype, seed: int, stream: int = 0) -> np.ndarray:
    n = int(np.prod(shape))
    return uniform_from_bits(_words(n, seed, 0, stream)[0], dtype).reshape(shape)


def random_normal_array(shape, dtype, seed: int, truncated: bool = False,
                        stream: int = 0) -> np.ndarray:
    """Standard normal; truncated redraws (draw = 1, 2, ...) any value with |z| > 2."""
    n = int(np.prod(shape))
    w = _words(n, seed, 0, stream)
    z = normal_from_bits(w[0], w[1])
    draw = 0
    while truncated and np.any(bad := np.abs(z) > 2.0):
        draw += 1
        w = _words(n, seed, draw, stream)
        z = np.where(bad, normal_from_bits(w[0], w[1]), z)
    return z.astype(dtype).reshape(shape)


def _random_infer(specs, shape, dtype, seed, **_):
    if not dtype.is_floating:
        raise DTypeError(f"random values must be floating, got {dtype.name}")
    return Spec(shape, dtype)


register("RandomUniform", infer=_random_infer, grad=NO_GRADIENT, stateful=True,
         compute=lambda shape, dtype, seed: random_uniform_array(shape, dtype.np, seed))
register("RandomNormal", infer=_random_infer, grad=NO_GRADIENT, stateful=True,
         compute=lambda shape, dtype, seed, truncated: random_normal_array(
             shape, dtype.np, seed, truncated))


def _uniform_like_compute(ref, seed, ctx):
    return random_uniform_array(ref.shape, ref.dtype, seed, ctx.next_stream())


register("RandomUniformLike", infer=lambda specs, seed: specs[0], grad=NO_GRADIENT,
         stateful=True, needs_context=True, compute=_uniform_like_compute)


def op_seed(seed: int | None, graph) -> int:
    """The op's seed: the given one, else a deterministic one from the op's future name."""
    if seed is not None:
        return int(seed) & 0xFFFFFFFFFFFFFFFF
    base = graph.seed if graph.seed is not None else 87654321
    return (base * 1000003 + zlib.crc32(str(graph.version).encode())) & 0xFFFFFFFFFFFFFFFF


@builder("random_uniform")
def random_uniform(shape, minval=0.0, maxval=1.0, dtype=float32, seed=None,
                   name: str | None = None) -> Tensor:
    """Uniform in [minval, maxval)."""
    from ..graph import get_default_graph
    dtype, shape = as_dtype(dtype), normalize_shape(shape)
    u = make("RandomUniform", [], {"shape": shape, "dtype": dtype,
                                   "seed": op_seed(seed, get_default_graph())}, name)
    if (minval, maxval) == (0.0, 1.0):
        return u
    return u * (maxval - minval) + minval


@builder("random_normal")
def random_normal(shape, mean=0.0, stddev=1.0, dtype=float32, seed=None, truncated: bool = False,
                  name: str | None = None) -> Tensor:
    """Normal(mean, stddev); truncated=True redraws values beyond two stddevs."""
    from ..graph import get_default_graph
    dtype, shape = as_dtype(dtype), normalize_shape(shape)
    z = make("RandomNormal", [], {"shape": shape, "dtype": dtype, "truncated": bool(truncated),
                                  "seed": op_seed(seed, get_default_graph())}, name)
    if (mean, stddev) == (0.0, 1.0):
        return z
    return z * stddev + mean


@builder("truncated_normal")
def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=float32, seed=None,
                     name: str | None = None) -> Tensor:
    """Normal(mean, stddev) with values beyond two stddevs redrawn."""
    return random_normal(shape, mean, stddev, dtype, seed, truncated=True, name=name)


def random_uniform_like(x: Tensor, seed=None) -> Tensor:
    """Fresh uniforms shaped like x (at run time), new ones at every run."""
    return make("RandomUniformLike", [x], {"seed": op_seed(seed, x.graph)})
