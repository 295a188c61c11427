"""TF1 breadth ops: tile, pad, split, unstack, slice, clip_by_value, reduce_logsumexp,
reduce_prod, log1p, floor, ceil, round, and gf.nn's leaky_relu, elu,
sigmoid_cross_entropy_with_logits, l2_loss, moments, batch_normalization.

Forward values on `reference` and `cpu` against hand-written numpy; gradients against
float64 central finite differences, on the reference device (check_gradients, many
shapes) and on `cpu` (every case in one compiled graph, differenced through the
same compiled callable); odd sizes and None batch dims; bad input raising errors that
name the op and this file's line.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from gradcheck import check_gradients

import graphflow as gf
from graphflow.errors import DTypeError, ShapeError

RNG = np.random.default_rng(2024)


def normal(*shape):
    return RNG.standard_normal(shape)


def away(*shape):
    """|x| >= 0.2 and never near a half-integer step of floor/round (kinks stay far from FD)."""
    return RNG.choice([-1.0, 1.0], shape) * RNG.uniform(0.2, 2.0, shape)


def np_sigmoid_xent(z, x):
    p = 1 / (1 + np.exp(-x))
    return -z * np.log(p) - (1 - z) * np.log(1 - p)


def np_logsumexp(x, axis, keepdims=False):
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


LABELS = RNG.uniform(0, 1, (4, 7))
MEAN, VAR, OFFSET, SCALE = normal(7), RNG.uniform(0.5, 2, 7), normal(7), normal(7)

# name -> (build, inputs, numpy forward); an input is an array or (array, True) for a None dim 0
CASES = {
    "tile": (lambda x: gf.tile(x, [2, 1, 3]), [(normal(3, 1, 5), True)],
             lambda x: np.tile(x, [2, 1, 3])),
    "tile_static": (lambda x: gf.tile(x, [3, 2]), [normal(2, 5)], lambda x: np.tile(x, [3, 2])),
    "pad_constant": (lambda x: gf.pad(x, [[1, 2], [0, 3]], constant_values=1.5),
                     [(normal(3, 5), True)],
                     lambda x: np.pad(x, [[1, 2], [0, 3]], constant_values=1.5)),
    "pad_reflect": (lambda x: gf.pad(x, [[2, 1], [3, 4]], "REFLECT"), [normal(4, 7)],
                    lambda x: np.pad(x, [[2, 1], [3, 4]], "reflect")),
    "pad_symmetric_batch": (lambda x: gf.pad(x, [[0, 0], [5, 2]], "SYMMETRIC"),
                            [(normal(3, 5), True)],
                            lambda x: np.pad(x, [[0, 0], [5, 2]], "symmetric")),
    "pad_reflect_none_axis": (lambda x: gf.pad(x, [[2, 1], [0, 0]], "reflect"),
                              [(normal(4, 3), True)],
                              lambda x: np.pad(x, [[2, 1], [0, 0]], "reflect")),
    "split_even": (lambda x: gf.concat(gf.split(x, 3, axis=1)[::-1], 1), [(normal(3, 9), True)],
                   lambda x: np.concatenate(np.split(x, 3, axis=1)[::-1], 1)),
    "split_sizes": (lambda x: gf.split(x, [2, -1, 1], 1)[1] * 2.0, [normal(3, 7)],
                    lambda x: x[:, 2:6] * 2),
    "split_batch_rest": (lambda x: gf.split(x, [1, -1], 0)[1], [(normal(4, 3), True)],
                         lambda x: x[1:]),
    "unstack": (lambda x: gf.unstack(x, axis=1)[1] - gf.unstack(x, axis=1)[2],
                [(normal(5, 3, 2), True)], lambda x: x[:, 1] - x[:, 2]),
    "unstack_num": (lambda x: gf.stack(gf.unstack(x, num=3)[::-1], 1), [(normal(3, 5), True)],
                    lambda x: np.stack([x[2], x[1], x[0]], 1)),
    "slice": (lambda x: gf.slice(x, [1, 2, 0], [-1, 3, 1]), [(normal(4, 7, 2), True)],
              lambda x: x[1:, 2:5, 0:1]),
    "clip_by_value": (lambda x: gf.clip_by_value(x, -0.5, 0.75), [(normal(5, 7), True)],
                      lambda x: np.clip(x, -0.5, 0.75)),
    "logsumexp": (lambda x: gf.reduce_logsumexp(x, 1), [(normal(5, 7) * 10, True)],
                  lambda x: np_logsumexp(x, 1)),
    "logsumexp_all_keep": (lambda x: gf.reduce_logsumexp(x, None, keepdims=True), [normal(3, 5)],
                           lambda x: np_logsumexp(x, None, True)),
    "reduce_prod": (lambda x: gf.reduce_prod(x, 1), [(away(5, 7), True)],
                    lambda x: np.prod(x, 1)),
    "reduce_prod_zeros": (lambda x: gf.reduce_prod(x * gf.constant(np.array([0.0, 1, 0])), 0,
                                                   keepdims=True),
                          [normal(4, 3)], lambda x: np.prod(x * [0.0, 1, 0], 0, keepdims=True)),
    "log1p": (gf.log1p, [(RNG.uniform(-0.5, 3, (5, 7)), True)], np.log1p),
    "floor": (lambda x: gf.floor(x) * x, [away(3, 7)], lambda x: np.floor(x) * x),
    "ceil": (lambda x: gf.ceil(x) * x, [away(3, 7)], lambda x: np.ceil(x) * x),
    "round": (lambda x: gf.round(x) + x, [away(3, 7)], lambda x: np.rint(x) + x),
    "leaky_relu": (gf.nn.leaky_relu, [(away(5, 7), True)],
                   lambda x: np.where(x > 0, x, 0.2 * x)),
    "leaky_relu_alpha": (lambda x: gf.nn.leaky_relu(x, alpha=0.01), [away(3, 7)],
                         lambda x: np.where(x > 0, x, 0.01 * x)),
    "elu": (gf.nn.elu, [(away(5, 7), True)], lambda x: np.where(x > 0, x, np.exp(x) - 1)),
    "sigmoid_xent": (lambda x: gf.nn.sigmoid_cross_entropy_with_logits(
        labels=gf.constant(LABELS), logits=x), [normal(4, 7) * 3],
        lambda x: np_sigmoid_xent(LABELS, x)),
    "l2_loss": (gf.nn.l2_loss, [(normal(5, 7), True)], lambda x: np.sum(x * x) / 2),
    "moments_mean": (lambda x: gf.nn.moments(x, [0])[0], [(normal(5, 7), True)],
                     lambda x: x.mean(0)),
    "moments_var": (lambda x: gf.nn.moments(x, [0, 2], keepdims=True)[1], [normal(3, 4, 5)],
                    lambda x: x.var((0, 2), keepdims=True)),
    "batch_norm": (lambda x: gf.nn.batch_normalization(x, gf.constant(MEAN), gf.constant(VAR),
                                                       gf.constant(OFFSET), gf.constant(SCALE),
                                                       1e-3), [(normal(5, 7), True)],
                   lambda x: (x - MEAN) / np.sqrt(VAR + 1e-3) * SCALE + OFFSET),
    "batch_norm_params": (lambda x, m, v, o, s: gf.nn.batch_normalization(x, m, v, o, s, 1e-3),
                          [normal(5, 7), normal(7), RNG.uniform(0.5, 2, 7), normal(7), normal(7)],
                          lambda x, m, v, o, s: (x - m) / np.sqrt(v + 1e-3) * s + o),
    "batch_norm_none": (lambda x, m, v: gf.nn.batch_normalization(x, m, v, None, None, 0.0),
                        [normal(5, 7), normal(7), RNG.uniform(0.5, 2, 7)],
                        lambda x, m, v: (x - m) / np.sqrt(v)),
}


def _build(cases: dict):
    """One float64 graph holding every case: (graph, [(name, placeholders, values, out,
    w, grads)]). Gradients are of reduce_sum(out * w) with w a fixed random constant."""
    graph, built = gf.Graph(), []
    with graph.as_default():
        for name, (build, inputs, _) in cases.items():
            with gf.name_scope(name):
                xs, values = [], []
                for i, spec in enumerate(inputs):
                    value, dynamic = spec if isinstance(spec, tuple) else (spec, False)
                    shape = [None if dynamic and j == 0 else d for j, d in enumerate(value.shape)]
                    xs.append(gf.placeholder(gf.float64, shape, name=f"x{i}"))
                    values.append(value)
                out = build(*xs)
                w = RNG.standard_normal(np.shape(cases[name][2](*values)))
                grads = gf.gradients(gf.reduce_sum(out * gf.constant(w)), xs)
                built.append((name, xs, values, out, w, grads))
    return graph, built


@pytest.fixture(scope="module")
def compiled():
    """Every case, forward and gradient, compiled once for `cpu` and run on both devices."""
    graph, built = _build(CASES)
    xs = [x for b in built for x in b[1]]
    values = [v for b in built for v in b[2]]
    fetches = [t for b in built for t in [b[3]] + [g for g in b[5] if g is not None]]
    with gf.Session(graph, device="reference") as s:
        ref = s.run(fetches, dict(zip(xs, values)))
    sess = gf.Session(graph, device="cpu")
    forward = sess.make_callable([b[3] for b in built], xs)
    full = sess.make_callable(fetches, xs)
    yield built, xs, values, fetches, ref, full(*values), forward
    sess.close()


def test_forward_matches_numpy_on_reference_and_cpu(compiled):
    built, _, _, fetches, ref, cpu, _ = compiled
    for name, _, values, out, _, _ in built:
        expected = CASES[name][2](*values)
        k = fetches.index(out)
        assert ref[k].shape == np.shape(expected), name
        np.testing.assert_allclose(ref[k], expected, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(cpu[k], expected, rtol=1e-12, atol=1e-12, err_msg=name)


def test_cpu_gradients_match_finite_differences(compiled):
    """Central differences of the compiled forward (one compile for every case)."""
    built, xs, values, fetches, ref, cpu, forward = compiled
    eps = 1e-6
    for case, (name, case_xs, case_values, _out, w, grads) in enumerate(built):
        for x, value, g in zip(case_xs, case_values, grads):
            if name in ("floor", "ceil", "round"):
                assert g is not None  # the x factor; floor/ceil/round add nothing
            analytic = cpu[fetches.index(g)]
            np.testing.assert_allclose(analytic, ref[fetches.index(g)], rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name}: cpu vs reference gradient")
            k = xs.index(x)
            coords = RNG.choice(value.size, min(value.size, 8), replace=False)
            for c in coords:
                shifted = []
                for sign in (1, -1):
                    feed = list(values)
                    feed[k] = value.copy()
                    feed[k].flat[c] += sign * eps
                    shifted.append(np.sum(forward(*feed)[case] * w))
                numeric = (shifted[0] - shifted[1]) / (2 * eps)
                assert abs(analytic.flat[c] - numeric) <= 1e-6 + 1e-5 * abs(numeric), \
                    f"{name}: d/d input {k} at {c}: analytic {analytic.flat[c]}, numeric {numeric}"


# ---- gradients on the reference device, more shapes ----------------------------------------------
GRADS = [
    ("tile_rank1", lambda x: gf.tile(x, [4]), [normal(3)], {}),
    ("tile_zero", lambda x: gf.tile(x, [2, 0]) + 1.0, [normal(3, 2)], {}),
    ("tile_batch", lambda x: gf.tile(x, [1, 2, 2]), [normal(3, 1, 5)], {"dynamic": (0,)}),
    ("pad_rank3", lambda x: gf.pad(x, [[0, 1], [2, 0], [1, 1]], constant_values=-2.0),
     [normal(2, 3, 4)], {"dynamic": (0,)}),
    ("pad_reflect_batch", lambda x: gf.pad(x, [[0, 0], [1, 2]], "reflect"), [normal(3, 5)],
     {"dynamic": (0,)}),
    ("pad_reflect_batch_axis", lambda x: gf.pad(x, [[1, 2], [1, 0]], "REFLECT"), [normal(4, 3)],
     {"dynamic": (0,)}),
    ("pad_symmetric_full", lambda x: gf.pad(x, [[3, 3]], "SYMMETRIC"), [normal(3)], {}),
    ("split_three", lambda x: gf.split(x, 3, 0)[0] * gf.split(x, 3, 0)[2], [normal(9, 2)], {}),
    ("unstack_mul", lambda x: gf.add_n([u * (i + 1.0) for i, u in enumerate(gf.unstack(x, axis=-1))]),
     [normal(3, 5)], {"dynamic": (0,)}),
    ("slice_odd", lambda x: gf.slice(x, [0, 3], [2, -1]), [normal(3, 17)], {}),
    ("clip_tensor_bounds", lambda x, lo: gf.clip_by_value(x, lo, 0.5), [normal(5, 3), -away(3) / 4],
     {}),
    ("logsumexp_axes", lambda x: gf.reduce_logsumexp(x, [0, 2]), [normal(3, 4, 5)], {}),
    ("logsumexp_batch", lambda x: gf.reduce_logsumexp(x, -1, keepdims=True), [normal(3, 17)],
     {"dynamic": (0,)}),
    ("prod_all", lambda x: gf.reduce_prod(x), [away(2, 3)], {}),
    ("prod_one_zero", lambda x: gf.reduce_prod(x * gf.constant(np.array([1.0, 0.0, 1.0])), 1),
     [normal(4, 3)], {}),
    ("prod_keep", lambda x: gf.reduce_prod(x, [0], keepdims=True), [away(3, 5)], {"dynamic": (0,)}),
    ("log1p", gf.log1p, [RNG.uniform(-0.5, 2, (17,))], {}),
    ("elu_second_order", lambda x: gf.gradients(gf.reduce_sum(gf.nn.elu(x) ** 2), x)[0],
     [away(3, 5)], {}),
    ("leaky_relu_alpha_gt_1", lambda x: gf.nn.leaky_relu(x, 2.0), [away(17)], {}),
    ("sigmoid_xent_extreme", lambda x: gf.nn.sigmoid_cross_entropy_with_logits(
        labels=gf.constant(RNG.uniform(0, 1, (3, 5))), logits=x), [normal(3, 5) * 30], {}),
    ("l2_loss_odd", gf.nn.l2_loss, [normal(3, 1, 5)], {}),
    ("moments_both", lambda x: gf.stack(list(gf.nn.moments(x, [1]))), [normal(5, 7)],
     {"dynamic": (0,)}),
    ("batch_norm_moments", lambda x, o, s: gf.nn.batch_normalization(
        x, *gf.nn.moments(x, [0]), o, s, 1e-5), [normal(6, 3), normal(3), normal(3)], {}),
]


@pytest.mark.parametrize("build,values,kwargs", [pytest.param(b, v, k, id=n)
                                                 for n, b, v, k in GRADS])
def test_gradients_reference(build, values, kwargs):
    check_gradients(build, *values, **kwargs)


def test_floor_ceil_round_have_no_gradient():
    x = gf.placeholder(gf.float32, [3])
    assert gf.gradients([gf.floor(x), gf.ceil(x), gf.round(x)], x) == [None]


def test_sigmoid_xent_labels_get_no_gradient_and_logits_at_zero():
    z = gf.placeholder(gf.float64, [4])
    x = gf.placeholder(gf.float64, [4])
    loss = gf.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x)
    gz, gx = gf.gradients(gf.reduce_sum(loss), [z, x])
    assert gz is None
    zv = np.array([0.0, 0.3, 1.0, 0.5])
    with gf.Session(device="reference") as s:
        value = s.run(gx, {z: zv, x: np.zeros(4)})
    np.testing.assert_allclose(value, 0.5 - zv)  # sigmoid(0) - z, also at the kink of |x|


def test_round_half_to_even_and_integers():
    x = gf.constant(np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999, -0.0], np.float32))
    i = gf.constant(np.array([-3, 0, 7], np.int32))
    fetches = [gf.round(x), gf.round(i), gf.floor(x), gf.ceil(x)]
    for device in ("reference", "cpu"):
        with gf.Session(device=device) as s:
            r, ri, f, c = s.run(fetches)
        np.testing.assert_array_equal(r, [-2, -2, -0, 0, 2, 2, 2, 0], err_msg=device)
        assert ri.dtype == np.int32 and list(ri) == [-3, 0, 7]
        np.testing.assert_array_equal(f, [-3, -2, -1, 0, 1, 2, 2, 0])
        np.testing.assert_array_equal(c, [-2, -1, -0, 1, 2, 3, 3, 0])


def test_tf1_documentation_examples_with_constant_arguments():
    """The examples of TF1's docs, sizes given as gf.constant tensors as they are there."""
    t = gf.constant([[1, 2, 3], [4, 5, 6]])
    paddings = gf.constant([[1, 1], [2, 2]])
    cube = gf.constant([[[1, 1, 1], [2, 2, 2]], [[3, 3, 3], [4, 4, 4]], [[5, 5, 5], [6, 6, 6]]])
    fetches = [gf.pad(t, paddings, "CONSTANT"), gf.pad(t, paddings, "REFLECT"),
               gf.pad(t, paddings, "SYMMETRIC"), gf.tile(t, gf.constant([1, 2])),
               gf.tile(t, [2, 1]), gf.slice(cube, [1, 0, 0], [1, 1, 3]),
               gf.slice(cube, gf.constant([1, 0, 0]), [2, 1, 3]),
               gf.round(gf.constant([0.9, 2.5, 2.3, 1.5, -4.5])),
               gf.split(t, gf.constant([1, 2]), 1)[1]]
    expected = [
        [[0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 2, 3, 0, 0], [0, 0, 4, 5, 6, 0, 0],
         [0, 0, 0, 0, 0, 0, 0]],
        [[6, 5, 4, 5, 6, 5, 4], [3, 2, 1, 2, 3, 2, 1], [6, 5, 4, 5, 6, 5, 4],
         [3, 2, 1, 2, 3, 2, 1]],
        [[2, 1, 1, 2, 3, 3, 2], [2, 1, 1, 2, 3, 3, 2], [5, 4, 4, 5, 6, 6, 5],
         [5, 4, 4, 5, 6, 6, 5]],
        [[1, 2, 3, 1, 2, 3], [4, 5, 6, 4, 5, 6]],
        [[1, 2, 3], [4, 5, 6], [1, 2, 3], [4, 5, 6]],
        [[[3, 3, 3]]],
        [[[3, 3, 3]], [[5, 5, 5]]],
        [1.0, 2.0, 2.0, 2.0, -4.0],
        [[2, 3], [5, 6]],
    ]
    for device in ("reference", "cpu"):
        with gf.Session(device=device) as s:
            for got, want in zip(s.run(fetches), expected):
                np.testing.assert_array_equal(got, want, err_msg=device)
    with pytest.raises(ShapeError, match="computed tensor[\\s\\S]*" + HERE):
        gf.pad(t, paddings * 2)


def test_split_and_unstack_return_lists_with_tf1_shapes():
    x = gf.placeholder(gf.float32, [None, 10, 4])
    parts = gf.split(x, [3, 7], axis=1)
    assert [p.shape.as_list() for p in parts] == [[None, 3, 4], [None, 7, 4]]
    assert [p.shape.as_list() for p in gf.split(x, 2, -1)] == [[None, 10, 2]] * 2
    assert [u.shape.as_list() for u in gf.unstack(x, axis=2)] == [[None, 10]] * 4
    assert gf.slice(x, [0, 1, 0], [-1, 2, -1]).shape.as_list() == [None, 2, 4]
    assert gf.tile(x, [2, 1, 3]).shape.as_list() == [None, 10, 12]
    assert gf.pad(x, [[1, 1], [0, 2], [0, 0]]).shape.as_list() == [None, 12, 4]
    mean, var = gf.nn.moments(x, [0, 1])
    assert mean.shape.as_list() == var.shape.as_list() == [4]


def test_mirror_pad_too_wide_for_the_run_time_size_raises():
    x = gf.placeholder(gf.float32, [None, 2])
    y = gf.pad(x, [[3, 0], [0, 0]], "REFLECT")
    for device in ("reference", "cpu"):
        with gf.Session(device=device) as s:
            assert s.run(y, {x: np.ones((4, 2))}).shape == (7, 2)
            with pytest.raises(ShapeError, match=HERE + r"[\s\S]*REFLECT padding \(3, 0\) "
                               r"of axis 0 needs at most 2 per side for size 3"):
                s.run(y, {x: np.ones((3, 2))})


def test_logsumexp_infinite_rows():
    x = gf.constant(np.array([[-np.inf, -np.inf], [np.inf, 1.0], [1000.0, 1000.0]]))
    for device in ("reference", "cpu"):
        with gf.Session(device=device) as s:
            v = s.run(gf.reduce_logsumexp(x, 1))
        np.testing.assert_allclose(v, [-np.inf, np.inf, 1000 + np.log(2)], err_msg=device)


# ---- errors name the op and the line that made it ------------------------------------------------
HERE = re.escape("test_ops_breadth.py") + r":\d+"


@pytest.mark.parametrize("make,error,what", [
    (lambda x, i: gf.tile(x, [2]), ShapeError, "tile"),
    (lambda x, i: gf.tile(x, [2, -1]), ShapeError, "tile"),
    (lambda x, i: gf.pad(x, [[1, 2]]), ShapeError, "pad"),
    (lambda x, i: gf.pad(x, [[0, 0], [5, 0]], "REFLECT"), ShapeError, "REFLECT"),
    (lambda x, i: gf.split(x, 2, axis=1), ShapeError, "split"),
    (lambda x, i: gf.split(x, 2, axis=0), ShapeError, "unknown size"),
    (lambda x, i: gf.split(x, [1, 1], axis=1), ShapeError, "add up to 2"),
    (lambda x, i: gf.unstack(x), ShapeError, "unstack"),
    (lambda x, i: gf.slice(x, [0, 4], [1, 3]), ShapeError, "slice"),
    (lambda x, i: gf.floor(i), DTypeError, "Floor"),
    (lambda x, i: gf.log1p(i), DTypeError, "Log1p"),
    (lambda x, i: gf.reduce_logsumexp(i), DTypeError, "reduce_logsumexp"),
    (lambda x, i: gf.reduce_prod(gf.cast(i, gf.bool_)), DTypeError, "ReduceProd"),
    (lambda x, i: gf.nn.sigmoid_cross_entropy_with_logits(labels=x[:, :2], logits=x),
     ShapeError, "sigmoid_cross_entropy_with_logits"),
    (lambda x, i: gf.nn.elu(i), DTypeError, "Elu"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_raises_naming_op_and_site(make, error, what):
    x = gf.placeholder(gf.float32, [None, 5])
    i = gf.placeholder(gf.int32, [3])
    with pytest.raises(error, match=re.escape(what) + r"[\s\S]*" + HERE + "|" + HERE
                       + r"[\s\S]*" + re.escape(what)):
        make(x, i)
