"""Random graphs: `cpu` with every pass and fusion on against the numpy `reference`,
forward values and gradients (hypothesis draws the graphs; each example compiles once)."""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import graphflow as gf  # noqa: E402

SIZES = [(5, 6), (700, 9)]  # (batch, width): the second spans several tiles, and its rows are
# long enough that the cpu walks broadcasting kernels by rows
UNARY = [gf.tanh, gf.sigmoid, gf.nn.relu, gf.square, gf.abs, gf.negative,
         lambda t: gf.exp(gf.tanh(t)), lambda t: gf.sqrt(gf.abs(t) + 1.0), gf.sin]
BINARY = [gf.add, gf.subtract, gf.multiply, gf.maximum, lambda a, b: a / (gf.abs(b) + 1.0)]
KINDS = ["bn", "n", "1n", "b1", "s"]


def shape_of(kind: str, n: int) -> list:
    return {"bn": [None, n], "n": [n], "1n": [1, n], "b1": [None, 1], "s": []}[kind]


def _value(kind, rng, batch, n):
    shape = [batch if d is None else d for d in shape_of(kind, n)]
    return rng.standard_normal(shape).astype(np.float32)



def _broadcastable(a, b) -> bool:
    """The run-time shapes (None is the batch) broadcast."""
    try:
        np.broadcast_shapes(*[[2 if d is None else d for d in t.shape] for t in (a, b)])
    except ValueError:
        return False
    return True


@st.composite
def programs(draw):
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=2, max_size=3))
    steps = draw(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 30), st.integers(0, 30)),
                          min_size=2, max_size=9))
    return ["bn", *kinds], steps


def build(kinds, steps, w, n):
    xs = [gf.placeholder(gf.float32, shape_of(k, n), name=f"in{i}") for i, k in enumerate(kinds)]
    pool = list(xs)
    for kind, i, j in steps:
        a, b = pool[i % len(pool)], pool[j % len(pool)]
        if kind <= 2:
            t = UNARY[(i + j) % len(UNARY)](a)
        elif kind <= 5 and _broadcastable(a, b):
            t = BINARY[(i * 7 + j) % len(BINARY)](a, b)
        elif kind == 6 and len(a.shape) == 2 and a.shape[1] == n:
            t = gf.matmul(a, w, transpose_b=bool(j % 2))
        elif kind == 7 and len(a.shape) == 2:
            t = [gf.nn.softmax(a), gf.reduce_max(a, axis=1, keepdims=True),
                 gf.reduce_mean(a, axis=0), gf.nn.log_softmax(a)][j % 4]
        elif kind == 8 and len(a.shape) == 2 and a.shape[1] == n:
            t = gf.nn.layer_norm(a, gf.constant(np.linspace(0.5, 1.5, n, dtype=np.float32)),
                                 gf.constant(np.zeros(n, np.float32)))
        else:
            t = gf.transpose(a) if len(a.shape) == 2 else a * 2.0
        pool.append(t)
    outs = pool[len(xs):]
    loss = gf.add_n([gf.reduce_sum(o * o) * 0.01 + gf.reduce_mean(o) for o in outs])
    return xs, loss, gf.gradients(loss, xs, unconnected_gradients="zero")


@pytest.mark.parametrize("batch,n", SIZES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_graphs_cpu_optimized_matches_reference(batch, n, program):
    kinds, steps = program
    rng = np.random.default_rng(len(steps) * 31 + len(kinds))
    graph = gf.Graph()
    with graph.as_default():
        w = gf.constant(rng.standard_normal((n, n)).astype(np.float32) * 0.5)
        xs, loss, grads = build(kinds, steps, w, n)
    feed = {x: _value(k, rng, batch, n) for x, k in zip(xs, kinds)}
    with gf.Session(graph, device="reference") as ref:
        want = ref.run([loss, grads], feed)
    with gf.Session(graph, device="cpu") as cpu:
        got = cpu.run([loss, grads], feed)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-4, atol=1e-4)
    for g, r in zip(got[1], want[1]):
        np.testing.assert_allclose(g, r, rtol=2e-3, atol=2e-4)
