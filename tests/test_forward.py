"""Forward values of every op on the reference device, against numpy written out here."""
import math

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import GraphflowError, ShapeError

rng = np.random.default_rng(0)


def run(t, feeds=None):
    with gf.Session(device="reference") as s:
        return s.run(t, feeds)


def rand(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("fn, ref", [
    (gf.add, np.add), (gf.subtract, np.subtract), (gf.multiply, np.multiply),
    (gf.divide, np.divide), (gf.maximum, np.maximum), (gf.minimum, np.minimum),
    (gf.less, np.less), (gf.greater_equal, np.greater_equal), (gf.equal, np.equal),
])
def test_binary_broadcasting(fn, ref):
    a, b = rand(3, 1, 17), rand(1, 5, 1)
    out = run(fn(gf.constant(a), gf.constant(b)))
    np.testing.assert_allclose(out, ref(a, b), rtol=1e-6)


def test_pow_and_scalars():
    a = np.abs(rand(4, 3)) + 0.1
    x = gf.constant(a)
    np.testing.assert_allclose(run(x ** 2.5), a ** 2.5, rtol=1e-5)
    np.testing.assert_allclose(run(2.0 ** x), 2.0 ** a, rtol=1e-5)
    np.testing.assert_allclose(run(1.0 - x), 1.0 - a, rtol=1e-6)


@pytest.mark.parametrize("fn, ref", [
    (gf.negative, np.negative), (gf.abs, np.abs), (gf.square, np.square),
    (gf.exp, np.exp), (gf.sin, np.sin), (gf.cos, np.cos), (gf.tanh, np.tanh),
    (gf.sigmoid, lambda v: 1 / (1 + np.exp(-v))),
    (gf.nn.relu, lambda v: np.maximum(v, 0)),
    (gf.nn.softplus, lambda v: np.log1p(np.exp(v))),
    (gf.nn.silu, lambda v: v / (1 + np.exp(-v))),
    (gf.nn.gelu, lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))),
    (lambda v: gf.nn.gelu(v, approximate=True),
     lambda v: 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))),
])
def test_unary(fn, ref):
    a = rand(65)
    np.testing.assert_allclose(run(fn(gf.constant(a))), ref(a.astype(np.float64)),
                               rtol=2e-5, atol=1e-6)


def test_sqrt_rsqrt_log():
    a = np.abs(rand(17)) + 0.5
    x = gf.constant(a)
    np.testing.assert_allclose(run(gf.sqrt(x)), np.sqrt(a), rtol=1e-6)
    np.testing.assert_allclose(run(gf.rsqrt(x)), 1 / np.sqrt(a), rtol=1e-6)
    np.testing.assert_allclose(run(gf.log(x)), np.log(a), rtol=1e-6)


def test_sigmoid_is_stable_for_large_inputs():
    out = run(gf.sigmoid(gf.constant(np.array([-1000.0, 1000.0], np.float32))))
    np.testing.assert_array_equal(out, [0.0, 1.0])


def test_where_cast_and_truncation():
    a = np.array([-2.7, -0.5, 0.5, 2.7], np.float32)
    x = gf.constant(a)
    np.testing.assert_array_equal(run(gf.cast(x, gf.int32)), [-2, 0, 0, 2])
    np.testing.assert_array_equal(run(gf.where(x > 0, x, gf.zeros_like(x))), np.maximum(a, 0))
    cond = gf.constant(np.array([[True], [False]]))
    np.testing.assert_array_equal(run(gf.where(cond, gf.constant(1.0), gf.zeros([2, 3]))),
                                  [[1, 1, 1], [0, 0, 0]])


@pytest.mark.parametrize("axis", [None, 0, -1, [0, 2], (1,)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(axis, keepdims):
    a = rand(3, 17, 5)
    x = gf.constant(a)
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    for fn, ref in ((gf.reduce_sum, np.sum), (gf.reduce_mean, np.mean),
                    (gf.reduce_max, np.max), (gf.reduce_min, np.min)):
        np.testing.assert_allclose(run(fn(x, axis=axis, keepdims=keepdims)),
                                   ref(a, axis=np_axis, keepdims=keepdims), rtol=1e-5, atol=1e-6)


def test_argmax_int64_and_first_tie():
    a = np.array([[1, 3, 3], [5, 0, 5]], np.float32)
    out = run(gf.argmax(gf.constant(a), 1))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [1, 0])


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_matmul_flags(ta, tb):
    a, b = rand(17, 65), rand(65, 3)
    a_in = a.T.copy() if ta else a
    b_in = b.T.copy() if tb else b
    out = run(gf.matmul(gf.constant(a_in), gf.constant(b_in), transpose_a=ta, transpose_b=tb))
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def test_batched_matmul_broadcasts():
    a, b = rand(2, 1, 3, 4), rand(5, 4, 7)
    np.testing.assert_allclose(run(gf.constant(a) @ gf.constant(b)), a @ b, rtol=1e-5, atol=1e-5)


def test_shape_ops():
    a = rand(2, 3, 4)
    x = gf.constant(a)
    np.testing.assert_array_equal(run(gf.transpose(x, [2, 0, 1])), a.transpose(2, 0, 1))
    np.testing.assert_array_equal(run(gf.transpose(x)), a.T)
    np.testing.assert_array_equal(run(gf.reshape(x, [4, -1])), a.reshape(4, -1))
    np.testing.assert_array_equal(run(gf.expand_dims(x, -1)), a[..., None])
    np.testing.assert_array_equal(run(gf.squeeze(gf.constant(a[:, None]), 1)), a)
    np.testing.assert_array_equal(run(gf.broadcast_to(gf.constant(a[:1]), [5, 3, 4])),
                                  np.broadcast_to(a[:1], (5, 3, 4)))
    np.testing.assert_array_equal(run(gf.concat([x, x * 2.0], 1)),
                                  np.concatenate([a, a * 2], 1))
    np.testing.assert_array_equal(run(gf.stack([x, x], axis=-1)), np.stack([a, a], -1))


@pytest.mark.parametrize("key", [
    (1,), (-1,), (slice(None, None, -1),), (Ellipsis, 0), (None, slice(1, None), 2),
    (slice(None), slice(None, None, -2)), (slice(-10, 10),), (slice(5, 1, -1), Ellipsis, None),
])
def test_slicing_matches_numpy(key):
    a = rand(4, 5, 6)
    np.testing.assert_array_equal(run(gf.constant(a)[key]), a[key])


def test_gather_one_hot_cumsum():
    a = rand(5, 3)
    idx = np.array([[4, 0], [0, 2]])
    np.testing.assert_array_equal(run(gf.gather(gf.constant(a), idx)), a[idx])
    np.testing.assert_array_equal(run(gf.gather(gf.constant(a), [2, 0], axis=1)), a[:, [2, 0]])
    np.testing.assert_array_equal(run(gf.one_hot(gf.constant([0, 2, 5]), 3)),
                                  [[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    b = rand(3, 65)
    np.testing.assert_allclose(run(gf.cumsum(gf.constant(b), axis=1)), np.cumsum(b, 1),
                               rtol=1e-5, atol=1e-5)
    excl = run(gf.cumsum(gf.constant(b), axis=1, exclusive=True, reverse=True))
    np.testing.assert_allclose(excl, np.cumsum(b[:, ::-1], 1)[:, ::-1] - b, rtol=1e-4, atol=1e-4)


def test_gather_out_of_range_is_an_error():
    with pytest.raises(GraphflowError, match="index 7 is out of range"):
        run(gf.gather(gf.constant(rand(5, 3)), [1, 7]))


def test_softmax_family_is_stable():
    a = rand(4, 17).astype(np.float64) * 50
    a[0, 0] = 1e4  # exp overflows unless the max is subtracted
    x = gf.constant(a)
    shifted = a - a.max(1, keepdims=True)
    e = np.exp(shifted)
    np.testing.assert_allclose(run(gf.nn.softmax(x)), e / e.sum(1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(run(gf.nn.log_softmax(x)),
                               shifted - np.log(e.sum(1, keepdims=True)), rtol=1e-12)
    np.testing.assert_allclose(run(gf.nn.softmax(x, axis=0)),
                               np.exp(a - a.max(0)) / np.exp(a - a.max(0)).sum(0), rtol=1e-9)


def test_cross_entropies():
    logits = rand(6, 5).astype(np.float64)
    labels = np.array([0, 4, 2, 2, 1, 3])
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    for dtype in (gf.int32, gf.int64):
        out = run(gf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=gf.constant(labels, dtype), logits=gf.constant(logits)))
        np.testing.assert_allclose(out, -logp[np.arange(6), labels], rtol=1e-10)
    soft = np.abs(rand(6, 5)).astype(np.float64)
    soft /= soft.sum(1, keepdims=True)
    out = run(gf.nn.softmax_cross_entropy_with_logits(labels=soft, logits=gf.constant(logits)))
    np.testing.assert_allclose(out, -(soft * logp).sum(1), rtol=1e-10)
    with pytest.raises(GraphflowError, match="label 9 is out of range"):
        run(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=[9, 0], logits=logits[:2]))
    with pytest.raises(TypeError, match="named arguments"):
        gf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)


@pytest.mark.parametrize("axis", [-1, 1])
def test_layer_norm(axis):
    a = rand(2, 5, 7).astype(np.float64)
    n = a.shape[axis]
    gamma, beta = rand(n).astype(np.float64), rand(n).astype(np.float64)
    out = run(gf.nn.layer_norm(gf.constant(a), gamma, beta, axis=axis, epsilon=1e-3))
    mean = a.mean(axis, keepdims=True)
    var = ((a - mean) ** 2).mean(axis, keepdims=True)
    shape = [1, 1, 1]
    shape[axis] = n
    expect = (a - mean) / np.sqrt(var + 1e-3) * gamma.reshape(shape) + beta.reshape(shape)
    np.testing.assert_allclose(out, expect, rtol=1e-10)


def naive_conv(x, w, stride, padding):
    n, h, wd, c = x.shape
    kh, kw, _, o = w.shape
    if padding == "SAME":
        ho, wo = -(-h // stride[0]), -(-wd // stride[1])
        ph = max((ho - 1) * stride[0] + kh - h, 0)
        pw = max((wo - 1) * stride[1] + kw - wd, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        ho, wo = (h - kh) // stride[0] + 1, (wd - kw) // stride[1] + 1
    out = np.zeros((n, ho, wo, o))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
            out[:, i, j] = np.einsum("nhwc,hwco->no", patch, w)
    return out


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("strides", [1, (2, 1), [1, 3, 2, 1]])
def test_conv2d(padding, strides):
    x, w = rand(2, 9, 8, 3).astype(np.float64), rand(3, 2, 3, 4).astype(np.float64)
    pair = (strides, strides) if isinstance(strides, int) else tuple(strides)[-3:-1] \
        if len(strides) == 4 else tuple(strides)
    out = run(gf.nn.conv2d(gf.constant(x), gf.constant(w), strides, padding))
    np.testing.assert_allclose(out, naive_conv(x, w, pair, padding), rtol=1e-10, atol=1e-12)


def naive_pool(x, k, s, padding, kind):
    n, h, w, c = x.shape
    if padding == "SAME":
        ho, wo = -(-h // s), -(-w // s)
        ph, pw = max((ho - 1) * s + k - h, 0), max((wo - 1) * s + k - w, 0)
        top, left = ph // 2, pw // 2
    else:
        ho, wo, top, left = (h - k) // s + 1, (w - k) // s + 1, 0, 0
    out = np.zeros((n, ho, wo, c))
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * s - top, j * s - left
            cells = x[:, max(r0, 0):min(r0 + k, h), max(c0, 0):min(c0 + k, w)]
            out[:, i, j] = cells.max((1, 2)) if kind == "max" else cells.mean((1, 2))
    return out


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling(padding, kind):
    x = rand(2, 7, 9, 3).astype(np.float64)
    fn = gf.nn.max_pool2d if kind == "max" else gf.nn.avg_pool2d
    out = run(fn(gf.constant(x), 3, 2, padding))
    np.testing.assert_allclose(out, naive_pool(x, 3, 2, padding, kind), rtol=1e-12)


def test_conv_errors():
    with pytest.raises(ShapeError, match="channels"):
        gf.nn.conv2d(gf.zeros([1, 5, 5, 3]), gf.zeros([3, 3, 4, 2]), 1, "SAME")
    with pytest.raises(ShapeError, match="padding"):
        gf.nn.conv2d(gf.zeros([1, 5, 5, 3]), gf.zeros([3, 3, 3, 2]), 1, "FULL")


def test_embedding_lookup_and_clip():
    table = rand(10, 4)
    np.testing.assert_array_equal(run(gf.nn.embedding_lookup(gf.constant(table), [[3, 3, 9]])),
                                  table[[[3, 3, 9]]])
    a, b = rand(3), rand(2, 2)
    clipped, norm = gf.clip_by_global_norm([gf.constant(a), None, gf.constant(b)], 1.0)
    got = run([clipped[0], clipped[2], norm])
    total = math.sqrt((a ** 2).sum() + (b ** 2).sum())
    np.testing.assert_allclose(got[2], total, rtol=1e-6)
    np.testing.assert_allclose(got[0], a / max(total, 1.0), rtol=1e-6)
    assert clipped[1] is None


def test_runtime_shape_mismatch_names_the_op():
    x = gf.placeholder(gf.float32, [None, 3])
    y = gf.placeholder(gf.float32, [None, 3])
    z = x + y  # RUNTIME-MARK
    with pytest.raises(ShapeError, match=r"Add.*run time.*\[2, 3\].*\[4, 3\]"):
        run(z, {x: np.zeros((2, 3)), y: np.zeros((4, 3))})
