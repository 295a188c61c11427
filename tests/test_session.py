"""Session: feeds, fetch structures, run semantics, plan caching, state, errors."""
import collections
import warnings

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import DeviceError, FeedError, GraphflowError
from graphflow.session import GraphGrowthWarning


def test_nested_fetches_keep_their_structure(sess):
    a, b = gf.constant(1.0), gf.constant(2.0)
    pair = collections.namedtuple("pair", "first second")
    out = sess.run({"x": [a, (b, a + b)], "y": pair(a, gf.no_op()), "z": "Const_1:0"})
    assert out["x"][0] == 1.0 and isinstance(out["x"][1], tuple)
    assert out["x"][1][1] == 3.0
    assert isinstance(out["y"], pair) and out["y"].second is None
    assert out["z"] == 2.0


def test_feeds_convert_same_kind(sess):
    x = gf.placeholder(gf.float32, [None, 2], name="x")
    i = gf.placeholder(gf.int32, [2], name="i")
    out = sess.run(x * 2.0, {x: np.ones((3, 2), np.float64)})
    assert out.dtype == np.float32 and out.shape == (3, 2)
    assert sess.run(x, {x: [[1, 2]]}).dtype == np.float32  # int -> float is fine
    with pytest.raises(FeedError, match=r"placeholder 'i'.*float64.*int32"):
        sess.run(i, {i: np.array([1.5, 2.0])})
    with pytest.raises(FeedError, match=r"placeholder 'x'.*dtype <U"):
        sess.run(x, {x: [["a", "b"]]})


def test_feed_shape_errors_name_the_placeholder(sess):
    x = gf.placeholder(gf.float32, [None, 784], name="images")
    with pytest.raises(FeedError, match=r"placeholder 'images'.*\[32, 785\].*\[None, 784\]"):
        sess.run(x, {x: np.zeros((32, 785))})
    with pytest.raises(FeedError, match=r"placeholder 'images'.*\[784\]"):
        sess.run(x, {x: np.zeros(784)})


def test_missing_and_unknown_feeds(sess):
    x = gf.placeholder(gf.float32, [2], name="x")
    y = x * 3.0
    with pytest.raises(FeedError, match=r"placeholder 'x' \(defined at .*test_session.py:\d+\)"
                                         r" must be fed"):
        sess.run(y)
    with pytest.raises(FeedError, match="not a tensor"):
        sess.run(y, {x: [1, 2], 5: 3})
    with pytest.raises(FeedError, match="names no tensor"):
        sess.run(y, {x: [1, 2], "nope:0": 3})
    other = gf.Graph()
    with other.as_default():
        z = gf.placeholder(gf.float32, [2])
    with pytest.raises(FeedError, match="another graph"):
        sess.run(y, {x: [1, 2], z: [1, 2]})


def test_a_bad_feed_runs_nothing(sess):
    v = gf.Variable(1.0)
    x = gf.placeholder(gf.float32, [2])
    step = v.assign_add(gf.reduce_sum(x))
    sess.run(v.initializer)
    with pytest.raises(FeedError):
        sess.run(step, {x: np.zeros(3)})
    assert sess.run(v) == 1.0


def test_feeding_an_intermediate_tensor(sess):
    x = gf.placeholder(gf.float32, [])
    y = x * 2.0
    z = y + 1.0
    assert sess.run(z, {y: 10.0}) == 11.0  # x need not be fed


def test_runs_read_variables_as_of_the_start():
    v = gf.Variable(1.0, name="v")
    inc = v.assign_add(1.0)
    doubled = v * 2.0
    with gf.Session() as s:
        s.run(v.initializer)
        _, before, value = s.run([inc, doubled, v])
        assert before == 2.0 and value == 1.0
        assert s.run(v) == 2.0


def test_two_sessions_do_not_share_state():
    v = gf.Variable(5.0)
    inc = v.assign_add(1.0)
    s1, s2 = gf.Session(), gf.Session()
    s1.run(v.initializer)
    s2.run(v.initializer)
    s1.run(inc)
    s1.run(inc)
    assert s1.run(v) == 7.0 and s2.run(v) == 5.0


def test_uninitialized_variable_error(sess):
    v = gf.Variable(np.zeros(3, np.float32), name="weights")
    with pytest.raises(GraphflowError, match=r"variable 'weights' .* before it is initialized"):
        sess.run(v * 2.0)


def test_plan_is_compiled_once_per_fetch_and_feed_set(sess):
    x = gf.placeholder(gf.float32, [None])
    y = gf.reduce_sum(x * x)
    for n in (1, 5, 9, 5):
        sess.run(y, {x: np.ones(n)})
    assert sess.compile_count == 1
    sess.run([y, x], {x: np.ones(2)})
    assert sess.compile_count == 2


def test_make_callable(sess):
    x = gf.placeholder(gf.float32, [None], name="x")
    y = gf.placeholder(gf.float32, [None], name="y")
    f = sess.make_callable({"sum": x + y, "prod": [x * y]}, feed_list=[x, y])
    out = f(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    np.testing.assert_array_equal(out["sum"], [4, 6])
    np.testing.assert_array_equal(out["prod"][0], [3, 8])
    assert f.source is None and f.kernels == []
    assert f.stats["flops"] >= 4 and f.stats["bytes_moved"] > 0
    assert {"kernels", "launches", "bytes_moved", "flops", "peak_memory_bytes"} <= set(f.stats)
    with pytest.raises(DeviceError, match="reference"):
        f.dump("/tmp/unused")
    with pytest.raises(FeedError, match="takes 2 feed values"):
        f(np.ones(2))
    with pytest.raises(FeedError, match="placeholder 'y'"):
        f(np.ones(2), np.ones((2, 2)))


def test_graph_growth_warning():
    x = gf.placeholder(gf.float32, [])
    with gf.Session() as s, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(8):
            s.run(x * 2.0, {x: 1.0})  # the classic mistake: a new op every step
    assert any(issubclass(w.category, GraphGrowthWarning) and "inside the training loop"
               in str(w.message) for w in caught)


def test_no_growth_warning_for_a_fixed_graph():
    x = gf.placeholder(gf.float32, [])
    y = x * 2.0
    with gf.Session() as s, warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(10):
            s.run(y, {x: 1.0})


def test_devices(monkeypatch):
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        gf.Session(device="tpu")
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "reference")
    assert gf.Session().device == "reference"
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    assert gf.Session().device == "cpu"
    monkeypatch.delenv("GRAPHFLOW_DEVICE")
    assert gf.Session().device in ("cuda", "cpu")  # cuda only where PyCUDA and a GPU work


def test_closed_session_and_default_session():
    x = gf.constant(3.0)
    with gf.Session(device="reference") as s:
        assert x.eval() == 3.0
        assert gf.get_default_session() is s
    with pytest.raises(GraphflowError, match="closed"):
        s.run(x)


def test_fetching_an_operation_returns_none(sess):
    v = gf.Variable(0.0)
    assert sess.run(gf.global_variables_initializer()) is None
    assert sess.run([v.assign(3.0).op, v]) == [None, 0.0]
