"""Every differentiable op against float64 central finite differences.

Table-driven: each case builds an op on float64 placeholders; `check_gradients`
compares gf.gradients of reduce_sum(out * w) with finite differences of the
forward graph. Shapes mix broadcasting, size-1 dims and odd sizes (3, 17, 65).
"""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from gradcheck import check_gradients, check_hvp, reference_session

import graphflow as gf

RNG = np.random.default_rng(1234)


def normal(*shape):
    return RNG.standard_normal(shape)


def positive(*shape, low=0.5, high=2.0):
    return RNG.uniform(low, high, shape)


def away_from_zero(*shape):
    """Values with |x| >= 0.2, so kinks at 0 (abs, relu) are far from the FD steps."""
    return RNG.choice([-1.0, 1.0], shape) * RNG.uniform(0.2, 2.0, shape)


def distinct(*shape):
    """Distinct values at least 0.01 apart (no ties for max/min/max_pool)."""
    n = int(np.prod(shape))
    return (RNG.permutation(n).reshape(shape) - n / 2) * 0.01 + RNG.uniform(0, 1e-3, shape)


SHAPES = [(3, 17), (1, 5), (65,), (2, 1, 3), ()]


def case(id_, build, *values, **kwargs):
    return pytest.param(build, values, kwargs, id=id_)


def run_case(build, values, kwargs):
    check_gradients(build, *values, **kwargs)


# ---- elementwise: unary ---------------------------------------------------------------
UNARY = {
    "negative": (gf.negative, normal),
    "neg_operator": (lambda x: -x, normal),
    "abs": (gf.abs, away_from_zero),
    "square": (gf.square, normal),
    "sqrt": (gf.sqrt, positive),
    "rsqrt": (gf.rsqrt, positive),
    "exp": (gf.exp, normal),
    "log": (gf.log, positive),
    "sin": (gf.sin, normal),
    "cos": (gf.cos, normal),
    "tanh": (gf.tanh, normal),
    "sigmoid": (gf.sigmoid, normal),
    "erf": (gf.erf, normal),
    "identity": (gf.identity, normal),
    "relu": (gf.nn.relu, away_from_zero),
    "gelu": (gf.nn.gelu, normal),
    "gelu_tanh": (lambda x: gf.nn.gelu(x, approximate=True), normal),
    "silu": (gf.nn.silu, normal),
    "softplus": (gf.nn.softplus, normal),
    "nn_sigmoid": (gf.nn.sigmoid, normal),
}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, shape):
    fn, gen = UNARY[name]
    check_gradients(fn, 3 * gen(*shape) if name == "sigmoid" else gen(*shape))


# ---- elementwise: binary, with broadcasting -------------------------------------------
BINARY = {
    "add": (gf.add, normal, normal),
    "add_operator": (lambda a, b: a + b, normal, normal),
    "subtract": (gf.subtract, normal, normal),
    "sub_operator": (lambda a, b: a - b, normal, normal),
    "multiply": (gf.multiply, normal, normal),
    "divide": (gf.divide, normal, away_from_zero),
    "div_operator": (lambda a, b: a / b, normal, away_from_zero),
    "pow": (gf.pow, positive, normal),
    "pow_operator": (lambda a, b: a ** b, positive, normal),
    "maximum": (gf.maximum, normal, normal),
    "minimum": (gf.minimum, normal, normal),
}
SHAPE_PAIRS = [((3, 17), (3, 17)), ((3, 1, 17), (1, 5, 1)), ((65,), ()), ((), (2, 1, 3)),
               ((1, 5), (3, 1)), ((17,), (3, 17)), ((2, 1, 3), (1,))]


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary(name, shapes):
    fn, gen_a, gen_b = BINARY[name]
    check_gradients(fn, gen_a(*shapes[0]), gen_b(*shapes[1]))


SCALAR_OPERAND = [
    case("x_plus_2.5", lambda x: x + 2.5, normal(3, 17)),
    case("2.5_minus_x", lambda x: 2.5 - x, normal(3, 17)),
    case("3_times_x", lambda x: 3.0 * x, normal(1, 5)),
    case("x_over_3", lambda x: x / 3.0, normal(65)),
    case("3_over_x", lambda x: 3.0 / x, away_from_zero(2, 1, 3)),
    case("x_pow_3", lambda x: x ** 3.0, normal(3, 17)),
    case("x_pow_2.5", lambda x: x ** 2.5, positive(3, 17)),
    case("2_pow_x", lambda x: 2.0 ** x, normal(3, 17)),
    case("maximum_scalar", lambda x: gf.maximum(x, 0.1), normal(3, 17)),
    case("minimum_scalar", lambda x: gf.minimum(0.1, x), normal(3, 17)),
    case("square_sum", lambda x: gf.add_n([x, x * x, gf.sin(x)]), normal(2, 1, 3)),
]


@pytest.mark.parametrize("build,values,kwargs", SCALAR_OPERAND)
def test_scalar_operands(build, values, kwargs):
    run_case(build, values, kwargs)


# ---- where and cast ---------------------------------------------------------------------
COND = RNG.random((3, 1, 17)) > 0.5


@pytest.mark.parametrize("a_shape,b_shape", [((3, 5, 17), (3, 5, 17)), ((1, 5, 17), (3, 5, 1)),
                                             ((17,), ()), ((), (5, 1))], ids=str)
def test_where_broadcast(a_shape, b_shape):
    check_gradients(lambda a, b: gf.where(gf.constant(COND), a, b),
                    normal(*a_shape), normal(*b_shape))


def test_where_condition_from_input():
    # The condition depends on x, but only through a comparison: x's gradient is the branch's.
    check_gradients(lambda x: gf.where(x > 0, gf.square(x), -3.0 * x), away_from_zero(3, 17))


def test_cast_float64_to_float64_is_identity_for_gradients():
    check_gradients(lambda x: gf.cast(gf.sin(x), gf.float64) * x, normal(3, 17))


def test_cast_through_float32_gradient_is_cast_back():
    # d/dx of sum(cast(cast(x, f32) * 2, f64) * w) is exactly w * 2 (as float32, then float64).
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float64, [3, 17])
        y = gf.cast(gf.cast(x, gf.float32) * 2.0, gf.float64)
        w = normal(3, 17)
        (gx,) = gf.gradients(gf.reduce_sum(y * gf.constant(w)), x)
    assert gx.dtype is gf.float64
    value = reference_session(g).run(gx, {x: normal(3, 17)})
    np.testing.assert_allclose(value, (w.astype(np.float32) * 2).astype(np.float64))


# ---- reductions ---------------------------------------------------------------------------
REDUCE = {"sum": gf.reduce_sum, "mean": gf.reduce_mean, "max": gf.reduce_max,
          "min": gf.reduce_min}
AXES = [None, 0, 1, -1, (0, 2), [1, -1]]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", sorted(REDUCE))
def test_reduce(name, axis, keepdims):
    fn = REDUCE[name]
    check_gradients(lambda x: fn(x, axis, keepdims=keepdims), distinct(3, 5, 17))


@pytest.mark.parametrize("name", sorted(REDUCE))
@pytest.mark.parametrize("shape,axis", [((1, 5), 0), ((65,), None), ((65,), -1),
                                        ((2, 1, 3), [0, 1])], ids=str)
def test_reduce_small_shapes(name, shape, axis):
    check_gradients(lambda x: REDUCE[name](x, axis), distinct(*shape))


# Ties inside the graph, in functions that are smooth overall (max(x, x) = x): whatever
# subgradient each op picks, the pieces must add up to the true derivative.
TIES = [
    case("maximum_x_x", lambda x: gf.maximum(x, x), normal(3, 17)),
    case("minimum_x_x", lambda x: gf.minimum(x, x), normal(3, 17)),
    case("reduce_max_dup", lambda x: gf.reduce_max(gf.stack([x, x, x - 5.0]), 0), normal(3, 5)),
    case("reduce_min_dup", lambda x: gf.reduce_min(gf.concat([x, x], 1), 1, keepdims=True),
         normal(3, 5)),
    case("max_pool_dup", lambda x: gf.nn.max_pool2d(
        gf.reshape(gf.stack([x, x], 3), [1, 3, 8, 2]), (1, 2), (1, 2), "VALID"), normal(1, 3, 4, 2)),
]


@pytest.mark.parametrize("build,values,kwargs", TIES)
def test_ties_split_the_gradient(build, values, kwargs):
    run_case(build, values, kwargs)


# ---- matmul -------------------------------------------------------------------------------
def _matmul_operands(a_shape, b_shape, ta, tb):
    a = normal(*a_shape)
    b = normal(*b_shape)
    return (np.swapaxes(a, -1, -2) if ta else a), (np.swapaxes(b, -1, -2) if tb else b)


MATMUL_SHAPES = [((3, 4), (4, 5)), ((17, 65), (65, 3)), ((1, 7), (7, 1)),
                 ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 5)),
                 ((2, 1, 3, 4), (3, 4, 5)), ((2, 3, 4), (2, 4, 5))]


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("a_shape,b_shape", MATMUL_SHAPES, ids=str)
def test_matmul(a_shape, b_shape, ta, tb):
    a, b = _matmul_operands(a_shape, b_shape, ta, tb)
    check_gradients(lambda x, y: gf.matmul(x, y, transpose_a=ta, transpose_b=tb), a, b)


def test_matmul_operator():
    check_gradients(lambda x, y: x @ y, normal(3, 17), normal(17, 5))


# ---- shape and data movement -----------------------------------------------------------------
SHAPE_OPS = [
    case("reshape", lambda x: gf.reshape(x, [17, 3]), normal(3, 17)),
    case("reshape_-1", lambda x: gf.reshape(x, [-1, 5]), normal(3, 5, 2)),
    case("reshape_flat", lambda x: gf.reshape(x, [-1]), normal(2, 1, 3)),
    case("transpose_default", gf.transpose, normal(3, 17)),
    case("transpose_perm", lambda x: gf.transpose(x, [1, 2, 0]), normal(2, 3, 5)),
    case("transpose_neg_perm", lambda x: gf.transpose(x, [0, -1, 1]), normal(2, 3, 5)),
    case("expand_dims_0", lambda x: gf.expand_dims(x, 0), normal(3, 17)),
    case("expand_dims_-1", lambda x: gf.expand_dims(x, -1), normal(3, 17)),
    case("squeeze_all", gf.squeeze, normal(2, 1, 3)),
    case("squeeze_axis", lambda x: gf.squeeze(x, 0), normal(1, 5)),
    case("squeeze_axes", lambda x: gf.squeeze(x, [0, -1]), normal(1, 5, 1)),
    case("broadcast_to", lambda x: gf.broadcast_to(x, [2, 3, 5]), normal(3, 1)),
    case("broadcast_to_rank", lambda x: gf.broadcast_to(x, [3, 17]), normal(17)),
    case("broadcast_to_scalar", lambda x: gf.broadcast_to(x, [2, 3]), normal()),
    case("slice_rows_reversed", lambda x: x[1:, ::-1], normal(3, 17)),
    case("slice_ellipsis_int", lambda x: x[..., 0], normal(2, 3, 5)),
    case("slice_newaxis_step", lambda x: x[None, :, 2:5:2], normal(3, 17)),
    case("slice_negative", lambda x: x[-1, -2::-3], normal(3, 17)),
    case("slice_negative_bounds", lambda x: x[-3:-1, 5:-4:4], normal(3, 17)),
    case("slice_clamped", lambda x: x[:100, -100:3], normal(3, 17)),
    case("slice_scalar", lambda x: x[2], normal(65)),
    case("strided_slice", lambda x: gf.strided_slice(x, (slice(None), 0)), normal(2, 1, 3)),
    case("slice_twice_overlapping", lambda x: x[1:] * x[:-1], normal(65)),
]


@pytest.mark.parametrize("build,values,kwargs", SHAPE_OPS)
def test_shape_ops(build, values, kwargs):
    run_case(build, values, kwargs)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for s, size in zip(shapes, (1, 3, 5)):
        s[axis] = size
    check_gradients(lambda a, b, c: gf.concat([a, b, c], axis), *(normal(*s) for s in shapes))


def test_concat_same_tensor_twice():
    check_gradients(lambda a, b: gf.concat([a, b, a], 0), normal(3, 17), normal(1, 17))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack(axis):
    check_gradients(lambda a, b, c: gf.stack([a, b, c], axis),
                    normal(3, 5), normal(3, 5), normal(3, 5))


GATHER = [
    case("axis0_repeated", lambda p: gf.gather(p, gf.constant(np.array([0, 2, 2, 4, 0],
                                                                     np.int32))), normal(5, 4)),
    case("axis0_2d_indices", lambda p: gf.gather(p, gf.constant(np.array([[1, 1], [3, 0]]))),
         normal(4, 3)),
    case("axis1_repeated", lambda p: gf.gather(p, gf.constant(np.array([[3, 3], [0, 1]],
                                                                     np.int64)), axis=1),
         normal(3, 4, 2)),
    case("axis_-1", lambda p: gf.gather(p, gf.constant(np.array([16, 0, 16])), axis=-1),
         normal(3, 17)),
    case("embedding_lookup", lambda p: gf.nn.embedding_lookup(
        p, gf.constant(np.array([[1, 1], [6, 0], [3, 1]]))), normal(7, 5)),
]


@pytest.mark.parametrize("build,values,kwargs", GATHER)
def test_gather(build, values, kwargs):
    run_case(build, values, kwargs)


def test_gather_indices_get_no_gradient():
    g = gf.Graph()
    with g.as_default():
        p = gf.placeholder(gf.float64, [5, 3])
        ids = gf.placeholder(gf.int32, [4])
        y = gf.gather(p, ids)
        assert gf.gradients(y, ids) == [None]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("shape,axis", [((3, 17), 0), ((3, 17), 1), ((2, 1, 5), -1),
                                        ((65,), 0)], ids=str)
def test_cumsum(shape, axis, exclusive, reverse):
    check_gradients(lambda x: gf.cumsum(x, axis, exclusive=exclusive, reverse=reverse),
                    normal(*shape))


# ---- gf.nn ------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("fn", [gf.nn.softmax, gf.nn.log_softmax], ids=["softmax", "log_softmax"])
def test_softmax_family(fn, axis):
    check_gradients(lambda x: fn(x, axis), 3 * normal(3, 17) if axis != 1 else normal(4, 5, 3))


def test_softmax_of_shifted_large_logits():
    check_gradients(gf.nn.softmax, normal(2, 5) + 50.0)


@pytest.mark.parametrize("x_shape,axis", [((3, 17), -1), ((2, 5, 3), 1), ((4, 6, 3), 0),
                                          ((1, 5), -1)], ids=str)
def test_layer_norm(x_shape, axis):
    size = x_shape[axis]
    check_gradients(lambda x, gamma, beta: gf.nn.layer_norm(x, gamma, beta, axis=axis),
                    2 * normal(*x_shape) + 1, 1 + 0.5 * normal(size), normal(size))


def test_layer_norm_with_large_epsilon():
    check_gradients(lambda x, gamma, beta: gf.nn.layer_norm(x, gamma, beta, epsilon=0.5),
                    normal(3, 17), normal(17), normal(17))


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(4, 17), (1, 5), (2, 3, 5)], ids=str)
def test_sparse_softmax_cross_entropy(shape, label_dtype):
    labels = RNG.integers(0, shape[-1], shape[:-1]).astype(label_dtype)
    check_gradients(lambda logits: gf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=gf.constant(labels), logits=logits), 2 * normal(*shape))


@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("shape", [(4, 17), (1, 5), (2, 3, 5)], ids=str)
def test_softmax_cross_entropy(shape, normalized):
    labels = positive(*shape)
    if normalized:
        labels /= labels.sum(-1, keepdims=True)
    check_gradients(lambda logits, lab: gf.nn.softmax_cross_entropy_with_logits(
        labels=lab, logits=logits), 2 * normal(*shape), labels, none_for=(1,))


def test_sparse_labels_get_no_gradient():
    g = gf.Graph()
    with g.as_default():
        logits = gf.placeholder(gf.float64, [3, 5])
        labels = gf.placeholder(gf.int64, [3])
        loss = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        assert gf.gradients(loss, [labels], unconnected_gradients="none") == [None]


CONV = [((1, 7, 9, 3), (3, 3, 3, 4), 1, "SAME"), ((1, 7, 9, 3), (3, 3, 3, 4), 1, "VALID"),
        ((2, 7, 5, 2), (3, 3, 2, 3), 2, "SAME"), ((2, 7, 5, 2), (3, 2, 2, 3), 2, "VALID"),
        ((1, 6, 6, 1), (2, 2, 1, 2), 2, "SAME"), ((1, 5, 8, 2), (1, 4, 2, 1), (1, 3), "SAME"),
        ((2, 4, 4, 3), (1, 1, 3, 2), [1, 2, 2, 1], "VALID")]


@pytest.mark.parametrize("x_shape,w_shape,strides,padding", CONV, ids=str)
def test_conv2d(x_shape, w_shape, strides, padding):
    check_gradients(lambda x, w: gf.nn.conv2d(x, w, strides, padding),
                    normal(*x_shape), normal(*w_shape))


POOL = [((1, 7, 9, 2), 3, 1, "SAME"), ((1, 7, 9, 2), 3, 2, "VALID"), ((2, 5, 5, 1), 2, 2, "SAME"),
        ((2, 6, 5, 3), (2, 3), (2, 1), "VALID"), ((1, 5, 7, 2), [1, 3, 2, 1], [1, 2, 3, 1], "SAME")]


@pytest.mark.parametrize("x_shape,ksize,strides,padding", POOL, ids=str)
@pytest.mark.parametrize("fn", [gf.nn.max_pool2d, gf.nn.avg_pool2d], ids=["max", "avg"])
def test_pool2d(fn, x_shape, ksize, strides, padding):
    check_gradients(lambda x: fn(x, ksize, strides, padding), distinct(*x_shape))


def test_dropout_rate_zero_passes_gradient():
    check_gradients(lambda x: gf.nn.dropout(x, 0.0) * x, normal(3, 17))


def test_bias_add():
    check_gradients(gf.nn.bias_add, normal(2, 3, 5), normal(5))


# ---- stop_gradient and clipping -------------------------------------------------------------
def test_stop_gradient_gives_none():
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float64, [3])
        y = gf.stop_gradient(x * 2.0)
        assert gf.gradients(gf.reduce_sum(y), x) == [None]


def test_stop_gradient_blocks_one_path_only():
    # d/dx [x * stop(x)] = stop(x) = x (the stopped path contributes nothing).
    x = normal(3, 17)
    g = gf.Graph()
    with g.as_default():
        xp = gf.placeholder(gf.float64, [3, 17])
        (gx,) = gf.gradients(gf.reduce_sum(xp * gf.stop_gradient(xp)), xp)
        np.testing.assert_allclose(reference_session(g).run(gx, {xp: x}), x)


@pytest.mark.parametrize("clip_norm", [0.5, 1e3], ids=["clipping", "not_clipping"])
def test_clip_by_global_norm(clip_norm):
    def build(a, b):
        (ca, skipped, cb), norm = gf.clip_by_global_norm([a, None, b], clip_norm)
        assert skipped is None
        return gf.concat([gf.reshape(ca, [-1]), gf.reshape(cb, [-1]), gf.expand_dims(norm, 0)], 0)
    check_gradients(build, normal(3, 5), normal(4))


# ---- unknown dims: the *Like ops and run-time sizes in gradients -------------------------------
DYNAMIC = [
    case("add_broadcast", lambda a, b: a + b, normal(3, 17), normal(1, 17)),
    case("mul_scalar_row", lambda a, b: a * b, normal(3, 5), normal(1, 1)),
    case("reduce_mean_batch", lambda x: gf.reduce_mean(x, 0), normal(3, 17)),
    case("reduce_mean_all", lambda x: gf.reduce_mean(x), normal(3, 17)),
    case("reduce_max_batch", lambda x: gf.reduce_max(x, [0, 1], keepdims=True), distinct(3, 5, 2)),
    case("reshape_-1", lambda x: gf.reshape(x, [-1]), normal(3, 17)),
    case("matmul_batch", lambda a, b: a @ b, normal(3, 4, 5), normal(5, 2)),
    case("matmul_both_unknown", lambda a, b: a @ b, normal(3, 4, 5), normal(5, 2), dynamic=(0, 1)),
    case("add_both_unknown", lambda a, b: a + b, normal(3, 1, 5), normal(4, 1), dynamic=(0, 1)),
    case("softmax_xent", lambda x: gf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=gf.constant(np.array([1, 0, 4])), logits=x), normal(3, 5)),
    case("layer_norm", lambda x, gm, bt: gf.nn.layer_norm(x, gm, bt), normal(3, 5),
         normal(5), normal(5)),
    case("conv2d", lambda x, w: gf.nn.conv2d(x, w, 2, "SAME"), normal(2, 5, 5, 2),
         normal(3, 3, 2, 2)),
    case("avg_pool", lambda x: gf.nn.avg_pool2d(x, 3, 2, "SAME"), normal(2, 5, 5, 2)),
    case("where", lambda a, b: gf.where(a > 0, a, b), away_from_zero(3, 5), normal(1, 5)),
]


@pytest.mark.parametrize("build,values,kwargs", DYNAMIC)
def test_unknown_batch_dim(build, values, kwargs):
    check_gradients(build, *values, **{"dynamic": (0,), **kwargs})


# ---- second order: Hessian-vector products ------------------------------------------------------
def test_hvp_mlp_sparse_cross_entropy():
    def loss(x, w1, b1, w2, b2):
        labels = gf.constant(np.array([2, 0, 1, 2, 1]))
        hidden = gf.tanh(gf.matmul(x, w1) + b1)
        logits = gf.matmul(hidden, w2) + b2
        return gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits))
    check_hvp(loss, normal(5, 4), normal(4, 7), normal(7), normal(7, 3), normal(3))


def test_hvp_mlp_dense_cross_entropy():
    labels = positive(5, 3)
    labels /= labels.sum(-1, keepdims=True)

    def loss(x, w1, w2):
        logits = gf.matmul(gf.tanh(gf.matmul(x, w1, transpose_b=True)), w2)
        return gf.reduce_sum(gf.nn.softmax_cross_entropy_with_logits(
            labels=gf.constant(labels), logits=logits))
    check_hvp(loss, normal(5, 4), normal(6, 4), normal(6, 3))


@pytest.mark.parametrize("axis", [-1, 1])
def test_hvp_layer_norm(axis):
    x = normal(2, 5, 3)
    size = x.shape[axis]
    weights = normal(2, 5, 3)

    def loss(x, gamma, beta):
        y = gf.tanh(gf.nn.layer_norm(x, gamma, beta, axis=axis))
        return gf.reduce_sum(y * gf.constant(weights))
    check_hvp(loss, x, 1 + 0.3 * normal(size), normal(size))


@pytest.mark.parametrize("strides,padding", [(1, "SAME"), (2, "VALID"), (2, "SAME")])
def test_hvp_conv2d(strides, padding):
    def loss(x, w):
        y = gf.nn.conv2d(x, w, strides, padding)
        return gf.reduce_sum(gf.tanh(y) * gf.sin(y))
    check_hvp(loss, normal(2, 5, 6, 2), 0.5 * normal(3, 3, 2, 3))


def test_hvp_softmax_pow_reduce_max():
    def loss(x, y):
        s = gf.nn.softmax(x * y, axis=0)
        return gf.reduce_sum(gf.reduce_max(s, 1) * gf.nn.log_softmax(y)[:, 0]) + gf.reduce_sum(
            gf.pow(gf.exp(x), gf.sin(y)))
    check_hvp(loss, distinct(3, 4), normal(3, 4))


def test_hvp_avg_pool_and_gather():
    def loss(x, p):
        ids = gf.constant(np.array([0, 2, 2]))
        pooled = gf.nn.avg_pool2d(gf.square(x), 2, 1, "SAME")
        return gf.reduce_sum(gf.sin(pooled)) + gf.reduce_sum(gf.exp(gf.gather(p, ids)) * p[0])
    check_hvp(loss, normal(1, 4, 3, 2), normal(3, 4))


# ---- the backward graph's names ------------------------------------------------------------------
def test_backward_ops_are_named_and_point_at_forward_ops():
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float64, [3, 4], name="x")
        w = gf.placeholder(gf.float64, [4, 2], name="w")
        h = gf.matmul(x, w, name="mm")
        y = gf.reduce_sum(gf.tanh(h, name="act") * h, name="loss")
        forward = g.get_operations()
        grads = gf.gradients(y, [x, w])
        backward = g.get_operations()[len(forward):]
    assert backward
    forward_names = {op.name for op in forward}
    for op in backward:
        assert op.name.startswith("gradients/"), op.name
        assert op.grad_of is not None, f"{op.name} has no grad_of"
        assert op.grad_of in forward, f"{op.name}.grad_of is not a forward op"
        scope = op.name.split("/")[1]
        if scope.endswith("_grad"):
            assert scope[:-len("_grad")] == op.grad_of.name
            assert scope[:-len("_grad")] in forward_names
    assert {op.grad_of.name for op in backward} >= {"mm", "act", "loss"}
    for op in forward:
        assert op.grad_of is None
    assert grads[0].op.grad_of.name == "mm" and grads[1].op.grad_of.name == "mm"
    # a second call gets its own scope
    with g.as_default():
        again = gf.gradients(y, x)
    assert again[0].name.startswith("gradients_1/")


# ---- deep graphs, fan-out, options --------------------------------------------------------------
def test_deep_chain_has_no_recursion_limit():
    depth = 3000
    assert depth > sys.getrecursionlimit() / 2

    def build(x):
        h = x
        for _ in range(depth):
            h = h + 0.001 * gf.tanh(h)
        return h
    check_gradients(build, normal(3), max_coords=3)


def test_fan_out_gradients_sum():
    check_gradients(lambda x: x * x + gf.sin(x) + 3.0 * x, normal(3, 17))
    check_gradients(lambda x, y: gf.matmul(x, y) + gf.matmul(x, gf.exp(y)) * gf.reduce_sum(x),
                    normal(3, 4), normal(4, 5))


def test_unconnected_gradients():
    g = gf.Graph()
    with g.as_default():
        a = gf.placeholder(gf.float64, [3, 2])
        b = gf.placeholder(gf.float64, [5])
        y = gf.reduce_sum(a * a)
        none = gf.gradients(y, [a, b])
        zero = gf.gradients(y, [a, b], unconnected_gradients="zero")
        with pytest.raises(ValueError):
            gf.gradients(y, [a, b], unconnected_gradients="bogus")
    assert none[1] is None and none[0] is not None
    assert zero[1].dtype is gf.float64 and tuple(zero[1].shape) == (5,)
    av = normal(3, 2)
    ga, gb = reference_session(g).run(zero, {a: av, b: normal(5)})
    np.testing.assert_allclose(ga, 2 * av)
    np.testing.assert_array_equal(gb, np.zeros(5))


def test_gradient_of_y_with_respect_to_itself_is_grad_ys():
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float64, [3])
        gy = normal(3)
        (gx,) = gf.gradients(x, x, grad_ys=gf.constant(gy))
        (ones,) = gf.gradients(x, x)
        assert reference_session(g).run(gx, {x: normal(3)}).tolist() == gy.tolist()
        np.testing.assert_array_equal(reference_session(g).run(ones, {x: normal(3)}), np.ones(3))


def _fd_of_weighted_sum(ys_fn, x0, weights, eps=1e-6):
    """Central differences of sum_k sum(ys_k(x) * weights_k) (numpy callables)."""
    out = np.zeros_like(x0)
    for c in range(x0.size):
        plus, minus = x0.copy(), x0.copy()
        plus.flat[c] += eps
        minus.flat[c] -= eps
        f = [sum(float(np.sum(y * w)) for y, w in zip(ys_fn(p), weights)) for p in (plus, minus)]
        out.flat[c] = (f[0] - f[1]) / (2 * eps)
    return out


def test_grad_ys_and_several_ys():
    x0 = normal(3, 4)
    gy1, gy2 = normal(3, 4), normal(4)
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float64, [3, 4])
        y1 = gf.tanh(x) * x
        y2 = gf.reduce_sum(gf.exp(x), 0)
        y3 = gf.reduce_sum(gf.sin(x))
        given = gf.gradients([y1, y2], x, grad_ys=[gf.constant(gy1), gy2])[0]
        mixed = gf.gradients([y1, y2, y3], [x], grad_ys=[gy1, None, None])[0]
        plain = gf.gradients([y1, y2], x)[0]
        with pytest.raises(gf.errors.ShapeError):
            gf.gradients(y1, x, grad_ys=normal(4, 3))
    sess = reference_session(g)
    fetch = sess.make_callable([y1, y2, y3], [x])
    values = sess.run([given, mixed, plain], {x: x0})
    ones1, ones2 = np.ones((3, 4)), np.ones(4)
    for got, weights in zip(values, [(gy1, gy2, 0.0), (gy1, ones2, 1.0), (ones1, ones2, 0.0)]):
        expected = _fd_of_weighted_sum(lambda v: fetch(v), x0, weights)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_xs_may_be_intermediate_tensors_and_variables():
    g = gf.Graph()
    with g.as_default():
        v = gf.Variable(np.array([0.5, -1.0, 2.0]), name="v")
        h = gf.tanh(v)
        y = gf.reduce_sum(h * h)
        gh, gv = gf.gradients(y, [h, v])
        init = gf.global_variables_initializer()
    sess = reference_session(g)
    sess.run(init)
    hv, ghv, gvv = sess.run([h, gh, gv])
    np.testing.assert_allclose(ghv, 2 * hv)
    np.testing.assert_allclose(gvv, 2 * hv * (1 - hv ** 2))


# ---- integer paths give None ------------------------------------------------------------------
INTEGER_PATHS = {
    "argmax": lambda x: gf.cast(gf.argmax(x, 1), gf.float64),
    "argmin": lambda x: gf.cast(gf.argmin(x, 0), gf.float64),
    "cast_to_int": lambda x: gf.cast(gf.cast(x * 10.0, gf.int32), gf.float64),
    "comparison": lambda x: gf.cast(gf.greater(x, 0.0), gf.float64),
    "equal": lambda x: gf.cast(gf.equal(x, x), gf.float64),
    "where_cond": lambda x: gf.where(x < 0.0, gf.ones_like(x), gf.zeros_like(x)),
    "sign": lambda x: gf.sign(x),
    "shape_only": lambda x: gf.ones_like(x) + gf.zeros_like(x),
}


@pytest.mark.parametrize("name", sorted(INTEGER_PATHS))
def test_integer_paths_give_none(name):
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float64, [3, 5])
        y = gf.reduce_sum(INTEGER_PATHS[name](x))
        assert gf.gradients(y, x) == [None]
        (zero,) = gf.gradients(y, x, unconnected_gradients="zero")
    np.testing.assert_array_equal(reference_session(g).run(zero, {x: normal(3, 5)}), np.zeros((3, 5)))


def test_integer_ys_cannot_be_differentiated():
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float64, [3, 5])
        with pytest.raises(gf.errors.DTypeError):
            gf.gradients(gf.argmax(x, 1), x)


def test_erf_matches_math_erf_derivative():
    # A second oracle for erf's rule: d erf/dx = 2/sqrt(pi) exp(-x^2), evaluated with numpy.
    x0 = normal(17)
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float64, [17])
        (gx,) = gf.gradients(gf.reduce_sum(gf.erf(x)), x)
    np.testing.assert_allclose(reference_session(g).run(gx, {x: x0}),
                               2 / math.sqrt(math.pi) * np.exp(-x0 ** 2), rtol=1e-12)


# ---- second order for every op: Hv of reduce_sum(sin(op(xs)) * w) --------------------------------
def _sin_weighted(build):
    def loss(*xs):
        out = build(*xs)
        w = np.random.default_rng(7).standard_normal(tuple(out.shape))
        return gf.reduce_sum(gf.sin(out) * gf.constant(w))
    return loss


def _unary_hvp_cases():
    for name in sorted(UNARY):
        fn, gen = UNARY[name]
        yield case(f"unary_{name}", fn, gen(3, 5))
    for name in sorted(BINARY):
        fn, gen_a, gen_b = BINARY[name]
        yield case(f"binary_{name}", fn, gen_a(3, 1, 4), gen_b(1, 5, 1))
    for name in sorted(REDUCE):
        for axis in (None, 1, (0, 2)):
            yield case(f"reduce_{name}_{axis}", lambda x, f=REDUCE[name], a=axis: f(x, a),
                       distinct(3, 5, 4))
    for ta, tb in [(False, False), (True, False), (False, True), (True, True)]:
        a, b = _matmul_operands((2, 3, 4), (4, 5), ta, tb)
        yield case(f"matmul_{ta}_{tb}", lambda x, y, ta=ta, tb=tb: gf.matmul(x, y, ta, tb), a, b)
    a, b = _matmul_operands((1, 3, 4), (2, 4, 5), False, False)
    yield case("matmul_batch_broadcast", gf.matmul, a, b)
    yield case("where", lambda a, b: gf.where(gf.constant(COND), a, b), normal(1, 5, 17),
               normal(3, 5, 1))
    yield case("cumsum_exclusive_reverse", lambda x: gf.cumsum(x, 1, True, True), normal(3, 5))
    yield case("concat", lambda a, b: gf.concat([a, b, a], 1), normal(3, 2), normal(3, 5))
    yield case("stack", lambda a, b: gf.stack([a, b], -1), normal(3, 2), normal(3, 2))
    for axis in (-1, 0):
        yield case(f"softmax_{axis}", lambda x, a=axis: gf.nn.softmax(x, a), normal(3, 5))
        yield case(f"log_softmax_{axis}", lambda x, a=axis: gf.nn.log_softmax(x, a), normal(3, 5))
    yield case("sparse_xent", lambda x: gf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=gf.constant(np.array([[1, 0, 4], [2, 2, 3]])), logits=x), normal(2, 3, 5))
    labels = positive(3, 5)
    yield case("dense_xent", lambda x: gf.nn.softmax_cross_entropy_with_logits(
        labels=gf.constant(labels), logits=x), normal(3, 5))
    yield case("layer_norm", lambda x, g, b: gf.nn.layer_norm(x, g, b, axis=1),
               normal(2, 5, 3), normal(5), normal(5))
    for x_shape, w_shape, strides, padding in CONV[:4]:
        yield case(f"conv2d_{strides}_{padding}", lambda x, w, s=strides, p=padding:
                   gf.nn.conv2d(x, w, s, p), normal(*x_shape), 0.3 * normal(*w_shape))
    for x_shape, ksize, strides, padding in POOL:
        yield case(f"avg_pool_{ksize}_{strides}_{padding}", lambda x, k=ksize, s=strides,
                   p=padding: gf.nn.avg_pool2d(x, k, s, p), normal(*x_shape))


HVP_CASES = list(_unary_hvp_cases()) + SCALAR_OPERAND + SHAPE_OPS + GATHER


@pytest.mark.parametrize("build,values,kwargs", HVP_CASES)
def test_second_order(build, values, kwargs):
    check_hvp(_sin_weighted(build), *values)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_hvp_max_pool(padding):
    """Second order through max_pool: MaxPoolGrad and its adjoint differentiate each other."""
    def loss(x, w):
        pooled = gf.nn.max_pool2d(x * w, 2, [1, 2, 1, 1], padding)
        return gf.reduce_sum(gf.square(pooled) * gf.sin(pooled))
    check_hvp(loss, distinct(2, 5, 6, 2), 1 + 0.1 * normal(2, 5, 6, 2))
