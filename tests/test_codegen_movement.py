"""Data-movement kernels (codegen/emit/movement.py) on the CPU emulator against the numpy reference.

Each test builds many ops into one graph (one g++ compile), runs it for two batch sizes through
one make_callable (the same compiled module must serve both), and compares with device='reference'.
Gradients use grad_ys=w, which is d/dx reduce_sum(out * w) without needing a reduction kernel.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import ShapeError
from graphflow.ops.core import make

RNG = np.random.default_rng(1234)


def _value(t, batch: int) -> np.ndarray:
    shape = tuple(batch if d is None else d for d in t.shape)
    dt = t.dtype.np
    if t.dtype.is_bool:
        return RNG.random(shape) < 0.5
    if t.dtype.is_integer:
        return RNG.integers(-50, 50, shape).astype(dt)
    return RNG.standard_normal(shape).astype(dt)


def _check(fetches, feeds: list, batches=(3, 17), values=None, gpu_launch=False):
    """Run fetches on cpu and reference for each batch size; one compile for all of them.

    gpu_launch: launch every kernel with the grid/block it would get on a GPU (the emulator runs
    any launch shape), to check the kernels beyond the CPU-friendly one-thread blocks.
    """
    cpu = gf.Session(device="cpu")
    ref = gf.Session(device="reference")
    run_cpu = cpu.make_callable(fetches, feeds)
    if gpu_launch:
        for k in run_cpu._plan.program.kernels:
            k.launch = (lambda launch: lambda shapes, device: launch(shapes, "cuda"))(k.launch)
    run_ref = ref.make_callable(fetches, feeds)
    for b in batches:
        vals = values(b) if values else [_value(t, b) for t in feeds]
        got, want = run_cpu(*vals), run_ref(*vals)
        for t, g, w in zip(fetches, got, want):
            assert g.shape == w.shape and g.dtype == w.dtype, (t.name, g.shape, w.shape, g.dtype, w.dtype)
            if w.dtype == np.float32:
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=t.name)
            elif w.dtype == np.float64:
                np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12, err_msg=t.name)
            else:
                np.testing.assert_array_equal(g, w, err_msg=t.name)
    assert cpu.compile_count == 1
    if gpu_launch:
        assert any(info.block != (1, 1, 1) for info in run_cpu.kernels)


def test_strided_slice_forward():
    x = gf.placeholder(gf.float32, [None, 5], name="x")
    y = gf.placeholder(gf.float64, [None, 3, 17], name="y")
    z = gf.placeholder(gf.int32, [4, None, 65], name="z")
    s = gf.placeholder(gf.float32, [7, 33], name="s")
    b = gf.placeholder(gf.bool_, [None, 6], name="b")
    outs = [
        x[:, 1:], x[1:], x[::-1], x[::-2, ::-3], x[-1], x[-2:, 3], x[None, ..., 2], x[2:100, -100:4],
        x[5:1], x[:, None, 1:4:2],
        y[..., 1:-1:3], y[:, -1, ::-1], y[1::2, :, 16], y[:, 1:2], y[-3::-1, None],
        z[1:3, ::2, 60:], z[-1, -1], z[:, :, ::-64], z[..., 0],
        s[1:-1, 2:31], s[::-1, ::5], s[6, :], s[3],
        b[:, ::2], b[::-1],
    ]
    _check(outs, [x, y, z, s, b])


def test_strided_slice_runtime_index_out_of_bounds():
    x = gf.placeholder(gf.float32, [None, 5])
    out = x[-4]
    with gf.Session(device="cpu") as sess:
        np.testing.assert_array_equal(sess.run(out, {x: np.arange(20, dtype=np.float32).reshape(4, 5)}),
                                      np.arange(5, dtype=np.float32))
        with pytest.raises(ShapeError, match="out of bounds"):
            sess.run(out, {x: np.zeros((3, 5), np.float32)})


def test_transpose_forward():
    a = gf.placeholder(gf.float32, [None, 65], name="a")
    c = gf.placeholder(gf.float64, [None, 17, 33], name="c")
    d = gf.placeholder(gf.int64, [2, None, 3, 5], name="d")
    e = gf.placeholder(gf.float32, [5, 100, 70], name="e")  # 5 * 4 * 3 = 60 tiles, 2 tiles of TILE
    f = gf.placeholder(gf.bool_, [None, 1, 3], name="f")
    outs = [
        gf.transpose(a), gf.transpose(c, (0, 2, 1)), gf.transpose(c, (2, 0, 1)), gf.transpose(c, (1, 0, 2)),
        gf.transpose(c), gf.transpose(d, (0, 1, 3, 2)), gf.transpose(d, (3, 1, 0, 2)),
        gf.transpose(d, (2, 3, 0, 1)), gf.transpose(e, (0, 2, 1)), gf.transpose(e, (1, 2, 0)),
        gf.transpose(f, (1, 0, 2)), gf.transpose(f, (2, 1, 0)),
    ]
    _check(outs, [a, c, d, e, f], batches=(1, 65))


def test_transpose_many_tiles():
    # more tiles than the CPU grid (64 blocks): the grid-stride loop over tiles
    x = gf.placeholder(gf.float32, [None, 97, 130])
    _check([gf.transpose(x, (0, 2, 1)), gf.transpose(x, (2, 1, 0))], [x], batches=(3,))


def test_concat_forward():
    p = gf.placeholder(gf.float32, [None, 3], name="p")
    q = gf.placeholder(gf.float32, [None, 3], name="q")
    r = gf.placeholder(gf.float32, [None, 5], name="r")
    u = gf.placeholder(gf.int32, [2, None, 4], name="u")
    k = gf.constant(RNG.standard_normal((1, 3)).astype(np.float32))
    outs = [
        gf.concat([p, q], 0), gf.concat([p, q, r, p], 1), gf.concat([p, k, q], 0),
        gf.concat([u, u[:, :1], u], 1), gf.concat([u, u[:, :, ::-1]], 2), gf.concat([u, u], 0),
        gf.stack([p, q], 1), gf.stack([p, q, p], 0),
    ]
    _check(outs, [p, q, r, u])


def test_gather_and_one_hot_forward():
    params = gf.placeholder(gf.float32, [None, 17], name="params")
    table = gf.placeholder(gf.float64, [9, 3, 5], name="table")
    ids = gf.placeholder(gf.int32, [None], name="ids")
    ids64 = gf.placeholder(gf.int64, [None, 2], name="ids64")
    labels = gf.placeholder(gf.int64, [None, 3], name="labels")
    outs = [
        gf.gather(params, ids), gf.gather(params, ids64, axis=1), gf.gather(table, ids64),
        gf.gather(table, gf.gather(gf.constant([0, 2, 1, 0, 2, 1]), ids), axis=1),
        gf.gather(table, ids64[:, 0], axis=2), gf.gather(table, gf.constant(4)),
        gf.nn.embedding_lookup(table, ids),
        gf.one_hot(labels, 4), gf.one_hot(ids, 7, dtype=gf.float64), gf.one_hot(ids64, 1, dtype=gf.int32),
        gf.one_hot(labels, 3, dtype=gf.bool_),
    ]
    for dtype in (gf.int32, gf.int64):  # integer scatter-add (the int64 one goes through unsigned atomics)
        g = gf.cast(gf.gather(params, ids) * 10.0, dtype)
        outs.append(make("GatherGrad", [g, ids, gf.constant(np.zeros((6, 17), dtype.np))], {"axis": 0}))

    def values(b):
        return [
            RNG.standard_normal((b, 17)).astype(np.float32),
            RNG.standard_normal((9, 3, 5)),
            RNG.integers(0, min(b, 6), b).astype(np.int32),
            RNG.integers(0, min(b, 5), (b, 2)).astype(np.int64),
            RNG.integers(-2, 6, (b, 3)).astype(np.int64),  # out of range -> all-zero rows
        ]

    _check(outs, [params, table, ids, ids64, labels], values=values)


def test_gather_out_of_range_is_zero_on_device():
    params = gf.placeholder(gf.float32, [4, 3])
    ids = gf.placeholder(gf.int64, [5])
    out = gf.gather(params, ids)
    (grad,) = gf.gradients(out, [params], grad_ys=gf.ones_like(out))
    p = np.arange(12, dtype=np.float32).reshape(4, 3)
    i = np.array([1, -1, 4, 3, 1])
    with gf.Session(device="cpu") as sess:
        got, g = sess.run([out, grad], {params: p, ids: i})
    want = np.where(((i >= 0) & (i < 4))[:, None], p[np.clip(i, 0, 3)], 0)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(g, np.array([0, 2, 0, 1])[:, None] * np.ones((1, 3), np.float32))


def _grad_check(outs, x_feeds, other_feeds, xs, values, batches=(2, 17)):
    ws = [gf.placeholder(o.dtype, o.shape, name=f"w{i}") for i, o in enumerate(outs)]
    grads = gf.gradients(outs, xs, grad_ys=ws)

    def fixed(b):  # w's shapes depend on the outputs' run-time shapes: compute them on reference
        vals = values(b)
        with gf.Session(device="reference") as sess:
            shapes = [v.shape for v in sess.run(outs, dict(zip(x_feeds + other_feeds, vals)))]
        return vals + [RNG.standard_normal(s).astype(w.dtype.np) for s, w in zip(shapes, ws)]

    _check(grads, x_feeds + other_feeds + ws, batches=batches, values=fixed)


def test_slice_and_transpose_gradients():
    x = gf.placeholder(gf.float32, [None, 5], name="x")
    y = gf.placeholder(gf.float64, [3, None, 17], name="y")
    outs = [x[:, 1:], x[::-2, 4], x[-1, ::-3], x[None, 1:3], gf.transpose(x),
            y[1, ::-1, 3:65:4], y[..., -1:], y[::2, 1:, None], gf.transpose(y, (1, 2, 0)), gf.transpose(y)]

    def values(b):
        return [RNG.standard_normal((b, 5)).astype(np.float32), RNG.standard_normal((3, b, 17))]

    _grad_check(outs, [x, y], [], [x, y], values)


def test_concat_and_gather_gradients():
    p = gf.placeholder(gf.float32, [None, 3], name="p")
    q = gf.placeholder(gf.float32, [None, 3], name="q")
    table = gf.placeholder(gf.float64, [65, 3], name="table")
    ids = gf.placeholder(gf.int32, [None, 4], name="ids")
    outs = [gf.concat([p, q, p], 0), gf.concat([q, p], 1), gf.stack([p, q], 2),
            gf.gather(table, ids), gf.gather(table, ids[:, 0], axis=0), gf.gather(p, ids[0, :2], axis=1)]

    def values(b):
        pq = RNG.standard_normal((2, b, 3)).astype(np.float32)
        return [pq[0], pq[1], RNG.standard_normal((65, 3)),
                RNG.integers(0, 3, (b, 4)).astype(np.int32)]  # few distinct rows: atomics collide

    _grad_check(outs, [p, q, table], [ids], [p, q, table], values, batches=(1, 200))


def test_gpu_launch_shapes_on_emulator():
    """The GPU launch shapes (32x8 transpose blocks, 256-thread tile loops) give the same results."""
    x = gf.placeholder(gf.float32, [None, 70, 45], name="x")
    ids = gf.placeholder(gf.int32, [6], name="ids")
    w = gf.placeholder(gf.float32, [None, 6, 45], name="w")
    outs = [gf.transpose(x, (0, 2, 1)), gf.transpose(x, (1, 0, 2)), x[:, ::-3, 5:], gf.concat([x, x], 2),
            gf.one_hot(ids, 5)]
    outs += gf.gradients(gf.gather(x, ids, axis=1), [x], grad_ys=w)

    def values(b):
        return [RNG.standard_normal((b, 70, 45)).astype(np.float32), RNG.integers(0, 3, 6).astype(np.int32),
                RNG.standard_normal((b, 6, 45)).astype(np.float32)]

    _check(outs, [x, ids, w], batches=(2, 5), values=values, gpu_launch=True)


def test_gather_gradient_drops_out_of_range_indices_and_sums_the_same_every_run():
    """The dense gradient of a gather (the cpu's schedule: blocks own table rows, no atomics):
    indices outside the table add nothing, repeated ones add up in index order, so two runs
    give the same bits; tables of several rows per block, and an axis with rows outside it."""
    ids = gf.placeholder(gf.int32, [None, 5], name="ids")
    g32 = gf.placeholder(gf.float32, [None, 5, 7], name="g32")
    g64 = gf.placeholder(gf.float64, [3, None, 5], name="g64")
    t32 = gf.placeholder(gf.float32, [130, 7], name="t32")  # 130 rows: 3 per block
    t64 = gf.placeholder(gf.float64, [3, 130], name="t64")
    d32, = gf.gradients(gf.gather(t32, ids), [t32], grad_ys=g32)
    d64, = gf.gradients(gf.gather(t64, ids, axis=1), [t64], grad_ys=g64)
    with gf.Session(device="cpu") as sess:
        run = sess.make_callable([d32, d64], [ids, g32, g64, t32, t64])
        for batch in (1, 400):
            idv = RNG.integers(-3, 133, (batch, 5)).astype(np.int32)  # some out of range
            idv[0, :3] = 7  # repeats
            gv32 = RNG.standard_normal((batch, 5, 7)).astype(np.float32)
            gv64 = RNG.standard_normal((3, batch, 5))
            feeds = [idv, gv32, gv64, np.zeros((130, 7), np.float32), np.zeros((3, 130))]
            got32, got64 = run(*feeds)
            again32, again64 = run(*feeds)
            np.testing.assert_array_equal(got32, again32)
            np.testing.assert_array_equal(got64, again64)
            keep = (idv >= 0) & (idv < 130)
            want32 = np.zeros((130, 7))
            np.add.at(want32, idv[keep], gv32[keep].astype(np.float64))
            want64 = np.zeros((3, 130))
            for o in range(3):
                np.add.at(want64[o], idv[keep], gv64[o][keep])
            np.testing.assert_allclose(got32, want32, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(got64, want64, rtol=1e-12, atol=1e-12)
