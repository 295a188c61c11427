"""GEMM, convolution and pooling kernels on the cpu device, checked against the numpy reference.

Sizes are chosen to be 1, odd, and non-multiples of the 64x64x16 (float32) / 64x64x8 (float64)
GEMM tiles; batch dims are None so one compiled module serves two batch sizes.
"""
import json
import shutil

import numpy as np
import pytest
from graphflow.codegen.compile import assemble, emit_kernels
from graphflow.codegen.dump import ptxas_usage

import graphflow as gf
from graphflow.passes import PIPELINE, lower, run_passes

rng = np.random.default_rng(7)
TOL = {gf.float32: dict(rtol=2e-5, atol=2e-5), gf.float64: dict(rtol=1e-12, atol=1e-12)}


def _feed(shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype.np)


def run_both(fetches, feed_list, feed_sets):
    """Run every feed set through ONE cpu make_callable and through the reference."""
    with gf.Session(device="cpu") as s:
        f = s.make_callable(fetches, feed_list)
        cpu = [f(*feeds) for feeds in feed_sets]
        assert s.compile_count == 1
    with gf.Session(device="reference") as s:
        ref = [s.run(fetches, dict(zip(feed_list, feeds))) for feeds in feed_sets]
    return cpu, ref


def assert_all_close(cpu, ref, dtype, scale=1.0):
    tol = TOL[dtype]
    for cs, rs in zip(cpu, ref):
        for c, r in zip(cs, rs):
            assert c.dtype == r.dtype and c.shape == r.shape
            np.testing.assert_allclose(c, r, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale)


@pytest.mark.parametrize("dtype", [gf.float32, gf.float64])
def test_matmul_shapes_transposes_and_batches(dtype):
    x = gf.placeholder(dtype, [None, 65], name="x")  # None rows: the batch
    w = gf.placeholder(dtype, [65, 17], name="w")
    wt = gf.placeholder(dtype, [17, 65], name="wt")
    big_a = gf.placeholder(dtype, [130, 300], name="big_a")  # 3 row tiles, 19 K steps (f32)
    big_b = gf.placeholder(dtype, [70, 300], name="big_b")
    ba = gf.placeholder(dtype, [2, 1, 3, 4], name="ba")
    bb = gf.placeholder(dtype, [5, 4, 7], name="bb")
    seq = gf.placeholder(dtype, [None, 3, 5], name="seq")  # None batch dim
    fetches = [
        gf.matmul(x, w),  # [None, 65] @ [65, 17]
        gf.matmul(x, wt, transpose_b=True),
        gf.matmul(w, x, transpose_a=True, transpose_b=True),  # [17, None]
        gf.matmul(x, x, transpose_a=True),  # K is the run-time batch
        gf.matmul(big_a, big_b, transpose_b=True),  # [130, 70]
        gf.matmul(big_b, big_a, transpose_a=False, transpose_b=True),
        gf.matmul(ba, bb),  # [2, 1, 3, 4] @ [5, 4, 7] -> [2, 5, 3, 7]
        gf.matmul(bb, ba, transpose_a=True, transpose_b=True),  # [5,7,4]@[2,1,4,3] -> [2,5,7,3]
        gf.matmul(seq, w[:5]),  # [None, 3, 5] @ [5, 17]
        gf.matmul(seq, seq, transpose_b=True),  # [None, 3, 3], batch on both sides
        gf.matmul(x[:, :1], w[:1]),  # K = 1
    ]
    feed_list = [x, w, wt, big_a, big_b, ba, bb, seq]
    shapes = [(65, 17), (17, 65), (130, 300), (70, 300), (2, 1, 3, 4), (5, 4, 7)]
    fixed = [_feed(s, dtype) for s in shapes]
    feed_sets = [[_feed((n, 65), dtype)] + fixed + [_feed((b, 3, 5), dtype)] for n, b in ((3, 2), (67, 1))]
    cpu, ref = run_both(fetches, feed_list, feed_sets)
    assert_all_close(cpu, ref, dtype, scale=4)


def test_matmul_int32_is_exact():
    a = gf.placeholder(gf.int32, [None, 33])
    b = gf.placeholder(gf.int32, [33, 70])
    c = gf.placeholder(gf.int64, [2, 17, 9])
    fetches = [gf.matmul(a, b), gf.matmul(b, a, transpose_a=True, transpose_b=True), gf.matmul(c, c, True)]
    feeds = [[rng.integers(-50, 50, (n, 33)), rng.integers(-50, 50, (33, 70)),
              rng.integers(-9, 9, (2, 17, 9))] for n in (1, 66)]
    cpu, ref = run_both(fetches, [a, b, c], feeds)
    for cs, rs in zip(cpu, ref):
        for x, y in zip(cs, rs):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", [gf.float32, gf.float64])
def test_matmul_gradients(dtype):
    x = gf.placeholder(dtype, [None, 19], name="x")
    w = gf.Variable(_feed((19, 67), dtype), name="w")
    v = gf.Variable(_feed((67, 19), dtype), name="v")
    ba = gf.Variable(_feed((2, 1, 3, 4), dtype), name="ba")
    bb = gf.Variable(_feed((5, 4, 7), dtype), name="bb")
    outs = [gf.matmul(x, w), gf.matmul(x, v, transpose_b=True), gf.matmul(w, x, True, True),
            gf.matmul(ba, bb)]
    loss = gf.add_n([gf.reduce_sum(o * gf.constant(_feed([d or 1 for d in o.shape[1:]], dtype)))
                     for o in outs])
    grads = gf.gradients(loss, [x, w, v, ba, bb])
    init = gf.global_variables_initializer()
    feeds = [_feed((n, 19), dtype) for n in (1, 18)]
    with gf.Session(device="cpu") as s:
        s.run(init)
        f = s.make_callable(grads, [x])
        cpu = [f(xs) for xs in feeds]
        assert s.compile_count == 2  # the initializer and the gradients
    with gf.Session(device="reference") as s:
        s.run(init)
        ref = [s.run(grads, {x: xs}) for xs in feeds]
    assert_all_close(cpu, ref, dtype, scale=8)


CONV_CASES = [  # (H, W, C, O, ksize, strides, padding)
    (9, 7, 3, 5, (3, 3), (1, 1), "SAME"),
    (10, 11, 2, 4, (3, 2), (2, 3), "SAME"),
    (8, 9, 3, 65, (2, 3), (2, 2), "VALID"),
    (5, 5, 17, 3, (5, 4), (3, 2), "SAME"),
    (6, 6, 1, 1, (1, 1), (1, 1), "VALID"),
    (24, 24, 2, 4, (3, 3), (1, 1), "SAME"),  # K = N*24*24 is long: the filter gradient splits K
]


@pytest.mark.parametrize("dtype", [gf.float32, gf.float64])
def test_conv_and_pool_forward_and_gradients(dtype):
    """Conv2D, MaxPool, AvgPool and their gradient ops (both conv backprops, MaxPoolGrad,
    AvgPoolGrad) for several geometries, in one graph, at two batch sizes."""
    xs, fetches, feed_shapes = [], [], []
    for i, (h, w, c, o, k, s, pad) in enumerate(CONV_CASES):
        x = gf.placeholder(dtype, [None, h, w, c], name=f"x{i}")
        f = gf.Variable(_feed((*k, c, o), dtype, 0.5), name=f"f{i}")
        y = gf.nn.conv2d(x, f, s, pad)
        mp = gf.nn.max_pool2d(x, k, s, pad)
        ap = gf.nn.avg_pool2d(x, k, s, pad)
        loss = gf.reduce_sum(y * gf.constant(_feed(y.shape[1:], dtype)))
        loss += gf.reduce_sum(mp * gf.constant(_feed(mp.shape[1:], dtype)))
        loss += gf.reduce_sum(ap * gf.constant(_feed(ap.shape[1:], dtype)))
        fetches += [y, mp, ap] + gf.gradients(loss, [x, f])
        xs.append(x)
        feed_shapes.append((h, w, c))
    init = gf.global_variables_initializer()
    feed_sets = []
    for n in (1, 2):
        feeds = [_feed((n, *shape), dtype) for shape in feed_shapes]
        feeds[0][0, 1, 1, 0] = feeds[0][0, 1, 2, 0]  # a tie inside a max-pool window: first wins
        feeds[1][:, :3, :3, :] = 0.0  # many ties
        feed_sets.append(feeds)
    with gf.Session(device="cpu") as s:
        s.run(init)
        f = s.make_callable(fetches, xs)
        cpu = [f(*feeds) for feeds in feed_sets]
    with gf.Session(device="reference") as s:
        s.run(init)
        ref = [s.run(fetches, dict(zip(xs, feeds))) for feeds in feed_sets]
    assert_all_close(cpu, ref, dtype, scale=8)
    splits = [k.grid[2] for k in f.kernels if k.name.startswith("conv2d_backprop_filter_gemm")]
    assert max(splits) > 1  # (the last run's launch shapes)
    names = {part.rsplit("_", 1)[0] for k in f.kernels  # combined launches list their parts
             for part in k.name.removeprefix("combo_").split("__")}
    assert {"conv2d_gemm_64x64", "conv2d_backprop_input_gemm_64x64", "conv2d_backprop_filter_gemm_64x64",
            "max_pool", "avg_pool", "max_pool_grad", "avg_pool_grad"} <= names


def test_conv_and_pool_with_run_time_spatial_dims():
    """H and W given as None: padding and output sizes are computed in the kernels."""
    x = gf.placeholder(gf.float32, [None, None, None, 3], name="x")
    f = gf.constant(_feed((3, 2, 3, 4), gf.float32))
    y = gf.nn.conv2d(x, f, (2, 1), "SAME")
    mp = gf.nn.max_pool2d(x, 3, 2, "SAME")
    ap = gf.nn.avg_pool2d(x, (2, 3), (1, 2), "SAME")
    loss = gf.reduce_sum(y * y) + gf.reduce_sum(mp * mp) + gf.reduce_sum(ap * ap)
    fetches = [y, mp, ap] + gf.gradients(loss, [x, f])
    feed_sets = [[_feed((2, 9, 7, 3), gf.float32)], [_feed((1, 4, 12, 3), gf.float32)]]
    cpu, ref = run_both(fetches, [x], feed_sets)
    assert_all_close(cpu, ref, gf.float32, scale=8)


def test_max_pool_nan_and_inf_follow_the_reference():
    """np.max propagates NaN; the gradient goes to the first NaN (argmax), padding is -inf."""
    x = gf.placeholder(gf.float64, [None, 5, 6, 2])
    mp = gf.nn.max_pool2d(x, 3, 2, "SAME")
    grad = gf.gradients(gf.reduce_sum(mp * gf.constant(_feed((3, 3, 2), gf.float64))), x)[0]
    xs = _feed((2, 5, 6, 2), gf.float64)
    xs[0, 0, :, 0] = -np.inf
    xs[0, 1, :3, 0] = -np.inf  # a window whose real cells are all -inf
    xs[1, 2, 3, 1] = xs[1, 3, 2, 1] = np.nan
    xs[1, 0, 0, 0] = np.inf
    cpu, ref = run_both([mp, grad], [x], [[xs]])
    assert_all_close(cpu, ref, gf.float64)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc for ptxas resource usage")
def test_kernels_compile_for_sm80_without_spills(tmp_path):
    x = gf.placeholder(gf.float32, [None, 8, 8, 3])
    f = gf.constant(_feed((3, 3, 3, 8), gf.float32))
    y = gf.nn.conv2d(x, f, 1, "SAME")
    z = gf.matmul(gf.reshape(y, [-1, 512]), gf.constant(_feed((512, 10), gf.float32)))
    d = gf.placeholder(gf.float64, [None, 4, 5])
    zz = gf.matmul(d, gf.constant(_feed((5, 6), gf.float64)), transpose_a=False)
    fetches = [z, zz] + gf.gradients(gf.reduce_sum(z * z), [x, f])
    with gf.Session(device="cpu") as s:
        c = s.make_callable(fetches, [x, d])
        c(_feed((2, 8, 8, 3), gf.float32), _feed((3, 4, 5), gf.float64))
        c.dump(str(tmp_path))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    # every kernel the cpu device runs, its own GEMM schedule included, is valid CUDA
    assert all("ptxas" in k for k in manifest["kernels"]), manifest["kernels"]
    assert sum("gemm_cpu" in k["name"] for k in manifest["kernels"]) == 3
    # the GPU's schedule of the same graph: the tiled GEMMs never spill
    order = gf.get_default_graph().subgraph_order([t.op for t in fetches], {x, d})
    lowered = run_passes(lower(order, fetches, (x, d)), PIPELINE)
    _, _, kernels = emit_kernels(lowered, "cuda")
    (tmp_path / "gpu.cu").write_text(assemble(kernels))
    usage = ptxas_usage(str(tmp_path / "gpu.cu"))
    gemms = {name: u for name, u in usage.items() if "gemm_64x64" in name}
    names = sorted(name.split("_64x64")[0] for name in gemms)  # fused epilogues name themselves after
    assert names == ["conv2d_backprop_filter_gemm", "conv2d_backprop_input_gemm",
                     "conv2d_gemm"] + ["gemm"] * 3, names
    for name, u in gemms.items():
        assert u["spill_stores"] == 0 and u["spill_loads"] == 0, (name, u)


def test_empty_k_and_several_k_slices():
    """K = 0 gives the epilogue of zeros (the cpu schedule's tile is cleared, never loaded from
    a slice), and K over several slices (700 = 256 + 256 + 188) adds every slice."""
    a = gf.placeholder(gf.float32, [None, None])
    b = gf.placeholder(gf.float32, [None, 5])
    c = gf.matmul(a, b) + 1.0
    cpu, ref = run_both([c], [a, b], [[np.zeros((3, 0), np.float32), np.zeros((0, 5), np.float32)],
                                      [_feed((33, 700), gf.float32), _feed((700, 5), gf.float32)]])
    np.testing.assert_array_equal(cpu[0][0], np.ones((3, 5), np.float32))
    assert_all_close(cpu, ref, gf.float32)


def test_a_gemm_of_few_tiles_is_cut_for_many_threads(monkeypatch):
    """With more OS threads than tiles, a GEMM with enough work is cut into smaller tiles (one
    per thread or so), whose edges and fused epilogue stay right; a small one keeps its single
    tile."""
    monkeypatch.setenv("GRAPHFLOW_EMU_THREADS", "16")
    monkeypatch.setenv("GRAPHFLOW_PLAN_CACHE", "0")  # the thread count is part of the plan
    x = gf.placeholder(gf.float32, [None, 1500], name="x")
    w = gf.placeholder(gf.float32, [1500, 150], name="w")
    b = gf.placeholder(gf.float32, [150], name="b")
    small = gf.placeholder(gf.float32, [None, 40], name="small")
    h = gf.nn.relu(gf.matmul(x, w) + b)
    dw, db = gf.gradients(gf.reduce_sum(h * h), [w, b])
    fetches = [h, dw, db, gf.matmul(small, small, transpose_a=True)]
    feed_sets = [[_feed((n, 1500), gf.float32), _feed((1500, 150), gf.float32, 0.05),
                  _feed(150, gf.float32), _feed((n, 40), gf.float32)] for n in (100, 7)]
    cpu, ref = run_both(fetches, [x, w, b, small], feed_sets)
    for cs, rs in zip(cpu, ref):
        for c, r in zip(cs, rs):
            np.testing.assert_allclose(c, r, rtol=2e-4, atol=2e-3)
    with gf.Session(device="cpu") as s:
        grids = {}
        for fetch, feeds, values in [(h, [x, w, b], feed_sets[0][:3]),
                                     (fetches[3], [small], feed_sets[0][3:])]:
            f = s.make_callable(fetch, feeds)
            f(*values)
            grids.update({info.name: info.grid[0] for info in f.kernels})
    # 100x150 is one 132x192 tile of 45 MFLOP: cut for 16 threads; 40x40x100 is not worth it
    assert grids == {"gemm_cpu6x16_add_relu_0": 10, "gemm_cpu6x16_0": 1}, grids


def test_a_cut_gemm_still_sums_the_bias_gradient(monkeypatch):
    """dW = x^T dY over a batch of 3000 is two 132x192 tiles of 135 MFLOP: cut for 16 threads,
    while the tiles of its first row block still add up db (dY's column sums)."""
    monkeypatch.setenv("GRAPHFLOW_EMU_THREADS", "16")
    monkeypatch.setenv("GRAPHFLOW_PLAN_CACHE", "0")
    x = gf.placeholder(gf.float32, [None, 150], name="x")
    y = gf.placeholder(gf.int32, [None], name="y")
    w = gf.constant(_feed((150, 150), gf.float32, 0.1))
    b = gf.constant(_feed(150, gf.float32, 0.1))
    w2 = gf.constant(_feed((150, 10), gf.float32, 0.1))
    h = gf.nn.relu(gf.matmul(x, w) + b)
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=gf.matmul(h, w2)))
    grads = gf.gradients(loss, [w, b])
    feeds = [_feed((3000, 150), gf.float32), rng.integers(0, 10, 3000).astype(np.int32)]
    cpu, ref = run_both(grads, [x, y], [feeds])
    for c, r in zip(cpu[0], ref[0]):
        np.testing.assert_allclose(c, r, rtol=2e-4, atol=1e-6)
    with gf.Session(device="cpu") as s:
        f = s.make_callable(grads, [x, y])
        f(*feeds)
        grids = {info.name: info.grid[0] for info in f.kernels}
    assert grids["gemm_cpu6x16_sum_to_like_0"] > 2, grids
