"""gf.onnx.import_model: the API, folding, errors and trainable import (oracle: numpy)."""
import re

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import FeedError, GraphflowError, UnsupportedOpError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _mlp():
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    b = RNG.standard_normal(3).astype(np.float32)
    m = _model([helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc"),
                helper.make_node("Relu", ["h"], ["y"], name="act"),
                helper.make_node("Softmax", ["h"], ["p"], axis=-1, name="sm")],
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
                helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", 3])],
               [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return m, w, b


def _expected(x, w, b):
    h = x @ w + b
    e = np.exp(h - h.max(-1, keepdims=True))
    return np.maximum(h, 0), e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("kind", ["proto", "bytes", "path"])
def test_import_sources_inputs_outputs_and_run(kind, tmp_path):
    proto, w, b = _mlp()
    source = {"proto": proto, "bytes": proto.SerializeToString()}.get(kind)
    if kind == "path":
        source = str(tmp_path / "mlp.onnx")
        onnx.save(proto, source)
    m = gf.onnx.import_model(source)
    assert isinstance(m.graph, gf.Graph)
    assert list(m.inputs) == ["x"] and list(m.outputs) == ["y", "p"]
    assert list(m.inputs["x"].shape) == [None, 4]          # symbolic dim -> None
    types = {op.type for op in m.graph.get_operations()}
    assert "Placeholder" in types and "Variable" not in types
    for batch in (2, 5):
        x = RNG.standard_normal((batch, 4)).astype(np.float32)
        got = m.run({"x": x}, device="reference")
        y, p = _expected(x, w, b)
        np.testing.assert_allclose(got["y"], y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["p"], p, rtol=1e-5, atol=1e-6)


def test_run_on_cpu_compiles_once():
    proto, w, b = _mlp()
    m = gf.onnx.import_model(proto)
    for batch in (3, 3):
        x = RNG.standard_normal((batch, 4)).astype(np.float32)
        got = m.run({"x": x}, device="cpu")
        y, p = _expected(x, w, b)
        np.testing.assert_allclose(got["y"], y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["p"], p, rtol=1e-5, atol=1e-6)
    assert m._sessions["cpu"].compile_count == 1


def test_feeds_are_checked():
    m = gf.onnx.import_model(_mlp()[0])
    with pytest.raises(FeedError, match="missing ONNX input"):
        m.run({}, device="reference")
    with pytest.raises(FeedError, match="unknown ONNX input"):
        m.run({"x": np.zeros((1, 4), np.float32), "z": 1}, device="reference")


def test_shape_arithmetic_folds_to_constants():
    # y = reshape(x, concat(shape(x)[0:1], [-1])): a typical exported flatten
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Constant", [], ["i0"], value=numpy_helper.from_array(np.array(0))),
             helper.make_node("Gather", ["s", "i0"], ["n"]),
             helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "ax"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    m = gf.onnx.import_model(_model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 12])], inits))
    types = [op.type for op in m.graph.get_operations()]
    assert "Shape" not in types and "Concat" not in types and types.count("Reshape") == 1
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(m.run({"x": x}, device="reference")["y"], x.reshape(2, 12))


def test_dynamic_batch_shape_arithmetic_reaches_reshape():
    # reshape(x, concat(shape(x)[0:1], [3, 4])) with a symbolic batch dim
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "one"], ["n"]),
             helper.make_node("Concat", ["n", "rest"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    inits = [numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((0, "zero"),
                                                                             (1, "one"))]
    inits.append(numpy_helper.from_array(np.array([3, 4], np.int64), "rest"))
    m = gf.onnx.import_model(_model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 4])], inits))
    assert list(m.outputs["y"].shape) == [None, 3, 4]
    x = RNG.standard_normal((5, 12)).astype(np.float32)
    np.testing.assert_array_equal(m.run({"x": x}, device="reference")["y"], x.reshape(5, 3, 4))


def test_run_time_shapes_are_refused_clearly():
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["y"], name="fill")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    with pytest.raises(UnsupportedOpError,
                       match=r"ConstantOfShape \(opset 17\) in node 'fill'.*run time"):
        gf.onnx.import_model(model)


def test_unknown_op_names_op_opset_and_node():
    model = _model([helper.make_node("NonMaxSuppression", ["x", "x"], ["y"], name="nms_1")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 3])])
    with pytest.raises(UnsupportedOpError) as info:
        gf.onnx.import_model(model)
    text = str(info.value)
    assert "NonMaxSuppression" in text and "opset 17" in text and "nms_1" in text
    assert isinstance(info.value, GraphflowError)


def test_unknown_attribute_value_and_dtype_are_refused():
    pool = _model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2],
                                    storage_order=1, name="pool")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    with pytest.raises(UnsupportedOpError, match="MaxPool.*'pool'.*storage_order=1"):
        gf.onnx.import_model(pool)
    odd = _model([helper.make_node("Relu", ["x"], ["y"], name="r", some_future_flag=1)],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(UnsupportedOpError, match="some_future_flag"):
        gf.onnx.import_model(odd)
    bf16 = _model([helper.make_node("Identity", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2])],
                  [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2])])
    with pytest.raises(UnsupportedOpError, match="BFLOAT16"):
        gf.onnx.import_model(bf16)


def test_malformed_files_raise_graphflow_errors(tmp_path):
    data = _mlp()[0].SerializeToString()
    with pytest.raises(GraphflowError, match="not a valid ONNX model"):
        gf.onnx.import_model(data[: len(data) // 2])
    with pytest.raises(GraphflowError, match="not a valid ONNX model"):
        gf.onnx.import_model(b"\xff\xfe definitely not protobuf")
    with pytest.raises(GraphflowError, match="cannot read ONNX model"):
        gf.onnx.import_model(str(tmp_path / "missing.onnx"))
    with pytest.raises(GraphflowError, match="path, bytes or an onnx.ModelProto"):
        gf.onnx.import_model(42)
    bad = _model([helper.make_node("Relu", ["nowhere"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(GraphflowError, match="'nowhere' is not defined"):
        gf.onnx.import_model(bad)


def test_trainable_import_makes_variables_and_gradients_flow():
    proto, w, b = _mlp()
    m = gf.onnx.import_model(proto, trainable=True)
    g = m.graph
    with g.as_default():
        variables = gf.trainable_variables()
        assert sorted(v.shape.as_list() for v in variables) == [[3], [4, 3]]
        y = m.outputs["y"]
        loss = gf.reduce_sum(y * y)
        grads = gf.gradients(loss, variables)
        x = RNG.standard_normal((5, 4)).astype(np.float32)
        with gf.Session(g, device="reference") as sess:
            sess.run(gf.global_variables_initializer())
            got = sess.run(grads, {m.inputs["x"]: x})
    h = x @ w + b
    dh = 2 * np.maximum(h, 0) * (h > 0)
    by_shape = {tuple(v.shape): gv for v, gv in zip(variables, got)}
    np.testing.assert_allclose(by_shape[(4, 3)], x.T @ dh, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(by_shape[(3,)], dh.sum(0), rtol=1e-4, atol=1e-5)
    # fine-tuning: one SGD step lowers the loss
    with g.as_default():
        step = gf.train.GradientDescentOptimizer(0.01).minimize(loss)
        with gf.Session(g, device="reference") as sess:
            sess.run(gf.global_variables_initializer())
            before = sess.run(loss, {m.inputs["x"]: x})
            sess.run(step, {m.inputs["x"]: x})
            after = sess.run(loss, {m.inputs["x"]: x})
    assert after < before
    np.testing.assert_allclose(m.run({"x": x}, device="reference")["y"], np.maximum(h, 0),
                               rtol=1e-5, atol=1e-6)


def test_conv_pool_batchnorm_against_numpy():
    x = RNG.standard_normal((2, 4, 7, 7)).astype(np.float32)
    w = RNG.standard_normal((6, 2, 3, 3)).astype(np.float32)   # groups=2
    scale, bias, mean = (RNG.standard_normal(6).astype(np.float32) for _ in range(3))
    var = RNG.uniform(0.5, 2.0, 6).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], group=2, pads=[1, 0, 2, 1],
                              strides=[2, 1], dilations=[1, 2]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"],
                              epsilon=1e-3),
             helper.make_node("MaxPool", ["n"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 0, 0])]
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w, "w"), (scale, "s"), (bias, "b"), (mean, "m"), (var, "v"))]
    m = gf.onnx.import_model(_model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 7, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits))
    # numpy: grouped, dilated, strided conv with asymmetric pads
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 1)))
    kh, kw = 3, (3 - 1) * 2 + 1
    ho, wo = (xp.shape[2] - kh) // 2 + 1, xp.shape[3] - kw + 1
    c = np.zeros((2, 6, ho, wo), np.float64)
    for o in range(6):
        g = o // 3
        for i in range(ho):
            for j in range(wo):
                patch = xp[:, 2 * g:2 * g + 2, 2 * i:2 * i + kh, j:j + kw:2]
                c[:, o, i, j] = (patch * w[o]).sum(axis=(1, 2, 3))
    n = (c - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-3) * scale[:, None, None] \
        + bias[:, None, None]
    npd = np.pad(n, ((0, 0), (0, 0), (1, 0), (1, 0)), constant_values=-np.inf)
    y = np.array([[[[npd[b, ch, i:i + 2, j:j + 2].max() for j in range(npd.shape[3] - 1)]
                    for i in range(npd.shape[2] - 1)] for ch in range(6)] for b in range(2)])
    for device in ("reference", "cpu"):
        np.testing.assert_allclose(m.run({"x": x}, device=device)["y"], y, rtol=1e-4, atol=1e-4)


def _onnxruntime_session(ort, model):
    """An onnxruntime session for `model`, which the installed onnx may have stamped with an
    IR version newer than this onnxruntime reads (onnx 1.23 writes 14, onnxruntime 1.30 reads
    up to 13): then the model is restamped with the newest the runtime names."""
    try:
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's Fail has no public type
        newest = re.search(r"max supported IR version: (\d+)", str(e))
        if newest is None or int(newest.group(1)) >= model.ir_version:
            raise
        model.ir_version = int(newest.group(1))
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_bidirectional_recurrent_layers_match_onnxruntime(kind):
    ort = pytest.importorskip("onnxruntime")
    gates = {"LSTM": 4, "GRU": 3}[kind]
    seq, batch, size, hidden = 5, 2, 3, 4
    w = RNG.standard_normal((2, gates * hidden, size)).astype(np.float32) * 0.5
    r = RNG.standard_normal((2, gates * hidden, hidden)).astype(np.float32) * 0.5
    b = RNG.standard_normal((2, 2 * gates * hidden)).astype(np.float32) * 0.5
    attrs = {"linear_before_reset": 1} if kind == "GRU" else {}
    model = _model([helper.make_node(kind, ["x", "w", "r", "b"], ["y", "y_h"], hidden_size=hidden,
                                     direction="bidirectional", **attrs)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, batch, size])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                    helper.make_tensor_value_info("y_h", TensorProto.FLOAT, None)],
                   [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (r, "r"), (b, "b"))])
    x = RNG.standard_normal((seq, batch, size)).astype(np.float32)
    expected = _onnxruntime_session(ort, model).run(None, {"x": x})
    got = gf.onnx.import_model(model).run({"x": x}, device="reference")
    np.testing.assert_allclose(got["y"], expected[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["y_h"], expected[1], rtol=1e-4, atol=1e-5)
