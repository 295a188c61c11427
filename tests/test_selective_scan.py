"""gf.nn.selective_scan (Mamba's selective scan) against mamba-minimal's equations.

The reference device's numpy (a sequential loop) is checked against an independent
transcription of mamba-minimal's `selective_scan`; the compiled kernel (a block-wide
parallel scan over the sequence) against the reference, forward and gradients, on
the emulator's launch shapes and on the GPU's (the `cuda` launch policy run by the
emulator, with threads shuffled between barriers); gradients against float64 central
differences on both devices. Odd sizes, several tiles of the sequence, None batch
and length dims, float32 and float64.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from gradcheck import check_gradients
from graphflow.codegen.emit import reduce as red
from graphflow.codegen.emit import scan as scan_emit

import graphflow as gf
from graphflow.errors import DTypeError, GraphflowError, ShapeError

RNG = np.random.default_rng(11)


def mamba_minimal(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):  # noqa: N803
    """mamba-minimal's selective_scan (einsums and a loop over the sequence), in numpy."""
    if delta_bias is not None:
        delta = delta + delta_bias
    if delta_softplus:
        delta = np.log1p(np.exp(delta))
    b, length, d_in = u.shape
    n = A.shape[1]
    delta_a = np.exp(np.einsum("bld,dn->bldn", delta, A))
    delta_b_u = np.einsum("bld,bln,bld->bldn", delta, B, u)
    x = np.zeros((b, d_in, n))
    ys = []
    for i in range(length):
        x = delta_a[:, i] * x + delta_b_u[:, i]
        ys.append(np.einsum("bdn,bn->bd", x, C[:, i, :]))
    y = np.stack(ys, axis=1)
    return y if D is None else y + u * D


def inputs(b, length, d_in, n, extras=True):
    """u, delta, A (negative, as Mamba's -exp(A_log)), B, C, then D and delta_bias."""
    values = [RNG.standard_normal((b, length, d_in)),
              RNG.standard_normal((b, length, d_in)) * 0.7,
              -np.exp(RNG.standard_normal((d_in, n)) * 0.5), RNG.standard_normal((b, length, n)),
              RNG.standard_normal((b, length, n))]
    if extras:
        values += [RNG.standard_normal(d_in), RNG.standard_normal(d_in) * 0.3]
    return values


def placeholders(values, dtype=gf.float64, none_batch=False, none_length=False):
    out = []
    for i, v in enumerate(values):
        shape = list(v.shape)
        if len(shape) == 3:
            shape[0] = None if none_batch else shape[0]
            shape[1] = None if none_length else shape[1]
        out.append(gf.placeholder(dtype, shape, name=f"x{i}"))
    return out


def scan(xs, delta_softplus=True):
    extra = dict(zip(("D", "delta_bias"), xs[5:]))
    return gf.nn.selective_scan(*xs[:5], delta_softplus=delta_softplus, **extra)


@pytest.mark.parametrize("softplus", [True, False])
def test_reference_matches_mamba_minimal(softplus):
    values = inputs(3, 7, 5, 3)
    if not softplus:
        values[1] = np.abs(values[1])  # a discretization step is positive
    xs = placeholders(values)
    with gf.Session(device="reference") as s:
        y = s.run(scan(xs, softplus), dict(zip(xs, values)))
    np.testing.assert_allclose(y, mamba_minimal(*values, delta_softplus=softplus), rtol=1e-12,
                               atol=1e-12)
    with gf.Session(device="reference") as s:
        y = s.run(gf.nn.selective_scan(*xs[:5]), dict(zip(xs, values)))
    np.testing.assert_allclose(y, mamba_minimal(*values[:5]), rtol=1e-12, atol=1e-12)


# name -> (b, l, d_in, n, dtype, None batch, None length): the emulator's launch runs a
# parallel scan (blocks of 1 x 32) for few rows and one thread per row for many
CONFIGS = {
    "parallel_three_tiles": (1, 300, 3, 2, gf.float64, True, False),
    "parallel_odd": (2, 37, 3, 5, gf.float64, True, True),
    "serial_many_rows": (5, 19, 17, 4, gf.float64, False, False),
    "length_one": (3, 1, 4, 3, gf.float64, True, False),
    "float32_mamba_sizes": (2, 65, 24, 16, gf.float32, True, False),
}


def build_configs():
    """One graph with every config: [(name, placeholders, values, [y] + gradients)]."""
    graph, built = gf.Graph(), []
    with graph.as_default():
        for name, (b, length, d_in, n, dtype, none_b, none_l) in CONFIGS.items():
            with gf.name_scope(name):
                values = [v.astype(dtype.np) for v in inputs(b, length, d_in, n)]
                xs = placeholders(values, dtype, none_b, none_l)
                y = scan(xs)
                w = gf.constant(RNG.standard_normal((b, length, d_in)).astype(dtype.np))
                grads = gf.gradients(gf.reduce_sum(y * w), xs)
                built.append((name, xs, values, [y] + grads))
    return graph, built


@pytest.fixture(scope="module")
def configs():
    graph, built = build_configs()
    xs = [x for _, b_xs, _, _ in built for x in b_xs]
    values = [v for _, _, b_values, _ in built for v in b_values]
    fetches = [t for *_, ts in built for t in ts]
    with gf.Session(graph, device="reference") as s:
        ref = s.run(fetches, dict(zip(xs, values)))
    return graph, built, xs, values, fetches, ref


def _compare(built, fetches, ref, got):
    names = ["y", "du", "ddelta", "dA", "dB", "dC", "dD", "ddelta_bias"]
    for name, _, values, ts in built:
        tol = dict(rtol=2e-4, atol=2e-4) if values[0].dtype == np.float32 else \
            dict(rtol=1e-9, atol=1e-11)
        for what, t in zip(names, ts):
            k = fetches.index(t)
            assert got[k].shape == ref[k].shape, (name, what)
            np.testing.assert_allclose(got[k], ref[k], err_msg=f"{name}: {what}", **tol)


def test_cpu_matches_reference_forward_and_gradients(configs):
    graph, built, xs, values, fetches, ref = configs
    with gf.Session(graph, device="cpu") as s:
        got = s.make_callable(fetches, xs)(*values)
    _compare(built, fetches, ref, got)


def test_gpu_launch_shapes_on_the_emulator(configs, monkeypatch):
    """The GPU's block shapes (rows across threadIdx.x, the sequence across threadIdx.y:
    4 x 64, 32 x 8, 256 x 1 here), run by the emulator with threads shuffled between
    barriers (a missing __syncthreads would show)."""
    graph, built, xs, values, fetches, ref = configs
    shapes = set()
    policy = scan_emit._scan_block

    def gpu(rows, length, inner, device):
        shapes.add(policy(rows, length, inner, "cuda"))
        return policy(rows, length, inner, "cuda")

    monkeypatch.setenv("GRAPHFLOW_PLAN_CACHE", "0")  # the patched compiler runs: no kept plan
    monkeypatch.setattr(scan_emit, "_scan_block", gpu)
    monkeypatch.setattr(red, "CPU_HELPERS", red.HELPERS)  # the GPU's block-wide combine too
    monkeypatch.setenv("GRAPHFLOW_EMU_SHUFFLE", "5")
    with gf.Session(graph, device="cpu") as s:
        got = s.make_callable(fetches, xs)(*values)
    _compare(built, fetches, ref, got)
    assert any(bx > 1 and by > 1 for bx, by in shapes), shapes  # rows and sequence both split
    assert (1, 32) not in shapes


def test_emulator_walks_each_row_without_fibers():
    """The cpu device gives each row one thread (the serial walk): no barrier, no fiber."""
    assert scan_emit._scan_block(6, 300, 3, "cpu") == (32, 1)
    values = inputs(2, 40, 3, 2)
    xs = placeholders(values, none_batch=True)
    y = scan(xs)
    grads = gf.gradients(gf.reduce_sum(y), xs)
    with gf.Session(device="cpu") as s:
        f = s.make_callable([y, grads], xs)
        f(*values)
        assert f._plan.program.fiber_kernels == []
        # dB and dC (sums over channels) come from a finish kernel, not a float atomicAdd per
        # state and position (the emulator's is a compare-and-swap loop); only dA's remain
        names = [k.name for k in f.kernels]
        assert "selective_scan_grad_finish_0" in names, names
        grad = f.source.split("selective_scan_grad_0(")[1].split("\n}\n")[0]
        assert grad.count("atomicAdd(") == 1, grad


def test_cpu_gradients_match_finite_differences():
    """Every input, a None batch dim, differenced through the compiled forward."""
    values = inputs(2, 33, 3, 2)
    xs = placeholders(values, none_batch=True)
    y = scan(xs)
    w = RNG.standard_normal(values[0].shape)
    grads = gf.gradients(gf.reduce_sum(y * gf.constant(w)), xs)
    sess = gf.Session(device="cpu")
    forward = sess.make_callable(y, xs)
    analytic = sess.make_callable(grads, xs)(*values)
    eps = 1e-6
    for k, value in enumerate(values):
        for c in RNG.choice(value.size, min(value.size, 6), replace=False):
            f = []
            for sign in (1, -1):
                feed = [v.copy() for v in values]
                feed[k].flat[c] += sign * eps
                f.append(np.sum(forward(*feed) * w))
            numeric = (f[0] - f[1]) / (2 * eps)
            assert abs(analytic[k].flat[c] - numeric) <= 1e-7 + 1e-5 * abs(numeric), (k, c)
    sess.close()


@pytest.mark.parametrize("b,length,d_in,n,dynamic", [(2, 5, 3, 2, (0, 1, 3, 4)), (1, 9, 1, 4, ()),
                                                (3, 4, 2, 1, (0, 1, 3, 4))])
def test_reference_gradients_match_finite_differences(b, length, d_in, n, dynamic):
    check_gradients(lambda *xs: scan(xs), *inputs(b, length, d_in, n), dynamic=dynamic)
    check_gradients(lambda *xs: gf.nn.selective_scan(*xs, delta_softplus=False),
                    *[np.abs(v) if i == 1 else v
                      for i, v in enumerate(inputs(b, length, d_in, n, False))])


# ---- errors ---------------------------------------------------------------------------------------
HERE = re.escape("test_selective_scan.py") + r":\d+"


@pytest.mark.parametrize("shapes,dtype,what", [
    ([(2, 5, 3), (2, 5, 3), (3,), (2, 5, 4), (2, 5, 4)], gf.float32, "A must be"),
    ([(2, 5, 3), (2, 5, 3), (3, 4), (2, 5, 2), (2, 5, 4)], gf.float32, "B has shape"),
    ([(2, 5, 3), (2, 4, 3), (3, 4), (2, 5, 4), (2, 5, 4)], gf.float32, "delta has shape"),
    ([(2, 5, 3), (2, 5, 3), (5, 4), (2, 5, 4), (2, 5, 4)], gf.float32, "u has shape"),
    ([(5, 3), (5, 3), (3, 4), (5, 4), (5, 4)], gf.float32, "u must be"),
    ([(2, 5, 3), (2, 5, 3), (3, 4), (2, 5, 4), (2, 5, 4)], gf.int32, "floating"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_shapes_and_dtypes_name_the_op_and_site(shapes, dtype, what):
    xs = [gf.placeholder(dtype, s) for s in shapes]
    error = DTypeError if dtype is gf.int32 else ShapeError
    with pytest.raises(error, match=r"SelectiveScan[\s\S]*" + HERE + r"[\s\S]*" + re.escape(what)):
        gf.nn.selective_scan(*xs, delta_softplus=False)


def test_bad_d_and_delta_bias_shapes():
    xs = placeholders(inputs(2, 5, 3, 4, extras=False))
    with pytest.raises(ShapeError, match=r"D must have shape \[3\][\s\S]*" + HERE):
        gf.nn.selective_scan(*xs, D=gf.constant(np.ones(4)))
    with pytest.raises(ShapeError, match=r"delta_bias must have shape \[3\][\s\S]*" + HERE):
        gf.nn.selective_scan(*xs, delta_bias=gf.constant(np.ones((1, 3))))


def test_run_time_batch_mismatch_is_a_shape_error():
    values = inputs(2, 5, 3, 4, extras=False)
    xs = placeholders(values, none_batch=True)
    y = scan(xs)
    values[3] = values[3][:1]  # B with batch 1, u with batch 2
    for device in ("reference", "cpu"):
        with gf.Session(device=device) as s, pytest.raises(ShapeError, match="SelectiveScan"):
            s.run(y, dict(zip(xs, values)))


def test_second_derivative_is_refused_clearly():
    xs = placeholders(inputs(1, 3, 2, 2, extras=False))
    (gu,) = gf.gradients(gf.reduce_sum(scan(xs) ** 2), xs[:1])
    with pytest.raises(GraphflowError, match="no gradient is defined for .*SelectiveScanGrad"):
        gf.gradients(gf.reduce_sum(gu), xs[:1])
