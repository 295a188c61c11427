"""ONNX models that feed static values (axes, pads, ...) as graph inputs import as a
SpecializedModel, built per fed value; and the converters added with the small dtypes.
Oracle: hand-written numpy."""
import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import FeedError, UnsupportedOpError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(0)
F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes, inputs, outputs, initializers=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _reduce_sum_axes_input():
    return _model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
                  [_vi("x", F, [3, 4, 5]), _vi("axes", I64, [1])], [_vi("y", F, None)])


@pytest.mark.parametrize("device", ["reference", "cpu"])
def test_axes_fed_as_an_input_specialize_per_value(device):
    m = gf.onnx.import_model(_reduce_sum_axes_input())
    assert isinstance(m, gf.onnx.SpecializedModel)
    assert list(m.inputs) == ["x", "axes"] and m.value_inputs == ["axes"]
    assert list(m.outputs) == ["y"]
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    for axis in (1, -1, 1):
        got = m.run({"x": x, "axes": np.array([axis])}, device=device)["y"]
        np.testing.assert_allclose(got, x.sum(axis), rtol=1e-5, atol=1e-6)
    assert len(m._models) == 2  # one graph per distinct value
    assert m.outputs["y"] is not None


def test_values_computed_from_inputs_specialize_too():
    # pads = Concat(p, p) computed from the input p: the whole chain folds per value
    m = _model([helper.make_node("Concat", ["p", "p"], ["pads"], axis=0),
                helper.make_node("Pad", ["x", "pads"], ["y"])],
               [_vi("x", F, [2, 3]), _vi("p", I64, [2])], [_vi("y", F, None)])
    m = gf.onnx.import_model(m)
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    got = m.run({"x": x, "p": np.array([1, 0])}, device="cpu")["y"]
    np.testing.assert_array_equal(got, np.pad(x, [(1, 1), (0, 0)]))


def test_specialized_feeds_are_checked_and_trainable_is_refused():
    m = gf.onnx.import_model(_reduce_sum_axes_input())
    x = np.ones((3, 4, 5), np.float32)
    with pytest.raises(FeedError, match="'axes' expects shape"):
        m.run({"x": x, "axes": np.array([1, 2])})
    with pytest.raises(FeedError, match="'axes' expects int64"):
        m.run({"x": x, "axes": np.array([1.5])})
    with pytest.raises(FeedError, match="missing"):
        m.run({"x": x})
    with pytest.raises(UnsupportedOpError, match="trainable"):
        gf.onnx.import_model(_reduce_sum_axes_input(), trainable=True)


def test_a_missing_op_after_a_value_input_is_refused_at_import():
    m = _model([helper.make_node("ReduceSum", ["x", "axes"], ["s"]),
                helper.make_node("NoSuchOp", ["s"], ["y"])],
               [_vi("x", F, [3, 4]), _vi("axes", I64, [1])], [_vi("y", F, None)])
    with pytest.raises(UnsupportedOpError, match="no converter for NoSuchOp"):
        gf.onnx.import_model(m)


def _run_one(node, feeds: dict, elems: dict, device="cpu"):
    inputs = [_vi(k, elems[k], list(v.shape)) for k, v in feeds.items()]
    m = gf.onnx.import_model(_model([node], inputs, [_vi("y", TensorProto.UNDEFINED, None)],
                                    opset=21))
    return m.run(feeds, device=device)["y"]


def test_quantize_and_dequantize_linear_per_axis():
    x = (RNG.standard_normal((2, 3)) * 50).astype(np.float32)
    scale = np.array([0.5, 1.0, 2.0], np.float32)
    zp = np.array([0, 10, 250], np.uint8)
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], axis=1)
    got = _run_one(node, {"x": x, "s": scale, "z": zp},
                   {"x": F, "s": F, "z": TensorProto.UINT8})
    want = np.clip(np.rint(x / scale).astype(np.int32) + zp, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(got, want)
    node = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)
    got = _run_one(node, {"q": want, "s": scale, "z": zp},
                   {"q": TensorProto.UINT8, "s": F, "z": TensorProto.UINT8})
    np.testing.assert_allclose(got, (want.astype(np.float32) - zp) * scale)


def test_gather_nd_scatter_nd_and_float_mod():
    data = RNG.standard_normal((3, 4, 2)).astype(np.float32)
    idx = np.array([[2, 1], [0, -1]], np.int64)
    got = _run_one(helper.make_node("GatherND", ["d", "i"], ["y"]), {"d": data, "i": idx},
                   {"d": F, "i": I64})
    np.testing.assert_array_equal(got, np.stack([data[2, 1], data[0, -1]]))
    upd = RNG.standard_normal((2, 2)).astype(np.float32)
    for reduction in ("none", "add", "max"):
        node = helper.make_node("ScatterND", ["d", "i", "u"], ["y"], reduction=reduction)
        got = _run_one(node, {"d": data, "i": idx, "u": upd}, {"d": F, "i": I64, "u": F})
        want = data.copy()
        for (a, b), u in zip(idx, upd):
            want[a, b] = {"none": u, "add": want[a, b] + u,
                          "max": np.maximum(want[a, b], u)}[reduction]
        np.testing.assert_allclose(got, want, rtol=1e-6)
    a = np.array([5.5, -5.5, 5.5, -0.0, 3.0], np.float32)
    b = np.array([2.0, 2.0, -2.0, 1.0, np.inf], np.float32)
    for fmod, want in ((0, np.mod(a, b)), (1, np.fmod(a, b))):
        got = _run_one(helper.make_node("Mod", ["a", "b"], ["y"], fmod=fmod), {"a": a, "b": b},
                       {"a": F, "b": F})
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))


def test_bitshift_and_cumprod():
    x = np.array([16, 4, 1], np.uint8)
    n = np.array([1, 2, 3], np.uint8)
    u8 = TensorProto.UINT8
    for direction, want in (("LEFT", x << n), ("RIGHT", x >> n)):
        node = helper.make_node("BitShift", ["x", "n"], ["y"], direction=direction)
        np.testing.assert_array_equal(_run_one(node, {"x": x, "n": n}, {"x": u8, "n": u8}), want)
    v = RNG.standard_normal((3, 4)).astype(np.float32)
    axis = numpy_helper.from_array(np.array(1, np.int64), "axis")
    m = gf.onnx.import_model(_model(
        [helper.make_node("CumProd", ["v", "axis"], ["y"], exclusive=1, reverse=1)],
        [_vi("v", F, [3, 4])], [_vi("y", F, None)], [axis], opset=26))
    want = np.concatenate([np.cumprod(v[:, :0:-1], 1)[:, ::-1], np.ones((3, 1), np.float32)], 1)
    np.testing.assert_allclose(m.run({"v": v}, device="cpu")["y"], want, rtol=1e-6)


@pytest.mark.parametrize("largest", [1, 0])
def test_top_k_with_ties_takes_lower_indices_first(largest):
    x = np.array([[3.0, 1.0, 3.0, 2.0], [0.5, -np.inf, 0.5, 7.0]], np.float32)
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest)
    m = gf.onnx.import_model(_model([node], [_vi("x", F, [2, 4]), _vi("k", I64, [1])],
                                    [_vi("v", F, None), _vi("i", I64, None)]))
    got = m.run({"x": x, "k": np.array([3])}, device="cpu")
    order = np.argsort(-x if largest else x, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(got["i"], order)
    np.testing.assert_array_equal(got["v"], np.take_along_axis(x, order, 1))


@pytest.mark.parametrize("inverse,onesided", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_dft_matches_numpy_fft(inverse, onesided):
    length = 8
    n = length // 2 + 1 if inverse and onesided else length
    x = RNG.standard_normal((2, n, 3, 2 if inverse else 1)).astype(np.float32)
    node = helper.make_node("DFT", ["x"], ["y"], axis=1, inverse=inverse, onesided=onesided)
    m = gf.onnx.import_model(_model([node], [_vi("x", F, list(x.shape))], [_vi("y", F, None)],
                                    opset=19))
    got = m.run({"x": x}, device="cpu")["y"]
    z = x[..., 0] + 1j * x[..., 1] if inverse else x[..., 0]
    if inverse:
        want = np.fft.irfft(z, length, axis=1)[..., None] if onesided else np.fft.ifft(z, axis=1)
    else:
        want = np.fft.rfft(z, axis=1) if onesided else np.fft.fft(z, axis=1)
    if want.shape[-1] != 1 or np.iscomplexobj(want):
        want = np.stack([want.real, want.imag], -1) if np.iscomplexobj(want) else want
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_empty_reductions_and_compress():
    x = np.zeros((2, 0, 3), np.float32)
    for op, want in (("ReduceSum", 0.0), ("ReduceMax", -np.inf), ("ReduceProd", 1.0)):
        node = helper.make_node(op, ["x"], ["y"], axes=[1], keepdims=1)
        m = gf.onnx.import_model(_model([node], [_vi("x", F, [2, 0, 3])], [_vi("y", F, None)],
                                        opset=13 if op != "ReduceSum" else 11))
        np.testing.assert_array_equal(m.run({"x": x}, device="cpu")["y"], np.full((2, 1, 3), want))
    v = RNG.standard_normal((3, 4)).astype(np.float32)
    node = helper.make_node("Compress", ["v", "c"], ["y"], axis=1)
    m = gf.onnx.import_model(_model([node], [_vi("v", F, [3, 4]), _vi("c", TensorProto.BOOL, [3])],
                                    [_vi("y", F, None)]))
    c = np.array([True, False, True])
    np.testing.assert_array_equal(m.run({"v": v, "c": c}, device="cpu")["y"],
                                  np.compress(c, v, axis=1))
