"""Reductions, row kernels and scans on the cpu device against the numpy reference.

Every test builds many ops into one graph (one g++ compile) and runs it at two batch sizes
through one compiled callable. `gpu_launch_shapes` reruns graphs with the launch shapes the
GPU would use (blocks of up to 256 threads split as (4, 64), (8, 32), (1, 256), ...), so the
shuffle / shared-memory paths the CPU policy rarely takes are checked on the emulator too.
"""

import itertools

import numpy as np
import pytest
from graphflow.codegen.emit import load_all, rows
from graphflow.codegen.emit import reduce as red

import graphflow as gf
from graphflow.ops.array import sum_to_like

rng = np.random.default_rng(7)


def run_both(fetches, feed_list, batches, rtol, atol):
    """One compiled callable per device; every feed set through it; compare with the reference."""
    with gf.Session(device="cpu") as cpu, gf.Session(device="reference") as ref:
        f_cpu = cpu.make_callable(fetches, feed_list)
        f_ref = ref.make_callable(fetches, feed_list)
        for feeds in batches:
            got, want = f_cpu(*feeds), f_ref(*feeds)
            for i, (g, w) in enumerate(zip(got, want)):
                assert g.dtype == w.dtype and g.shape == w.shape, (i, g.dtype, w.dtype, g.shape, w.shape)
                np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"fetch {i}: {fetches[i]}")
        assert cpu.compile_count == 1


def tol(dtype, n=1):
    """(rtol, atol) for sums of about n terms in dtype (summation order differs)."""
    if dtype is gf.float64:
        return 1e-12, 1e-12
    return 2e-6 * max(1.0, np.sqrt(n)), 2e-6 * max(1.0, np.sqrt(n))


@pytest.fixture(params=["cpu_policy", "gpu_policy"])
def launch_policy(request, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_PLAN_CACHE", "0")  # each policy compiles: no kept plan
    if request.param == "gpu_policy":
        gpu = red.block_shape

        def as_on_gpu(n_out, length, inner, device):
            return gpu(n_out, length, inner, "cuda")

        monkeypatch.setattr(red, "block_shape", as_on_gpu)
        monkeypatch.setattr(rows, "block_shape", as_on_gpu)
        monkeypatch.setattr(red, "CPU_HELPERS", red.HELPERS)  # the GPU's block-wide combine too
    return request.param


def all_reductions(x, int_only=False):
    out = []
    rank = len(x.shape)
    for k in range(1, rank + 1):
        for axes in itertools.combinations(range(rank), k):
            out += [gf.reduce_sum(x, list(axes)), gf.reduce_max(x, list(axes), keepdims=True)]
            out += [gf.reduce_mean(x, list(axes)), gf.reduce_min(x, list(axes))]
    for a in range(rank):
        out += [gf.argmax(x, a), gf.argmin(x, a, output_type=gf.int32)]
    return out


@pytest.mark.parametrize("dtype", [gf.float32, gf.float64])
def test_reductions_over_every_axis_set(dtype, launch_policy):
    x = gf.placeholder(dtype, [None, 5, 7], name="x")
    wide = gf.placeholder(dtype, [3, None], name="wide")  # rows longer than a block
    fetches = all_reductions(x) + all_reductions(wide) + [gf.reduce_sum(x), gf.reduce_mean(wide)]
    batches = [
        [rng.standard_normal((b, 5, 7)).astype(dtype.np), rng.standard_normal((3, w)).astype(dtype.np)]
        for b, w in ((1, 1), (17, 65), (3, 300))
    ]
    run_both(fetches, [x, wide], batches, *tol(dtype, 300))


def test_integer_reductions_and_ties(launch_policy):
    a = gf.placeholder(gf.int32, [None, 6], name="a")
    b = gf.placeholder(gf.int64, [4, None, 3], name="b")
    fetches = all_reductions(a) + all_reductions(b)
    batches = [[rng.integers(-5, 5, (n, 6)).astype(np.int32),  # many ties: first index wins
                rng.integers(-(10**12), 10**12, (4, m, 3))] for n, m in ((1, 1), (9, 40))]
    # negative means truncate toward zero
    batches.append([np.array([[-7, 0, 0, 0, 0, 0], [7, 1, 1, 1, 1, 1]], np.int32),
                    rng.integers(-3, 3, (4, 2, 3))])
    run_both(fetches, [a, b], batches, 0, 0)


def test_nan_and_inf_in_max_min_argmax():
    x = gf.placeholder(gf.float32, [3, 5], name="x")
    fetches = [gf.reduce_max(x, 1), gf.reduce_min(x, 1), gf.argmax(x, 1), gf.argmin(x, 1),
               gf.reduce_max(x, 0), gf.argmax(x, 0)]
    v = np.array([[1, np.nan, 3, np.nan, 0], [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
                  [2, 5, 5, -1, np.inf]], np.float32)
    run_both(fetches, [x], [[v]], 0, 0)


def test_two_pass_long_rows(launch_policy):
    """Reductions long enough (>= 64k) and few enough to split over blocks, then combine."""
    v = gf.placeholder(gf.float64, [None], name="v")
    m = gf.placeholder(gf.float64, [2, None], name="m")
    c = gf.placeholder(gf.float32, [None, 3], name="c")  # column reduction, two passes
    fetches = [gf.reduce_sum(v), gf.reduce_mean(v), gf.reduce_max(v), gf.reduce_min(v), gf.argmax(v, 0),
               gf.argmin(v, 0), gf.reduce_sum(m, 1), gf.reduce_max(m, 1, keepdims=True), gf.argmax(m, 1),
               gf.reduce_sum(c, 0), gf.argmin(c, 0)]
    n = 300_001
    big = rng.standard_normal(n)
    big[123_457] = 9.0  # a unique max far from the start
    assert red.chunks_for(1, n) > 1 and red.chunks_for(3, 70_000) > 1
    batches = [[big, rng.standard_normal((2, 70_000)), rng.standard_normal((70_000, 3)).astype(np.float32)],
               [big[:5], rng.standard_normal((2, 3)), rng.standard_normal((1, 3)).astype(np.float32)]]
    with gf.Session(device="cpu") as cpu, gf.Session(device="reference") as ref:
        f_cpu, f_ref = cpu.make_callable(fetches, [v, m, c]), ref.make_callable(fetches, [v, m, c])
        for feeds in batches:
            for i, (g, w) in enumerate(zip(f_cpu(*feeds), f_ref(*feeds))):
                assert g.dtype == w.dtype and g.shape == w.shape
                # float32 sums of 70k terms: the error scales with sum |x| (~56k), not the result
                rtol, atol = (1e-4, 1e-7 * 70_000) if g.dtype == np.float32 else (1e-11, 1e-11)
                np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=str(i))
        names = [k.name for k in f_cpu.kernels]
        assert any(name.endswith("_finish_0") for name in names)


def test_sum_to_like_static_and_run_time_dims():
    x = gf.placeholder(gf.float32, [None, 4, 6], name="x")
    same = gf.placeholder(gf.float32, [None, 4, 6], name="same")  # None: decided at run time
    bias = gf.placeholder(gf.float32, [6], name="bias")
    col = gf.placeholder(gf.float32, [4, 1], name="col")
    mid = gf.placeholder(gf.float32, [None, 1, None], name="mid")
    fetches = [sum_to_like(x, same), sum_to_like(x, bias), sum_to_like(x, col), sum_to_like(x, mid)]
    feed_list = [x, same, bias, col, mid]

    def feeds(n, same_n, mid_n, mid_w):
        zeros = lambda *shape: np.zeros(shape, np.float32)  # only their shapes matter
        return [rng.standard_normal((n, 4, 6)).astype(np.float32), zeros(same_n, 4, 6), zeros(6),
                zeros(4, 1), zeros(mid_n, 1, mid_w)]

    batches = [feeds(3, 3, 3, 6), feeds(5, 1, 1, 1), feeds(1, 1, 1, 6), feeds(33, 33, 1, 6)]
    run_both(fetches, feed_list, batches, 1e-5, 1e-5)


@pytest.mark.parametrize("dtype", [gf.float32, gf.float64])
def test_row_ops(dtype, launch_policy):
    x = gf.placeholder(dtype, [None, 5, 17], name="x")
    g5 = gf.placeholder(dtype, [5], name="g5")
    g17 = gf.placeholder(dtype, [17], name="g17")
    labels = gf.placeholder(gf.int64, [None, 5], name="labels")
    soft = gf.placeholder(dtype, [None, 5, 17], name="soft")
    long = gf.placeholder(dtype, [3, None], name="long")
    fetches = []
    for t in (x, long):
        for a in range(len(t.shape)):
            fetches += [gf.nn.softmax(t, a), gf.nn.log_softmax(t, a), gf.cumsum(t, a),
                        gf.cumsum(t, a, exclusive=True), gf.cumsum(t, a, reverse=True),
                        gf.cumsum(t, a, exclusive=True, reverse=True)]
    fetches += [gf.nn.layer_norm(x, g5, g5 * 0.5, axis=1), gf.nn.layer_norm(x, g17, g17 + 1.0),
                gf.nn.layer_norm(x * 100.0 + 1000.0, g17, g17, epsilon=1e-3),
                gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x),
                gf.nn.softmax_cross_entropy_with_logits(labels=soft, logits=x),
                gf.nn.softmax(x * 300.0), gf.nn.log_softmax(long * 300.0)]
    feed_list = [x, g5, g17, labels, soft, long]

    def feeds(n, w):
        return [rng.standard_normal((n, 5, 17)).astype(dtype.np), rng.standard_normal(5).astype(dtype.np),
                rng.standard_normal(17).astype(dtype.np), rng.integers(0, 17, (n, 5)),
                rng.random((n, 5, 17)).astype(dtype.np), rng.standard_normal((3, w)).astype(dtype.np)]

    rtol, atol = tol(dtype, 1000)
    run_both(fetches, feed_list, [feeds(1, 1), feeds(4, 1000), feeds(70, 33)], rtol, atol * 10)


def test_integer_cumsum_and_argmax_launch():
    x = gf.placeholder(gf.int32, [None, 300], name="x")
    y = gf.placeholder(gf.int64, [None, 2], name="y")
    fetches = [gf.cumsum(x, 1), gf.cumsum(x, 0, reverse=True), gf.cumsum(y, 0, exclusive=True),
               gf.cumsum(y, 1, exclusive=True, reverse=True)]
    batches = [[rng.integers(-100, 100, (n, 300)).astype(np.int32), rng.integers(-9, 9, (m, 2))]
               for n, m in ((1, 1), (7, 1000))]
    run_both(fetches, [x, y], batches, 0, 0)


def test_size_one_and_empty_axes():
    x = gf.placeholder(gf.float32, [None, 1, 3], name="x")
    fetches = [gf.reduce_sum(x, 1), gf.reduce_max(x, [1]), gf.argmax(x, 1), gf.nn.softmax(x, 1),
               gf.nn.log_softmax(x, 1), gf.cumsum(x, 1), gf.reduce_sum(x, 0), gf.reduce_mean(x, [0, 1]),
               gf.cumsum(x, 0, exclusive=True), gf.nn.softmax(x), gf.reduce_sum(x, 2)]
    batches = [[rng.standard_normal((n, 1, 3)).astype(np.float32)] for n in (1, 4)]
    run_both(fetches, [x], batches, 1e-6, 1e-6)
    # a zero-size reduced axis: sum 0, mean NaN (numpy's); zero-size outputs are skipped
    gf.reset_default_graph()
    e = gf.placeholder(gf.float32, [None, 3], name="e")
    i = gf.placeholder(gf.int32, [None, 3], name="i")
    fetches = [gf.reduce_sum(e, 0), gf.reduce_mean(e, 0), gf.reduce_sum(e, 1), gf.cumsum(e, 0),
               gf.nn.softmax(e), gf.reduce_mean(i, 0), gf.reduce_sum(i, 0)]
    with gf.Session(device="cpu") as cpu, np.errstate(invalid="ignore"):
        got = cpu.run(fetches, {e: np.zeros((0, 3), np.float32), i: np.zeros((0, 3), np.int32)})
    np.testing.assert_array_equal(got[0], np.zeros(3, np.float32))
    assert np.isnan(got[1]).all() and got[2].shape == (0,) and got[3].shape == (0, 3)
    np.testing.assert_array_equal(got[5], np.zeros(3, np.int32))


def test_softmax_rows_with_nan_and_infinities_match_reference():
    """A NaN or +inf anywhere in a row (first, middle, last lane of the cpu's eight) makes the
    row's softmax, log-softmax and cross-entropy NaN, as the reference's x - max does; -inf
    elements get probability 0, and an all -inf row is NaN."""
    x = gf.placeholder(gf.float32, [None, 19], name="x")
    labels = gf.placeholder(gf.int32, [None], name="labels")
    loss = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x)
    fetches = [gf.nn.softmax(x), gf.nn.log_softmax(x), loss, gf.reduce_mean(loss)]
    v = rng.standard_normal((9, 19)).astype(np.float32)
    v[0, 0] = v[1, 7] = v[2, 18] = np.nan
    v[3, 0] = v[4, 11] = np.inf
    v[5, 3] = v[5, 16] = -np.inf
    v[6] = -np.inf
    v[7, 5], v[7, 6] = np.nan, np.inf
    ids = np.arange(9, dtype=np.int32) % 19
    with np.errstate(invalid="ignore"):
        run_both(fetches, [x, labels], [[v, ids], [v[5:6], ids[:1]]], 1e-6, 1e-6)


def test_loss_total_of_an_empty_batch_is_numpys():
    """The mean of no losses is NaN and their sum 0, as numpy (the kernel that takes the total
    has no row to finish last)."""
    x = gf.placeholder(gf.float32, [None, 4], name="x")
    labels = gf.placeholder(gf.int32, [None], name="labels")
    loss = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x)
    fetches = [gf.reduce_mean(loss), gf.reduce_sum(loss), *gf.gradients(gf.reduce_mean(loss), [x])]
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning, match="Mean of empty slice"):
        run_both(fetches, [x, labels], [[np.zeros((0, 4), np.float32), np.zeros(0, np.int32)],
                                        [rng.standard_normal((3, 4)).astype(np.float32),
                                         np.array([0, 3, 1], np.int32)]], 1e-6, 1e-6)


def test_sparse_xent_out_of_range_label_is_nan_on_device():
    logits = gf.placeholder(gf.float32, [None, 4], name="logits")
    labels = gf.placeholder(gf.int32, [None], name="labels")
    loss = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    v = rng.standard_normal((3, 4)).astype(np.float32)
    with gf.Session(device="cpu") as cpu:
        got = cpu.run(loss, {logits: v, labels: np.array([1, 4, -1], np.int32)})
    shifted = v[0] - v[0].max()
    assert np.isclose(got[0], np.log(np.exp(shifted).sum()) - shifted[1], rtol=1e-6)
    assert np.isnan(got[1]) and np.isnan(got[2])


def test_gradients_of_the_family(launch_policy):
    x = gf.placeholder(gf.float64, [None, 5, 6], name="x")
    w = gf.placeholder(gf.float64, [None, 5, 6], name="w")
    gamma = gf.Variable(rng.standard_normal(5), name="gamma", dtype=gf.float64)
    beta = gf.Variable(rng.standard_normal(6), name="beta", dtype=gf.float64)
    soft = gf.placeholder(gf.float64, [None, 5, 6], name="soft")
    outs = [gf.reduce_sum(x, [0, 2], keepdims=True), gf.reduce_mean(x, 1, keepdims=True),
            gf.reduce_max(x, 2, keepdims=True), gf.reduce_min(x, [1, 2], keepdims=True),
            gf.nn.softmax(x, 1), gf.nn.log_softmax(x), gf.nn.layer_norm(x, gamma, gamma * 0.5, axis=1),
            gf.nn.layer_norm(x, beta, beta * 2.0, axis=2), gf.cumsum(x, 1, exclusive=True),
            gf.cumsum(x, 2, reverse=True), x + beta, gf.expand_dims(
                gf.nn.softmax_cross_entropy_with_logits(labels=soft, logits=x), -1)]
    if "OneHot" in load_all():
        labels = gf.placeholder(gf.int32, [None, 5], name="labels")
        sparse = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x)
        outs.append(gf.expand_dims(sparse, -1))
    loss = gf.add_n([gf.reduce_sum(o * w) for o in outs])
    grads = gf.gradients(loss, [x, gamma, beta])
    feed_list = [x, w, soft] + ([labels] if len(outs) == 13 else [])

    def feeds(n):
        f = [rng.standard_normal((n, 5, 6)), rng.standard_normal((n, 5, 6)), rng.random((n, 5, 6))]
        return f + ([rng.integers(0, 6, (n, 5)).astype(np.int32)] if len(outs) == 13 else [])

    with gf.Session(device="cpu") as cpu, gf.Session(device="reference") as ref:
        for s in (cpu, ref):
            s.run(gf.global_variables_initializer())
        f_cpu = cpu.make_callable(grads + [loss], feed_list)
        f_ref = ref.make_callable(grads + [loss], feed_list)
        for n in (1, 3):
            fd = feeds(n)
            for g, r in zip(f_cpu(*fd), f_ref(*fd)):
                np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)
        assert cpu.compile_count == 2  # the initializer and the gradients
