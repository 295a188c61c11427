"""Every op builder's build-time error names the op and the user's file:line.

Shape rules got this from Graph.create_op; the checks a builder makes before its op exists
(arguments, dims, slice keys) did not: `gf.reshape(x, [None, 2])`, `gf.broadcast_to(x,
[None, 3])`, `x[::0]`, `gf.concat([], 0)`, a bad padding string, a dropout rate... raised
without the op, the line, or both. Each case above the last group failed that way before."""
import inspect

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import DTypeError, ShapeError

X = gf.float32

# name -> (build(x, xi, b, x4, xd), error type, the op name the message must carry)
CASES = {
    "reshape_none_dim": (lambda x, xi, b, x4, xd: gf.reshape(x, [None, 2]), ShapeError, "reshape"),
    "reshape_negative_dim": (lambda x, xi, b, x4, xd: gf.reshape(x, [-2, 3]), ShapeError, "reshape"),
    "reshape_float_dim": (lambda x, xi, b, x4, xd: gf.reshape(x, [2, 1.5]), ShapeError, "reshape"),
    "broadcast_to_unknown": (lambda x, xi, b, x4, xd: gf.broadcast_to(x, [None, 3]), ShapeError,
                             "broadcast_to"),
    "broadcast_to_bad_dim": (lambda x, xi, b, x4, xd: gf.broadcast_to(x, [2, -3]), ShapeError,
                             "broadcast_to"),
    "slice_step_zero": (lambda x, xi, b, x4, xd: x[::0], ShapeError, "strided_slice"),
    "slice_step_zero_2d": (lambda x, xi, b, x4, xd: x[:, 1:3:0], ShapeError, "strided_slice"),
    "slice_too_many": (lambda x, xi, b, x4, xd: x[0, 0, 0], ShapeError, "strided_slice"),
    "slice_two_ellipses": (lambda x, xi, b, x4, xd: x[..., ...], ShapeError, "strided_slice"),
    "slice_bad_index": (lambda x, xi, b, x4, xd: x["a"], TypeError, "strided_slice"),
    "slice_float_bound": (lambda x, xi, b, x4, xd: x[0.5:], TypeError, "strided_slice"),
    "concat_nothing": (lambda x, xi, b, x4, xd: gf.concat([], 0), ShapeError, "concat"),
    "stack_nothing": (lambda x, xi, b, x4, xd: gf.stack([]), ShapeError, "stack"),
    "one_hot_depth": (lambda x, xi, b, x4, xd: gf.one_hot(xi, -1), ShapeError, "one_hot"),
    "cumsum_bool": (lambda x, xi, b, x4, xd: gf.cumsum(b), DTypeError, "cumsum"),
    "floordiv_float": (lambda x, xi, b, x4, xd: gf.floordiv(x, x), DTypeError, "floordiv"),
    "pad_mode": (lambda x, xi, b, x4, xd: gf.pad(x, [[1, 1], [1, 1]], mode="WRAP"), ValueError,
                 "pad"),
    "dropout_rate": (lambda x, xi, b, x4, xd: gf.nn.dropout(x, 1.5), ValueError, "dropout"),
    "conv2d_padding": (lambda x, xi, b, x4, xd: gf.nn.conv2d(x4, gf.ones([3, 3, 3, 4]), 1, "FULL"),
                       ShapeError, "conv2d"),
    "conv2d_stride": (lambda x, xi, b, x4, xd: gf.nn.conv2d(x4, gf.ones([3, 3, 3, 4]), 0, "SAME"),
                      ShapeError, "conv2d"),
    "max_pool_ksize": (lambda x, xi, b, x4, xd: gf.nn.max_pool2d(x4, 0, 2, "SAME"), ShapeError,
                       "max_pool2d"),
    "avg_pool_padding": (lambda x, xi, b, x4, xd: gf.nn.avg_pool2d(x4, 2, 2, "same-ish"),
                         ShapeError, "avg_pool2d"),
    "random_shape": (lambda x, xi, b, x4, xd: gf.random_normal([-1, 2]), ShapeError,
                     "random_normal"),
    "constant_shape": (lambda x, xi, b, x4, xd: gf.constant([1, 2, 3], shape=[2, 2]), ShapeError,
                       "constant"),
    "zeros_shape": (lambda x, xi, b, x4, xd: gf.zeros([-1]), ShapeError, "zeros"),
    "placeholder_no_shape": (lambda x, xi, b, x4, xd: gf.placeholder(gf.float32), ShapeError,
                             "placeholder"),
    "cast_unknown_dtype": (lambda x, xi, b, x4, xd: gf.cast(x, "float7"), DTypeError, "cast"),
    "leaky_relu_bool": (lambda x, xi, b, x4, xd: gf.nn.leaky_relu(b), DTypeError, "leaky_relu"),
    "logsumexp_axis": (lambda x, xi, b, x4, xd: gf.reduce_logsumexp(x, axis=3), ShapeError,
                       "reduce_logsumexp"),
    "moments_axis": (lambda x, xi, b, x4, xd: gf.nn.moments(x, axes=[4]), ShapeError, "moments"),
    # these named the op and the line before too (shape rules, dtype matching): they still do
    "mixed_dtypes_operator": (lambda x, xi, b, x4, xd: x + xd, DTypeError, "add"),
    "matmul_dtypes": (lambda x, xi, b, x4, xd: gf.matmul(x, gf.transpose(xd)), DTypeError,
                      "matmul"),
    "reshape_sizes": (lambda x, xi, b, x4, xd: gf.reshape(x, [4, 2]), ShapeError, "Reshape"),
    "reshape_inferred": (lambda x, xi, b, x4, xd: gf.reshape(x, [4, -1]), ShapeError, "Reshape"),
    "broadcast_to_shapes": (lambda x, xi, b, x4, xd: gf.broadcast_to(x, [4, 5]), ShapeError,
                            "BroadcastTo"),
    "slice_index_out_of_range": (lambda x, xi, b, x4, xd: x[5], ShapeError, "StridedSlice"),
}


def _inputs():
    return (gf.placeholder(X, [2, 3], name="x"), gf.placeholder(gf.int32, [2, 3], name="xi"),
            gf.placeholder(gf.bool_, [2, 3], name="b"), gf.placeholder(X, [1, 4, 4, 3], name="x4"),
            gf.placeholder(gf.float64, [2, 3], name="xd"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_build_error_names_the_op_and_the_users_line(case):
    build, error, op = CASES[case]
    inputs = _inputs()
    with pytest.raises(error) as info:
        build(*inputs)
    message = str(info.value)
    line = f"{__file__}:{build.__code__.co_firstlineno}"
    assert line in message, message
    assert message.count(line) == 1, message  # said once
    assert message.startswith(op), message


def test_the_outermost_builder_names_itself():
    """moments calls reduce_mean, stack calls concat: the user wrote the outer call."""
    x = _inputs()[0]
    with pytest.raises(ShapeError, match=r"^moments\b"):
        gf.nn.moments(x, axes=[0, 0])
    with pytest.raises(ShapeError, match=r"^stack\b"):
        gf.stack([x, x], axis=7)
    # nothing is left over from a failed nested call: the next builder names itself
    with pytest.raises(ShapeError, match=r"^reshape \(defined at "):
        gf.reshape(x, [None])


def test_an_error_inside_a_users_function_gives_the_line_that_called_graphflow():
    def layer(t):
        return gf.broadcast_to(t, [None, 3])  # this line, not the caller's

    x = _inputs()[0]
    with pytest.raises(ShapeError) as info:
        layer(x)
    assert f"{__file__}:{layer.__code__.co_firstlineno + 1}" in str(info.value)


def test_builders_keep_their_signature_docstring_and_results():
    assert list(inspect.signature(gf.reshape).parameters) == ["x", "shape", "name"]
    assert list(inspect.signature(gf.add).parameters) == ["x", "y", "name"]
    assert gf.reshape.__name__ == "reshape" and "-1" in gf.reshape.__doc__
    assert gf.sqrt.__name__ == "sqrt" and gf.sqrt.__doc__
    x = gf.constant(np.arange(6.0).reshape(2, 3))
    with gf.Session(device="reference") as s:
        np.testing.assert_array_equal(s.run(gf.reshape(x, [3, 2])[::2]),
                                      np.arange(6.0).reshape(3, 2)[::2])
