"""Rough edges a new user hits: each test failed on the behaviour before its fix."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import (
    DTypeError,
    FeedError,
    GraphFileError,
    GraphflowError,
    NotSupportedError,
    ShapeError,
)

# ---- out-of-range axes name the op and the user's line --------------------------------
BAD_AXES = {
    "reduce_sum": lambda x: gf.reduce_sum(x, axis=5),
    "reduce_mean": lambda x: gf.reduce_mean(x, axis=[0, -3]),
    "reduce_max": lambda x: gf.reduce_max(x, axis=2),
    "reduce_min": lambda x: gf.reduce_min(x, axis=(1, 1)),
    "argmax": lambda x: gf.argmax(x, 2),
    "argmin": lambda x: gf.argmin(x, -3),
    "softmax": lambda x: gf.nn.softmax(x, axis=2),
    "log_softmax": lambda x: gf.nn.log_softmax(x, axis=-3),
    "layer_norm": lambda x: gf.nn.layer_norm(x, gf.ones([3]), gf.zeros([3]), axis=2),
    "expand_dims": lambda x: gf.expand_dims(x, 4),
    "squeeze": lambda x: gf.squeeze(x, 2),
    "concat": lambda x: gf.concat([x, x], 2),
    "stack": lambda x: gf.stack([x, x], axis=-4),
    "gather": lambda x: gf.gather(x, [0], axis=2),
    "cumsum": lambda x: gf.cumsum(x, 2),
    "transpose": lambda x: gf.transpose(x, [0, 2]),
}


@pytest.mark.parametrize("op", sorted(BAD_AXES))
def test_out_of_range_axis_names_the_op_and_the_line(op):
    build = BAD_AXES[op]
    x = gf.placeholder(gf.float32, [2, 3], name="x")
    with pytest.raises(ShapeError) as info:
        build(x)
    message = str(info.value)
    assert message.startswith(op), message
    assert f"{__file__}:{build.__code__.co_firstlineno}" in message


def test_axis_of_a_wrong_type_names_the_op():
    x = gf.placeholder(gf.float32, [2, 3])
    with pytest.raises(ShapeError, match=rf"reduce_sum axis must be an int, got 1.5 .*{__file__}"):
        gf.reduce_sum(x, axis=1.5)


# ---- make_callable names feed_list ----------------------------------------------------
def test_missing_feed_in_make_callable_names_feed_list(sess):
    x = gf.placeholder(gf.float32, [2], name="x")
    y = gf.placeholder(gf.float32, [2], name="y")
    with pytest.raises(FeedError, match="placeholder 'y'.*add it to feed_list") as info:
        sess.make_callable(x + y, feed_list=[x])
    assert "feed_dict" not in str(info.value)
    with pytest.raises(FeedError, match="add it to feed_dict"):
        sess.run(x + y, {x: np.ones(2)})


# ---- run(options=, run_metadata=) ------------------------------------------------------
def test_run_options_and_metadata_are_refused_not_ignored(sess):
    x = gf.constant(2.0)
    assert sess.run(x, options=None, run_metadata=None) == 2.0
    # gf.RunOptions / gf.RunMetadata are accepted (tests/test_profile.py); other objects are not
    with pytest.raises(NotSupportedError, match="options=.*gf.RunOptions"):
        sess.run(x, options={"trace_level": 3})
    with pytest.raises(NotSupportedError, match="run_metadata"):
        sess.run(x, run_metadata=object())
    assert issubclass(NotSupportedError, GraphflowError)
    assert issubclass(NotSupportedError, NotImplementedError)


# ---- Saver ------------------------------------------------------------------------------
def test_saving_into_a_missing_folder_names_the_folder(sess, tmp_path):
    v = gf.Variable(gf.zeros([2]), name="v")
    sess.run(v.initializer)
    path = str(tmp_path / "missing_dir" / "model")
    with pytest.raises(GraphflowError) as info:
        gf.train.Saver().save(sess, path)
    message = str(info.value)
    assert "missing_dir" in message and "does not exist" in message
    assert ".gf-" not in message  # not an internal temporary file


def test_saver_dict_form_saves_under_the_given_names(tmp_path):
    w = gf.Variable(np.array([1.0, 2.0], np.float32), name="w")
    gf.Variable(np.array([5.0], np.float32), name="other")  # not in the dict: not saved
    path = str(tmp_path / "ckpt.npz")
    with gf.Session(device="reference") as s:
        s.run(gf.global_variables_initializer())
        assert gf.train.Saver({"weights": w}).save(s, path) == path
    with np.load(path, allow_pickle=False) as data:
        assert data.files == ["weights"]
        np.testing.assert_array_equal(data["weights"], [1.0, 2.0])
    gf.reset_default_graph()  # a rebuilt graph with another variable name
    w2 = gf.Variable(gf.zeros([2]), name="renamed")
    with gf.Session(device="reference") as s:
        gf.train.Saver({"weights": w2}).restore(s, path)
        np.testing.assert_array_equal(s.run(w2), [1.0, 2.0])


def test_saver_list_form_saves_only_those_variables(sess, tmp_path):
    a = gf.Variable(np.float32(1.0), name="a")
    b = gf.Variable(np.float32(2.0), name="b")
    sess.run(gf.global_variables_initializer())
    path = gf.train.Saver([b]).save(sess, str(tmp_path / "b.npz"))
    with np.load(path, allow_pickle=False) as data:
        assert data.files == ["b"]
    sess.run(b.assign(7.0))
    gf.train.Saver((b,)).restore(sess, path)
    assert sess.run(b) == 2.0 and sess.run(a) == 1.0


def test_saver_var_list_is_checked():
    w = gf.Variable(gf.zeros([1]), name="w")
    with pytest.raises(TypeError, match="not a gf.Variable"):
        gf.train.Saver({"w": gf.constant(1.0)})
    with pytest.raises(GraphflowError, match="two variables would be saved under the name 'w'"):
        gf.train.Saver([w, w])
    with pytest.raises(TypeError, match="takes a dict"):
        gf.train.Saver("w")


def test_restoring_another_dtype_is_refused_and_changes_nothing(tmp_path):
    v32 = gf.Variable(np.array([1.5, 2.5], np.float32), name="v")
    path = str(tmp_path / "f32.npz")
    with gf.Session(device="reference") as s:
        s.run(v32.initializer)
        gf.train.Saver().save(s, path)
    gf.reset_default_graph()
    v64 = gf.Variable(np.array([9.0, 9.0], np.float64), name="v")
    with gf.Session(device="reference") as s:
        s.run(v64.initializer)
        with pytest.raises(DTypeError, match="variable v is float32 there but float64"):
            gf.train.Saver().restore(s, path)
        np.testing.assert_array_equal(s.run(v64), [9.0, 9.0])


def test_restoring_a_missing_or_corrupt_checkpoint(sess, tmp_path):
    gf.Variable(gf.zeros([2]), name="v")
    with pytest.raises(GraphFileError, match="does not exist"):
        gf.train.Saver().restore(sess, str(tmp_path / "none.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(GraphFileError, match="cannot be read"):
        gf.train.Saver().restore(sess, str(bad))
