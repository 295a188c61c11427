"""Random ops: Philox4x64-10 in CUDA C, the same stream as graphflow/ops/random.py.

Element i draws from counter (i, draw, stream, 0) and key (seed, 0); the
reference and every device produce identical bits.
"""

from __future__ import annotations

from graphflow.graph import Operation

from ..kernel import EmitContext
from . import emitter
from .elementwise import emit_map

PHILOX = r"""
struct gf_philox4 { unsigned long long v[4]; };
__device__ __forceinline__ gf_philox4 gf_philox4x64(unsigned long long c0, unsigned long long c1,
                                                      unsigned long long c2, unsigned long long c3,
                                                      unsigned long long k0, unsigned long long k1) {
  for (int r = 0; r < 10; ++r) {
    const unsigned long long hi0 = __umul64hi(0xD2E7470EE14C6C93ULL, c0);
    const unsigned long long lo0 = 0xD2E7470EE14C6C93ULL * c0;
    const unsigned long long hi1 = __umul64hi(0xCA5A826395121157ULL, c2);
    const unsigned long long lo1 = 0xCA5A826395121157ULL * c2;
    c0 = hi1 ^ c1 ^ k0; c1 = lo1; c2 = hi0 ^ c3 ^ k1; c3 = lo0;
    k0 += 0x9E3779B97F4A7C15ULL; k1 += 0xBB67AE8584CAA73BULL;
  }
  gf_philox4 out = {{c0, c1, c2, c3}};
  return out;
}
// [0, 1) with 24 (float) or 53 (double) random bits: exact, never rounds up to 1
__device__ __forceinline__ float gf_uniform_f(unsigned long long w) {
  return (float)((double)(w >> 40) * 5.9604644775390625e-08);
}
__device__ __forceinline__ double gf_uniform_d(unsigned long long w) {
  return (double)(w >> 11) * 1.1102230246251565e-16;
}
// Box-Muller in double, cosine branch: u1 in (0, 1], u2 in [0, 1)
__device__ __forceinline__ double gf_normal(unsigned long long i, unsigned long long draw,
                                            unsigned long long stream, unsigned long long seed) {
  const gf_philox4 w = gf_philox4x64(i, draw, stream, 0ULL, seed, 0ULL);
  const double u1 = ((double)(w.v[0] >> 11) + 1.0) * 1.1102230246251565e-16;
  const double u2 = (double)(w.v[1] >> 11) * 1.1102230246251565e-16;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
__device__ __forceinline__ double gf_truncated_normal(unsigned long long i, unsigned long long stream,
                                                      unsigned long long seed) {
  double z = gf_normal(i, 0ULL, stream, seed);
  for (unsigned long long draw = 1; fabs(z) > 2.0; ++draw) z = gf_normal(i, draw, stream, seed);
  return z;
}
"""


def _seed(op: Operation) -> str:
    return f"{op.attrs['seed'] & 0xFFFFFFFFFFFFFFFF}ULL"


def _uniform(op: Operation, stream: str) -> str:
    fn = "gf_uniform_f" if op.outputs[0].dtype.name == "float32" else "gf_uniform_d"
    return f"{fn}(gf_philox4x64((unsigned long long)i, 0ULL, {stream}, 0ULL, {_seed(op)}, 0ULL).v[0])"


@emitter("RandomUniform")
def emit_uniform(ctx: EmitContext, op: Operation) -> None:
    emit_map(ctx, op, lambda a: _uniform(op, "0ULL"), [], "random_uniform", PHILOX)


@emitter("RandomNormal")
def emit_normal(ctx: EmitContext, op: Operation) -> None:
    fn = (
        "gf_truncated_normal((unsigned long long)i, 0ULL, "
        if op.attrs["truncated"]
        else "gf_normal((unsigned long long)i, 0ULL, 0ULL, "
    )
    emit_map(ctx, op, lambda a: f"{fn}{_seed(op)})", [], "random_normal", PHILOX)


@emitter("RandomUniformLike")
def emit_uniform_like(ctx: EmitContext, op: Operation) -> None:
    """Fresh numbers each run: the stream is how often this op ran in the Session."""

    def setup_stream(kb):
        return kb.stream("stream", op)

    emit_map(
        ctx, op, lambda a: _uniform(op, "stream"), [], "random_uniform_like", PHILOX, scalars=setup_stream
    )
