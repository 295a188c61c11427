"""Graph building: names, scopes, dependencies, definition sites, dtype rules, errors."""
import sys

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import DTypeError, GraphflowError, ShapeError

THIS_FILE = __file__


def line_of(marker: str) -> int:
    with open(THIS_FILE) as f:
        for i, line in enumerate(f, 1):
            if marker in line and "line_of" not in line:
                return i
    raise AssertionError(marker)


def test_unique_names_and_scopes():
    a = gf.constant(1.0, name="c")
    b = gf.constant(2.0, name="c")
    with gf.name_scope("layer"):
        c = a + b
        with gf.name_scope("inner"):
            d = c * 2.0
    with gf.name_scope("layer"):
        e = d - 1.0
    assert a.name == "c:0" and b.name == "c_1:0"
    assert c.op.name == "layer/add"
    assert d.op.name == "layer/inner/mul"
    assert e.op.name.startswith("layer_1/")
    assert gf.get_default_graph().get_tensor_by_name("layer/add:0") is c


def test_graph_as_default_and_cross_graph_error():
    g = gf.Graph()
    with g.as_default():
        a = gf.constant(1.0)
        assert gf.get_default_graph() is g
    b = gf.constant(2.0)
    assert a.graph is g and b.graph is not g
    with pytest.raises(GraphflowError, match="another graph"):
        a + b


def test_definition_site_is_the_users_line():
    x = gf.placeholder(gf.float32, [None, 3])
    y = gf.nn.relu(x)  # SITE-MARK
    assert y.op.site == f"{THIS_FILE}:{line_of('SITE-MARK')}"


def test_shape_error_names_op_shapes_and_site():
    a = gf.placeholder(gf.float32, [4, 3], name="a")
    b = gf.placeholder(gf.float32, [5, 3], name="b")
    with pytest.raises(ShapeError) as info:
        a + b  # SHAPE-MARK
    msg = str(info.value)
    assert "Add" in msg and "[4, 3]" in msg and "[5, 3]" in msg
    assert f"{THIS_FILE}:{line_of('SHAPE-MARK')}" in msg


def test_matmul_shape_error_message():
    a = gf.placeholder(gf.float32, [None, 3])
    b = gf.placeholder(gf.float32, [4, 5])
    with pytest.raises(ShapeError, match=r"inner dims differ.*3 vs 4"):
        gf.matmul(a, b)


def test_none_dims_broadcast_and_infer():
    x = gf.placeholder(gf.float32, [None, 3])
    assert (x + gf.constant(np.zeros(3, np.float32))).shape == (None, 3)
    assert gf.reduce_sum(x, axis=0).shape == (3,)
    assert gf.reshape(x, [-1]).shape == (None,)
    assert gf.reshape(gf.zeros([4, 6]), [3, -1]).shape == (3, 8)
    assert gf.matmul(gf.zeros([2, 1, 3, 4]), gf.zeros([5, 4, 7])).shape == (2, 5, 3, 7)
    assert x.shape.as_list() == [None, 3]


def test_dtype_rules():
    x = gf.placeholder(gf.float32, [3])
    i = gf.placeholder(gf.int32, [3])
    assert (2.5 - x).dtype is gf.float32
    assert (2.0 ** x).dtype is gf.float32
    assert (i + 2).dtype is gf.int32
    assert gf.constant(1.5).dtype is gf.float32
    assert gf.constant(3).dtype is gf.int32
    assert gf.constant(np.zeros(2)).dtype is gf.float64
    with pytest.raises(DTypeError, match="float32.*int32|int32.*float32"):
        x + i
    with pytest.raises(DTypeError, match="2.5"):
        i + 2.5
    with pytest.raises(DTypeError):
        gf.exp(i)
    with pytest.raises(DTypeError, match="bool"):
        gf.where(x, x, x)
    assert (i / i).dtype is gf.float64  # TF1's truediv


def test_tensor_is_not_a_python_bool_or_iterable():
    x = gf.placeholder(gf.float32, [3])
    with pytest.raises(TypeError, match="bool"):
        bool(x > 0)
    with pytest.raises(TypeError, match="iterated"):
        list(x)


def test_numpy_on_the_left_defers_to_tensor():
    x = gf.placeholder(gf.float32, [3])
    y = np.ones(3, np.float32) + x
    assert isinstance(y, gf.Tensor) and y.shape == (3,)


def test_slicing_shapes():
    x = gf.placeholder(gf.float32, [4, 5, 6])
    assert x[1].shape == (5, 6)
    assert x[-1, ::-1].shape == (5, 6)
    assert x[..., 0].shape == (4, 5)
    assert x[None, :, 2:5:2].shape == (1, 4, 2, 6)
    assert x[:, 10:].shape == (4, 0, 6)
    with pytest.raises(ShapeError, match="out of bounds"):
        x[4]
    with pytest.raises(ShapeError, match="too many indices"):
        x[0, 0, 0, 0]
    with pytest.raises(TypeError, match="gather"):
        x[x]


def test_control_dependencies_and_group():
    a = gf.constant(1.0)
    with gf.control_dependencies([a]):
        b = gf.constant(2.0)
    assert b.op.control_inputs == [a.op]
    g = gf.group(a, b)
    assert set(g.control_inputs) == {a.op, b.op} and not g.outputs


def test_finalize_blocks_new_ops():
    gf.constant(1.0)
    gf.get_default_graph().finalize()
    with pytest.raises(GraphflowError, match="finalized"):
        gf.constant(2.0)


def test_placeholder_needs_rank():
    with pytest.raises(ShapeError, match="rank"):
        gf.placeholder(gf.float32, None)
    with pytest.raises(ShapeError, match="bad dim"):
        gf.placeholder(gf.float32, [2, -3])


def test_reshape_and_reduction_errors():
    with pytest.raises(ShapeError, match="cannot reshape"):
        gf.reshape(gf.zeros([4, 6]), [5, 5])
    with pytest.raises(ShapeError, match="out of range"):
        gf.reduce_sum(gf.zeros([4, 6]), axis=2)
    with pytest.raises(ShapeError, match="repeats"):
        gf.reduce_sum(gf.zeros([4, 6]), axis=[1, -1])


def test_networkx_view_and_dot():
    x = gf.placeholder(gf.float32, [2])
    y = gf.exp(x) + x
    nxg = gf.get_default_graph().as_networkx()
    assert nxg.has_edge(x.op, y.op)
    dot = gf.get_default_graph().to_dot()
    assert dot.startswith("digraph") and '"add' in dot


def test_deep_graph_builds_and_runs_without_recursion(sess):
    x = gf.placeholder(gf.float32, [])
    y = x
    for _ in range(sys.getrecursionlimit() + 500):
        y = y + 1.0
    assert sess.run(y, {x: 0.0}) == pytest.approx(sys.getrecursionlimit() + 500)
