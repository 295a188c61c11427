"""Graph passes on the lowered graph: each pass alone and the pipeline, against the numpy
reference; the verifier between passes; definition sites kept through every rewrite."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import GraphflowError
from graphflow.passes import PASSES, PIPELINE, LOp, VerifyError, lower, run_passes, verify


def lowered(fetches, feeds=()):
    graph = gf.get_default_graph()
    leaves = fetches if isinstance(fetches, list) else [fetches]
    targets = [x.op if isinstance(x, gf.Tensor) else x for x in leaves]
    order = graph.subgraph_order(targets, set(feeds))
    return lower(order, leaves, feeds)


def types(g):
    return [op.type for op in g.ops]


def run_both(fetches, feed, optimize):
    with gf.Session(device="reference") as ref:
        ref.run(gf.global_variables_initializer())
        want = ref.run(fetches, feed)
    with gf.Session(device="cpu", optimize=optimize) as s:
        s.run(gf.global_variables_initializer())
        got = s.run(fetches, feed)
    return want, got


def test_cse_merges_equal_subexpressions_and_constants_by_value():
    x = gf.placeholder(gf.float32, [None, 3])
    a = gf.exp(x * 2.0) + gf.exp(x * 2.0)
    g = run_passes(lowered(a, [x]), ["cse"], check=True)
    assert types(g).count("Exp") == 1 and types(g).count("Mul") == 1 and types(g).count("Const") == 1
    feed = {x: np.arange(6, dtype=np.float32).reshape(2, 3) / 7}
    want, got = run_both(a, feed, ["cse"])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_cse_never_merges_stateful_ops():
    x = gf.placeholder(gf.float32, [4, 4])
    a = gf.nn.dropout(x, 0.5, seed=3)
    b = gf.nn.dropout(x, 0.5, seed=3)
    v = gf.Variable(np.zeros(2, np.float32))
    u1, u2 = v.assign_add(np.ones(2, np.float32)), v.assign_add(np.ones(2, np.float32))
    g = run_passes(lowered([a + b, u1, u2], [x]), ["cse"], check=True)
    random_ops = [op for op in g.ops if op.op_def.stateful and op.type not in ("Placeholder", "Variable")]
    assert len(random_ops) == 4  # two dropout draws, two assigns


def test_fold_computes_constant_chains_once():
    c = gf.constant(0.9)
    chain = gf.sqrt(1.0 - c * c) / (1.0 - c)
    x = gf.placeholder(gf.float32, [5])
    y = x * chain
    g = run_passes(lowered(y, [x]), ["fold", "dce"], check=True)
    assert sorted(types(g)) == ["Const", "Mul", "Placeholder"]
    want, got = run_both(y, {x: np.arange(5, dtype=np.float32)}, ["fold", "dce"])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_fold_does_not_blow_up_small_constants():
    big = gf.broadcast_to(gf.constant(2.0), [1000, 1000])
    g = run_passes(lowered(big), ["fold"], check=True)
    assert "BroadcastTo" in types(g)


@pytest.mark.parametrize("build, gone", [
    (lambda x: x * 1.0, "Mul"), (lambda x: 1.0 * x, "Mul"), (lambda x: x + 0.0, "Add"),
    (lambda x: x - 0.0, "Sub"), (lambda x: x / 1.0, "Div"), (lambda x: gf.negative(gf.negative(x)), "Neg"),
    (lambda x: gf.cast(x, gf.float32), "Cast"), (lambda x: x ** 1.0, "Pow"),
    (lambda x: gf.transpose(gf.transpose(x, [1, 0]), [1, 0]), "Transpose"),
    (lambda x: gf.reshape(gf.reshape(x, [6]), [2, 3]), "Reshape"),
])
def test_simplify_rules_are_exact(build, gone):
    x = gf.placeholder(gf.float32, [2, 3])
    y = gf.exp(build(x))  # something left to compute
    g = run_passes(lowered(y, [x]), ["simplify", "dce"], check=True)
    assert gone not in types(g)
    feed = {x: np.array([[1, -2, 3], [0.5, -0.25, 7]], np.float32)}
    want, got = run_both(y, feed, ["simplify", "dce"])
    np.testing.assert_allclose(got, want, rtol=1e-6)  # expf on the host vs numpy's exp


def test_simplify_turns_relu_gradient_zeros_into_a_literal():
    x = gf.placeholder(gf.float32, [None, 8])
    g_x = gf.gradients(gf.reduce_sum(gf.nn.relu(x) * 2.0), x)[0]
    g = run_passes(lowered(g_x, [x]), PIPELINE, check=True)
    assert "FillLike" not in types(g)
    with gf.Session(device="cpu") as s:
        f = s.make_callable(g_x, [x])
        value = f(np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 8))
        assert not any(k.name.startswith("fill") for k in f.kernels)
    np.testing.assert_array_equal(value, 2.0 * (np.linspace(-1, 1, 24).reshape(3, 8) > 0))


def test_every_lowered_op_keeps_the_users_definition_site():
    x = gf.placeholder(gf.float32, [None, 4])
    w = gf.Variable(np.ones((4, 2), np.float32))
    loss = gf.reduce_mean(gf.nn.relu(x @ w + 1.0) * 1.0)
    train = gf.train.AdamOptimizer(0.1).minimize(loss)
    g = lowered([loss, train], [x])
    for name in PIPELINE:
        g = PASSES[name](g)
        verify(g, after=name)
        for op in g.ops:
            assert op.origins and all(o.site != "<unknown>" for o in op.origins), op
            assert any(__file__ in o.site for o in op.origins) or op.type in ("Placeholder",), op


def test_verifier_catches_a_broken_pass():
    x = gf.placeholder(gf.float32, [3])
    g = lowered(gf.exp(x), [x])
    bad = next(op for op in g.ops if op.type == "Exp")
    bad.outputs[0].shape = (4,)  # a pass that got a shape wrong
    with pytest.raises(VerifyError, match="after pass 'broken'.*Exp"):
        verify(g, after="broken")
    g = lowered(gf.exp(x), [x])
    g.ops.reverse()  # a pass that broke the order
    with pytest.raises(VerifyError, match="comes before its input"):
        verify(g)
    g = lowered(gf.exp(x), [x])
    g.ops = [op for op in g.ops if op.type != "Exp"]  # a pass that dropped a fetch
    with pytest.raises(VerifyError, match="no longer computed"):
        verify(g)
    assert isinstance(LOp, type)


def test_unknown_pass_name_is_refused_where_given():
    with pytest.raises(GraphflowError, match="unknown pass 'fuse'"):
        gf.Session(device="cpu", optimize=["cse", "fuse"])


def test_dce_keeps_effects_and_fetches_only():
    x = gf.placeholder(gf.float32, [3])
    v = gf.Variable(np.zeros(3, np.float32))
    unused = gf.exp(x) * 5.0  # noqa: F841 - built, never fetched
    upd = v.assign(x * 2.0)
    g = run_passes(lowered([upd.op], [x]), ["dce"], check=True)
    assert "Exp" not in types(g) and "Assign" in types(g)


@pytest.mark.parametrize("cuts, tiles", [([(0, 2), (2, 5), (5, 7)], True), ([(0, 2), (3, 7)], False),
                                         ([(0, 4), (2, 7)], False)])
def test_simplify_turns_slice_gradients_that_tile_into_a_concat(cuts, tiles):
    """Gradients of slices that tile a tensor (along one axis, no gap, no overlap) sum to
    their concatenation; a gap or an overlap keeps the sum."""
    x = gf.placeholder(gf.float32, [3, 7])
    pieces = [gf.sin(x[:, a:b]) * float(i + 1) for i, (a, b) in enumerate(cuts)]
    loss = gf.add_n([gf.reduce_sum(p * p) for p in pieces])
    g_x = gf.gradients(loss, x)[0]
    g = run_passes(lowered(g_x, [x]), ["simplify", "dce"], check=True)
    assert ("Concat" in types(g)) == tiles and ("StridedSliceGrad" not in types(g)) == tiles
    feed = {x: np.linspace(-1, 1, 21, dtype=np.float32).reshape(3, 7)}
    want, got = run_both(g_x, feed, ["simplify", "dce"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
