"""Mamba's selective state-space scan (gf.nn.selective_scan), as in mamba-minimal.

For batch b, position t, channel d and state n:

    deltaA[t]   = exp(delta[t, d] * A[d, n])
    deltaB_u[t] = delta[t, d] * B[t, n] * u[t, d]
    x[t]        = deltaA[t] * x[t-1] + deltaB_u[t]          (x[-1] = 0)
    y[t, d]     = sum_n x[t, d, n] * C[t, n]  (+ D[d] * u[t, d])

SelectiveScan(u, delta, A, B, C) is the op (delta already discretized; D, the delta
bias and the softplus are ordinary ops around it). Its gradient is SelectiveScanGrad,
a reverse scan for the adjoint lam[t] = deltaA[t+1] * lam[t+1] + dy[t] * C[t]. Ops
have one output, so SelectiveScanGrad returns every input gradient packed in one
flat tensor: dA (d_in * n values), then one row of [du | ddelta | dB | dC]
(2 * d_in + 2 * n values) per (batch, position); the gradient rule slices it apart.
"""
from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..graph import Tensor
from ..registry import Spec, register
from ..shapes import merge_dim, same_dim
from .array import reshape, reshape_like, strided_slice
from .core import as_tensor, builder, make, match_dtypes
from .elementwise import softplus

# ---- shape rule ---------------------------------------------------------------------------------


def _scan_infer(specs):
    u, delta, a, b, c = specs[:5]
    names = ("u", "delta", "A", "B", "C", "grad")
    for name, s in zip(names, specs):
        if s.dtype is not u.dtype or not u.dtype.is_floating:
            raise DTypeError(f"selective_scan: {name} is {s.dtype.name}; u, delta, A, B, C must "
                             f"share one floating dtype (u is {u.dtype.name})")
    if len(u.shape) != 3:
        raise ShapeError(f"selective_scan: u must be (batch, length, d_in), got {list(u.shape)}")
    if len(a.shape) != 2 or None in a.shape:
        raise ShapeError(f"selective_scan: A must be (d_in, n) with both sizes known, got "
                         f"{list(a.shape)}")
    d_in, n = a.shape
    want = {"delta": (u.shape, delta.shape), "u": ((None, None, d_in), u.shape),
            "B": ((u.shape[0], u.shape[1], n), b.shape), "C": ((u.shape[0], u.shape[1], n),
                                                               c.shape)}
    if len(specs) > 5:
        want["grad"] = ((u.shape[0], u.shape[1], d_in), specs[5].shape)
    for name, (expected, got) in want.items():
        if len(got) != 3 or not all(same_dim(x, y) for x, y in zip(expected, got)):
            raise ShapeError(f"selective_scan: {name} has shape {list(got)}, expected "
                             f"{list(expected)} (u: (batch, length, d_in) = {list(u.shape)}, "
                             f"A: (d_in, n) = {list(a.shape)}, B and C: (batch, length, n))")
    batch, length = u.shape[0], u.shape[1]
    for s in specs[1:]:
        if len(s.shape) == 3:
            batch, length = merge_dim(batch, s.shape[0]), merge_dim(length, s.shape[1])
    return batch, length, d_in, n


def _forward_infer(specs):
    batch, length, d_in, _ = _scan_infer(specs)
    return Spec((batch, length, d_in), specs[0].dtype)


def _grad_infer(specs):
    batch, length, d_in, n = _scan_infer(specs)
    rows = None if batch is None or length is None else batch * length
    return Spec((None if rows is None else d_in * n + rows * (2 * d_in + 2 * n),), specs[0].dtype)


# ---- numpy reference (sequential, as mamba-minimal) ---------------------------------------------


def _states(u, delta, a, b):
    """deltaA, deltaB_u (batch, length, d_in, n) and every state x[t], in order."""
    delta_a = np.exp(delta[..., None] * a)
    delta_b_u = delta[..., None] * b[:, :, None, :] * u[..., None]
    states = np.empty_like(delta_a)
    x = np.zeros(delta_a[:, 0].shape, u.dtype)
    for t in range(u.shape[1]):
        x = delta_a[:, t] * x + delta_b_u[:, t]
        states[:, t] = x
    return delta_a, states


def _scan_compute(u, delta, a, b, c):
    _, states = _states(u, delta, a, b)
    return np.einsum("bldn,bln->bld", states, c).astype(u.dtype)


def _scan_grad_compute(u, delta, a, b, c, dy):
    delta_a, states = _states(u, delta, a, b)
    lam = np.zeros_like(states)  # adjoint of each state, from the last position back
    after = np.zeros(states[:, 0].shape, u.dtype)
    for t in reversed(range(u.shape[1])):
        after = dy[:, t, :, None] * c[:, t, None, :] + (
            delta_a[:, t + 1] * after if t + 1 < u.shape[1] else 0)
        lam[:, t] = after
    prev = np.concatenate([np.zeros_like(states[:, :1]), states[:, :-1]], axis=1)
    q = lam * prev * delta_a  # adjoint of deltaA times deltaA
    lam_b = np.einsum("bldn,bln->bld", lam, b)
    d_a = np.einsum("bldn,bld->dn", q, delta)
    rows = np.concatenate([delta * lam_b,                                     # du
                           u * lam_b + np.einsum("bldn,dn->bld", q, a),       # ddelta
                           np.einsum("bldn,bld->bln", lam, delta * u),        # dB
                           np.einsum("bldn,bld->bln", states, dy)], axis=-1)  # dC
    return np.concatenate([d_a.reshape(-1), rows.reshape(-1)]).astype(u.dtype)


def _scan_grad(op, g):
    u, delta, a, b, c = op.inputs
    d_in, n = a.shape
    packed = make("SelectiveScanGrad", [u, delta, a, b, c, g])
    d_a = reshape(strided_slice(packed, (slice(0, d_in * n),)), [d_in, n])
    rows = reshape(strided_slice(packed, (slice(d_in * n, None),)), [-1, 2 * d_in + 2 * n])
    cols = [(0, d_in, u), (d_in, 2 * d_in, delta), (2 * d_in, 2 * d_in + n, b),
            (2 * d_in + n, 2 * d_in + 2 * n, c)]
    du, d_delta, d_b, d_c = [reshape_like(strided_slice(rows, (slice(None), slice(lo, hi))), ref)
                             for lo, hi, ref in cols]
    return [du, d_delta, d_a, d_b, d_c]


register("SelectiveScan", infer=_forward_infer, compute=_scan_compute, grad=_scan_grad)
# no second derivatives: SelectiveScanGrad has no gradient rule (gf.gradients says so)
register("SelectiveScanGrad", infer=_grad_infer, compute=_scan_grad_compute, grad=None)


def _check_vector(t: Tensor, d_in, what: str) -> None:
    if len(t.shape) != 1 or not same_dim(t.shape[0], d_in):
        from ..graph import definition_site
        raise ShapeError(f"selective_scan: {what} must have shape [{d_in}] (d_in), got "
                         f"{list(t.shape)} (at {definition_site()})")


@builder("selective_scan")
def selective_scan(u, delta, A, B, C, D=None, delta_bias=None,  # noqa: N803 - Mamba's names
                   delta_softplus: bool = True, name: str | None = None) -> Tensor:
    """Mamba's selective scan (mamba-minimal's equations); returns y of shape (b, l, d_in).

    u, delta: (batch, length, d_in); A: (d_in, n); B, C: (batch, length, n); D and
    delta_bias: (d_in,) or None. delta becomes softplus(delta + delta_bias) when
    delta_softplus (else delta + delta_bias); y[t] = sum_n x[t] * C[t] + D * u, where
    x[t] = exp(delta[t] * A) * x[t-1] + delta[t] * B[t] * u[t]. The compiled kernel scans
    the sequence in parallel (a block-wide scan of the linear recurrence).
    """
    u, delta, A, B, C = match_dtypes("selective_scan", u, delta, A, B, C)
    with u.graph.as_default(), u.graph.name_scope(name or "selective_scan"):
        d_in = u.shape[-1] if u.shape else None
        if delta_bias is not None:
            delta_bias = as_tensor(delta_bias, u.dtype)
            _check_vector(delta_bias, d_in, "delta_bias")
            delta = delta + delta_bias
        if delta_softplus:
            delta = softplus(delta)
        y = make("SelectiveScan", [u, delta, A, B, C])
        if D is not None:
            D = as_tensor(D, u.dtype)  # noqa: N806
            _check_vector(D, d_in, "D")
            y = y + u * D
    return y
