"""Saved graphs (gf.io): round trips on every device, every op's attrs, and bad files."""
import json
import os

import numpy as np
import pytest

import graphflow as gf
from graphflow import opdocs, registry
from graphflow.dtypes import DType
from graphflow.errors import DeviceError, GraphFileError, GraphflowError


def _usable(device: str) -> bool:
    try:
        gf.Session(device=device).close()
        return True
    except DeviceError:
        return False


DEVICES = ["reference", "cpu"] + (["cuda"] if _usable("cuda") else [])  # every usable device


def round_trip(tmp_path, graph=None) -> gf.Graph:
    path = str(tmp_path / "model.json")
    assert gf.io.save_graph(graph or gf.get_default_graph(), path) == path
    return gf.io.load_graph(path)


def same(g2, item):
    """item's twin in the loaded graph, found by its exact name."""
    if isinstance(item, gf.Operation):
        return g2.get_operation_by_name(item.name)
    return g2.get_tensor_by_name(item.name)


def run_steps(graph, device, init, fetches, feeds, steps):
    with gf.Session(graph, device=device) as sess:
        sess.run(init)
        return [sess.run(fetches, feeds) for _ in range(steps)]


def assert_same_runs(tmp_path, init, fetches, feeds, steps=1):
    """The loaded graph gives exactly the original's results on each device, and the
    compiled devices agree with the original on the reference device."""
    g1 = gf.get_default_graph()
    g2 = round_trip(tmp_path)
    feeds2 = {same(g2, k): v for k, v in feeds.items()}
    fetches2 = [same(g2, f) for f in fetches]
    oracle = run_steps(g1, "reference", init, fetches, feeds, steps)
    for device in DEVICES:
        before = run_steps(g1, device, init, fetches, feeds, steps)
        after = run_steps(g2, device, same(g2, init), fetches2, feeds2, steps)
        for b, a, o in zip(before, after, oracle):
            for vb, va, vo in zip(b, a, o):
                if vb is None:
                    assert va is None
                    continue
                np.testing.assert_array_equal(va, vb)
                np.testing.assert_allclose(va, vo, rtol=2e-5, atol=1e-6)
    return g2


def test_mlp_training_step_with_adam(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(16, 6)).astype(np.float32)
    labels = rng.integers(0, 3, size=16)
    x = gf.placeholder(gf.float32, [None, 6], name="x")
    y = gf.placeholder(gf.int64, [None], name="y")
    with gf.name_scope("layer1"):
        w1 = gf.Variable(gf.initializers.glorot_uniform(seed=1)((6, 8)), name="w")
        b1 = gf.Variable(gf.zeros([8]), name="b")
        h = gf.nn.relu(x @ w1 + b1)
    w2 = gf.Variable(gf.initializers.he_normal(seed=2)((8, 3)), name="w2")
    logits = h @ w2
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    train = gf.train.AdamOptimizer(0.05).minimize(loss)
    init = gf.global_variables_initializer()
    g2 = assert_same_runs(tmp_path, init, [train, loss, w1, w2], {x: data, y: labels}, steps=3)
    assert [v.name for v in gf.global_variables(g2)] == [v.name for v in gf.global_variables()]
    assert [v.name for v in gf.trainable_variables(g2)] == ["layer1/w:0", "layer1/b:0", "w2:0"]


def test_conv_net_gradients(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 6, 6, 2)).astype(np.float32)
    x = gf.placeholder(gf.float32, [None, 6, 6, 2], name="images")
    f = gf.Variable(gf.initializers.glorot_uniform(seed=3)((3, 3, 2, 4)), name="filters")
    h = gf.nn.relu(gf.nn.conv2d(x, f, strides=1, padding="SAME"))
    h = gf.nn.max_pool2d(h, 2, 2, "VALID") + gf.nn.avg_pool2d(h, 2, 2, "VALID")
    h = gf.reshape(h, [-1, 36])
    loss = gf.reduce_sum(gf.nn.log_softmax(h) * 0.5)
    grad = gf.gradients(loss, [f, x])
    init = gf.global_variables_initializer()
    assert_same_runs(tmp_path, init, [loss] + grad, {x: images})


def test_gathers_and_random_ops(tmp_path):
    ids = np.array([[0, 3], [2, 2]], np.int32)
    p = gf.placeholder(gf.int32, [None, 2], name="ids")
    table = gf.Variable(gf.random_normal([5, 4], seed=7), name="table")
    noise = gf.truncated_normal([2, 2, 4], seed=8) + gf.random_uniform([4], -1.0, 1.0, seed=9)
    rows = gf.nn.embedding_lookup(table, p) + noise
    kept = gf.nn.dropout(rows, 0.3, seed=11)
    picked = gf.gather(gf.cumsum(kept, axis=2), [1, 0], axis=1)
    out = gf.concat([picked[:, ::-1], gf.one_hot(p, 4)], axis=2)
    loss = gf.reduce_max(out) + gf.reduce_sum(gf.cast(gf.argmax(out, 2), gf.float32))
    grad = gf.gradients(loss, table)[0]
    init = gf.global_variables_initializer()
    assert_same_runs(tmp_path, init, [out, loss, grad], {p: ids}, steps=2)


def test_names_sites_control_inputs_and_gradient_links_are_kept(tmp_path):
    x = gf.placeholder(gf.float32, [3], name="x")
    v = gf.Variable(np.arange(3, dtype=np.float32), name="v")
    with gf.name_scope("block"):
        y = gf.sin(x) * 2.0 + gf.stop_gradient(gf.ones([3]))
    with gf.control_dependencies([v.initializer]):
        z = gf.identity(y, name="z")
    (gx,) = gf.gradients(z, x)
    g1 = gf.get_default_graph()
    g2 = round_trip(tmp_path)
    assert [op.name for op in g2.get_operations()] == [op.name for op in g1.get_operations()]
    for op in g1.get_operations():
        op2 = g2.get_operation_by_name(op.name)
        assert (op2.type, op2.site, op2.id) == (op.type, op.site, op.id)
        assert [t.name for t in op2.inputs] == [t.name for t in op.inputs]
        assert [c.name for c in op2.control_inputs] == [c.name for c in op.control_inputs]
        assert (op2.grad_of and op2.grad_of.name) == (op.grad_of and op.grad_of.name)
        for t, t2 in zip(op.outputs, op2.outputs):
            assert g2.get_tensor_by_name(t.name) is t2
            assert (t2.shape, t2.dtype) == (t.shape, t.dtype)
    assert not any(op.name.startswith("import/") for op in g2.get_operations())
    assert same(g2, z).op.control_inputs == [same(g2, v.initializer)]
    assert same(g2, gx).op.grad_of is not None
    assert __file__ in same(g2, y).op.site
    v2 = same(g2, v)
    assert isinstance(v2, gf.Variable) and v2.op.outputs[0] is v2
    assert v2.initial_value is same(g2, v.initial_value)
    assert v2.initializer is same(g2, v.initializer)
    # new ops built into a loaded graph get fresh names, as in the original
    with g2.as_default():
        assert gf.identity(same(g2, x), name="z").name == "z_1:0"
        with gf.name_scope("block") as scope:
            assert scope == "block_1/"
    # the control dependency is honoured after loading: running z initializes v
    with gf.Session(g2, device="reference") as sess:
        np.testing.assert_allclose(sess.run(same(g2, z), {same(g2, x): np.ones(3)}),
                                   np.sin(1.0) * 2 + 1, rtol=1e-6)
        np.testing.assert_array_equal(sess.run(v2), np.arange(3))


def test_the_format_is_json_and_npz_without_pickle(tmp_path):
    gf.constant(np.arange(6, dtype=np.int64).reshape(2, 3), name="c")
    gf.constant(float("inf"), name="inf")
    path = str(tmp_path / "g.json")
    gf.io.save_graph(None, path)
    with open(path) as f:
        document = json.load(f)
    assert isinstance(document["format_version"], int)
    assert [op["name"] for op in document["ops"]] == ["c", "inf"]
    with np.load(str(tmp_path / "g.npz"), allow_pickle=False) as data:
        assert sorted(np.asarray(data[k]).tolist() == [[0, 1, 2], [3, 4, 5]] for k in data.files)
    g2 = gf.io.load_graph(path)
    c = g2.get_tensor_by_name("c:0")
    value = c.op.attrs["value"]
    assert value.dtype == np.int64 and not value.flags.writeable
    with gf.Session(g2, device="reference") as sess:
        np.testing.assert_array_equal(sess.run(c), np.arange(6).reshape(2, 3))
        assert sess.run(g2.get_tensor_by_name("inf:0")) == np.float32(np.inf)


# ---- every op type in the registry ----------------------------------------------------
def every_op_graph():
    """A graph using most op types, second-order gradients included."""
    x = gf.placeholder(gf.float32, [None, 4], name="x")
    i = gf.placeholder(gf.int64, [None], name="i")
    img = gf.placeholder(gf.float32, [2, 4, 4, 2], name="img")
    v = gf.Variable(gf.ones([4]), name="v")
    updates = gf.group(v.assign(gf.ones([4])), v.assign_add(gf.ones([4])),
                       v.assign_sub(gf.ones([4])))
    a = gf.abs(gf.sign(x)) + gf.cos(x) - gf.sin(x) * gf.exp(x) / gf.sqrt(gf.square(x) + 1.0)
    a = a + gf.log(gf.rsqrt(gf.square(x) + 1.0) + 2.0) + gf.erf(x) + gf.tanh(x) + gf.sigmoid(x)
    a = a + gf.nn.gelu(x) + gf.nn.gelu(x, approximate=True) + gf.nn.silu(x) + gf.nn.softplus(x)
    a = a + gf.nn.relu(-x) + gf.pow(gf.square(x) + 1.0, 1.5) + gf.maximum(x, v) + gf.minimum(x, v)
    cond = gf.logical_or(gf.logical_and(gf.less(x, 0.5), gf.greater(x, -0.5)),
                         gf.logical_and(gf.less_equal(x, v), gf.greater_equal(x, v)))
    cond = gf.logical_or(cond, gf.logical_and(gf.equal(x, v), gf.not_equal(x, v)))
    a = gf.where(cond, a, gf.stop_gradient(a) * 0.5)
    a = gf.identity(a) + gf.reduce_max(a, 1, keepdims=True) + gf.reduce_min(a, 1, keepdims=True)
    a = gf.nn.layer_norm(a, gf.ones([4]), gf.zeros([4]))
    a = gf.nn.softmax(a) + gf.nn.log_softmax(a) + gf.cumsum(a, 1, exclusive=True, reverse=True)
    b = gf.transpose(gf.expand_dims(a, 2), [0, 2, 1])          # [N, 1, 4]
    b = gf.squeeze(b, 1) + gf.broadcast_to(gf.constant([1.0, 2.0, 3.0, 4.0]), [1, 4])
    b = gf.concat([b, gf.reshape(b, [-1, 2, 2])[:, ::-1, 0]], axis=1)   # [N, 6]
    b = gf.stack([b, b * 2.0], axis=1)[:, 1] @ gf.ones([6, 3])         # [N, 3]
    table = gf.Variable(gf.random_uniform([5, 3], seed=1), name="emb")
    emb = gf.gather(table, i)
    b = b + emb + gf.nn.dropout(b, 0.25, seed=4) + gf.truncated_normal([3], seed=2)
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=i, logits=b))
    loss += gf.reduce_sum(gf.nn.softmax_cross_entropy_with_logits(
        labels=gf.one_hot(i, 3), logits=b))
    loss += gf.reduce_sum(gf.cast(gf.argmax(b, 1) + gf.argmin(b, 1), gf.float32))
    pooled = gf.nn.max_pool2d(img, 2, 2, "SAME") + gf.nn.avg_pool2d(img, 2, 1, "VALID")[:, ::2,
                                                                                       ::2]
    conv = gf.nn.conv2d(pooled, gf.Variable(gf.ones([1, 1, 2, 2]), name="f"), 1, "VALID")
    count = gf.reduce_sum(gf.floordiv(i, 2) + gf.zeros_like(i))
    loss2 = gf.reduce_sum(conv * conv) + gf.cast(count, gf.float32)
    grads = gf.gradients([loss, loss2], [x, img, table])
    second = gf.gradients(gf.add_n([gf.reduce_sum(g * g) for g in grads]), [x, img, table])
    return updates, [loss, loss2] + grads + second


def assert_same_attr(a, b, where):
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for x, y in zip(a, b):
            assert_same_attr(x, y, where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_attr(a[k], b[k], where)
    elif isinstance(a, DType):
        assert a is b, where
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


def test_every_op_type_round_trips(tmp_path):
    """The attrs of every registered op type save and load exactly."""
    g1 = opdocs.example_graph()
    missing = sorted(set(registry.OPS) - {op.type for op in g1.get_operations()})
    assert not missing, (f"op types {missing} have no example: add a use of each to "
                         "graphflow/opdocs.py's _probe()")
    g2 = round_trip(tmp_path, g1)
    for op in g1.get_operations():
        op2 = g2.get_operation_by_name(op.name)
        assert op2.attrs.keys() == op.attrs.keys()
        for k in op.attrs:
            assert_same_attr(op.attrs[k], op2.attrs[k], f"{op.name}.{k}")


def test_a_graph_of_many_ops_computes_the_same_after_loading(tmp_path):
    updates, fetches = every_op_graph()
    g1 = gf.get_default_graph()
    g2 = round_trip(tmp_path)
    for op in g1.get_operations():
        op2 = g2.get_operation_by_name(op.name)
        for k in op.attrs:
            assert_same_attr(op.attrs[k], op2.attrs[k], f"{op.name}.{k}")
    rng = np.random.default_rng(3)
    feeds = {"x:0": rng.normal(size=(3, 4)).astype(np.float32), "i:0": np.array([0, 2, 1]),
             "img:0": rng.normal(size=(2, 4, 4, 2)).astype(np.float32)}
    results = []
    for g in (g1, g2):
        with gf.Session(g, device="reference") as sess:
            sess.run([v.initializer for v in gf.global_variables(g)])
            sess.run(same(g, updates))
            results.append(sess.run([same(g, f) for f in fetches], feeds))
    for r1, r2 in zip(*results):
        np.testing.assert_array_equal(r1, r2)


def test_unsupported_attr_values_are_refused_when_saving(tmp_path):
    op = gf.constant(1.0, name="c").op
    op.attrs["extra"] = object()
    with pytest.raises(GraphflowError, match=r"op 'c'.*attr 'extra'"):
        gf.io.save_graph(None, str(tmp_path / "g.json"))
    assert not os.path.exists(tmp_path / "g.json")


def test_saving_into_a_missing_folder_names_it(tmp_path):
    gf.constant(1.0)
    with pytest.raises(GraphflowError, match="folder .*nowhere.* does not exist"):
        gf.io.save_graph(None, str(tmp_path / "nowhere" / "g.json"))


# ---- bad files -------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    x = gf.placeholder(gf.float32, [2], name="x")
    gf.reduce_sum(x * gf.constant(np.arange(2000, dtype=np.float32)[:2]), name="out")
    path = str(tmp_path / "model.json")
    gf.io.save_graph(None, path)
    return path


def edit_json(path, change):
    with open(path) as f:
        document = json.load(f)
    change(document)
    with open(path, "w") as f:
        json.dump(document, f)


def expect_refused(path, pattern):
    before = len(gf.get_default_graph().get_operations())
    with pytest.raises(GraphFileError, match=pattern) as info:
        gf.io.load_graph(path)
    assert isinstance(info.value, GraphflowError)
    assert len(gf.get_default_graph().get_operations()) == before  # nothing loaded anywhere


def test_truncated_json_is_refused(saved):
    with open(saved, "rb") as f:
        text = f.read()
    with open(saved, "wb") as f:
        f.write(text[: len(text) // 2])
    expect_refused(saved, "not valid JSON.*truncated or corrupt")


def test_truncated_or_corrupt_values_are_refused(saved):
    npz = saved[:-5] + ".npz"
    with open(npz, "rb") as f:
        blob = f.read()
    with open(npz, "wb") as f:
        f.write(blob[:-40])
    expect_refused(saved, "values file .*model.npz.* truncated, corrupt")
    with open(npz, "wb") as f:
        f.write(blob[:100] + bytes([blob[100] ^ 0xFF]) + blob[101:])
    expect_refused(saved, "checksum does not match")
    os.remove(npz)
    expect_refused(saved, "values file .* is missing")


def test_future_and_bad_versions_are_refused(saved):
    edit_json(saved, lambda d: d.update(format_version=gf.io.FORMAT_VERSION + 1))
    expect_refused(saved, f"format_version {gf.io.FORMAT_VERSION + 1}, newer than .* upgrade")
    edit_json(saved, lambda d: d.update(format_version="1"))
    expect_refused(saved, "format_version must be a positive integer")
    edit_json(saved, lambda d: d.pop("format"))
    expect_refused(saved, "not a graphflow saved graph")


def test_corrupt_op_entries_are_refused(saved):
    with open(saved) as f:
        original = f.read()
    cases = [
        (lambda d: d["ops"][1].update(type="NoSuchOp"), "op #1 .*unknown op type 'NoSuchOp'"),
        (lambda d: d["ops"][1].update(inputs=["ghost:0"]), "op #1 .*refers to op 'ghost'"),
        (lambda d: d["ops"][2].update(inputs=["x:0"]), r"op #2 'mul'.*Mul"),
        (lambda d: d["ops"][2]["outputs"][0].update(dtype="int32"), "saved outputs"),
        (lambda d: d["ops"][0].pop("attrs"), "corrupt at op #0 'x'"),
        (lambda d: d["ops"].append(d["ops"][0]), "op name 'x' appears twice"),
        (lambda d: d["ops"][0]["attrs"].update(dtype={"$dtype": "complex7"}), "complex7"),
    ]
    for change, pattern in cases:
        with open(saved, "w") as f:
            f.write(original)
        edit_json(saved, change)
        expect_refused(saved, pattern)


def test_missing_file_is_refused(tmp_path):
    expect_refused(str(tmp_path / "none.json"), "does not exist")


def test_a_loaded_graph_restores_a_checkpoint_of_the_original(tmp_path):
    """Train, save the graph and the variables, load both elsewhere: same predictions."""
    rng = np.random.default_rng(5)
    data = rng.normal(size=(8, 3)).astype(np.float32)
    x = gf.placeholder(gf.float32, [None, 3], name="x")
    w = gf.Variable(gf.initializers.glorot_uniform(seed=4)((3, 2)), name="w")
    out = gf.nn.softmax(x @ w)
    train = gf.train.MomentumOptimizer(0.5, 0.9).minimize(gf.reduce_sum(out[:, 0]))
    with gf.Session(device="reference") as sess:
        sess.run(gf.global_variables_initializer())
        for _ in range(3):
            sess.run(train, {x: data})
        expected = sess.run(out, {x: data})
        gf.train.Saver().save(sess, str(tmp_path / "ckpt.npz"))
    g2 = round_trip(tmp_path)
    with gf.Session(g2, device="reference") as sess:
        gf.train.Saver(gf.global_variables(g2)).restore(sess, str(tmp_path / "ckpt.npz"))
        got = sess.run(same(g2, out), {"x:0": data})
    np.testing.assert_array_equal(got, expected)
    logits = data @ np.load(str(tmp_path / "ckpt.npz"))["w"]
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(1, keepdims=True), rtol=1e-5)
