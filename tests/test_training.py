"""Variables, initializers, random numbers, optimizers and the Saver."""
import math
import os
import re

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import GraphflowError
from graphflow.ops.random import philox4x64

README = os.path.join(os.path.dirname(__file__), "..", "README.md")
DEVICES = ["reference", "cpu"]


@pytest.mark.parametrize("device", ["reference", None])
def test_readme_mlp_trains(device, monkeypatch):
    """The README's code, verbatim, on the reference device and on the default device."""
    if device:
        monkeypatch.setenv("GRAPHFLOW_DEVICE", device)
    else:
        monkeypatch.delenv("GRAPHFLOW_DEVICE", raising=False)
    with open(README) as f:
        code = re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    losses = scope["losses"]
    assert losses[-1] < 0.5 * losses[0]
    assert all(np.isfinite(losses))


def quadratic_problem(dtype=np.float32):
    """loss = sum((w * x - t)^2) / 2 for a fixed x, t: grad = (w x - t) x."""
    x = np.array([0.5, -1.5, 2.0], dtype)
    t = np.array([1.0, 2.0, -1.0], dtype)
    w0 = np.array([0.3, -0.2, 0.1], dtype)
    w = gf.Variable(w0, name="w")
    loss = gf.reduce_sum(gf.square(w * x - t)) / 2.0
    return w, loss, lambda wv: (wv * x - t) * x, w0


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_descent_matches_numpy(device):
    w, loss, grad, wv = quadratic_problem()
    train = gf.train.GradientDescentOptimizer(0.1).minimize(loss)
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        for _ in range(3):
            s.run(train)
            wv = wv - 0.1 * grad(wv)
            np.testing.assert_allclose(s.run(w), wv, rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_momentum_matches_tf1_rule(device):
    w, loss, grad, wv = quadratic_problem()
    opt = gf.train.MomentumOptimizer(0.1, momentum=0.9)
    train = opt.minimize(loss)
    accum = np.zeros_like(wv)
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        for _ in range(3):
            s.run(train)
            accum = 0.9 * accum + grad(wv)
            wv = wv - 0.1 * accum
            np.testing.assert_allclose(s.run(w), wv, rtol=1e-6)
        np.testing.assert_allclose(s.run(opt.get_slot(w, "momentum")), accum, rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_adam_matches_tf1_epsilon_hat_rule(device):
    w, loss, grad, wv = quadratic_problem(np.float64)
    lr, b1, b2, eps = 0.05, 0.8, 0.95, 1e-3
    train = gf.train.AdamOptimizer(lr, b1, b2, eps).minimize(loss)
    m, v = np.zeros_like(wv), np.zeros_like(wv)
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        for t in range(1, 4):
            _, loss_before = s.run([train, loss])
            g = grad(wv)
            np.testing.assert_allclose(loss_before, ((wv * [0.5, -1.5, 2] - [1, 2, -1]) ** 2)
                                       .sum() / 2, rtol=1e-12)
            lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            wv = wv - lr_t * m / (np.sqrt(v) + eps)
            np.testing.assert_allclose(s.run(w), wv, rtol=1e-12)


def test_optimizer_api_and_errors():
    w, loss, _, _ = quadratic_problem()
    frozen = gf.Variable(1.0, name="frozen")
    opt = gf.train.GradientDescentOptimizer(0.1)
    pairs = opt.compute_gradients(loss, var_list=[w, frozen])
    assert pairs[0][1] is w and pairs[1] == (None, frozen)
    with pytest.raises(GraphflowError, match="no gradients for any variable"):
        opt.apply_gradients([(None, frozen)])
    assert gf.trainable_variables() == [w, frozen]


@pytest.mark.parametrize("device", DEVICES)
def test_training_through_a_learning_rate_placeholder(device):
    w, loss, grad, wv = quadratic_problem()
    lr = gf.placeholder(gf.float32, [], name="lr")
    train = gf.train.GradientDescentOptimizer(lr).minimize(loss)
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        s.run(train, {lr: 0.5})
        np.testing.assert_allclose(s.run(w), wv - 0.5 * grad(wv), rtol=1e-6)


# ---- random numbers -----------------------------------------------------------
def test_philox_matches_numpy():
    key = (0x123456789ABCDEF, 0xFEDCBA987654321)
    counters = [(0, 0, 0, 0), (41, 7, 9, 11), (2**40, 2**63, 5, 1)]
    for ctr in counters:
        bg = np.random.Philox(counter=list(ctr), key=list(key))
        expected = bg.random_raw(4)  # numpy bumps the counter by one before drawing
        mine = philox4x64([np.array([v + (i == 0)], np.uint64) for i, v in enumerate(ctr)], key)
        assert [int(m[0]) for m in mine] == [int(e) for e in expected]


def test_initializers_are_seeded_and_have_the_right_scale():
    a = gf.initializers.glorot_uniform(seed=5)((64, 48))
    b = gf.initializers.glorot_uniform(seed=5)((64, 48))
    c = gf.initializers.glorot_uniform(seed=6)((64, 48))
    h = gf.initializers.he_normal(seed=1)((300, 200))
    n = gf.initializers.random_normal(1.0, 2.0, seed=3)((200, 100))
    u = gf.initializers.random_uniform(-1.0, 3.0, seed=3)((200, 100))
    with gf.Session(device="reference") as s:
        av, bv, cv, hv, nv, uv = s.run([a, b, c, h, n, u])
    limit = math.sqrt(6 / (64 + 48))
    assert np.array_equal(av, bv) and not np.array_equal(av, cv)
    assert av.dtype == np.float32 and np.abs(av).max() <= limit
    assert abs(av.std() - limit / math.sqrt(3)) < 0.01
    assert abs(hv.std() - math.sqrt(2 / 300)) < 0.003
    assert np.abs(hv).max() <= 2 * math.sqrt(2 / 300) / 0.87962566103423978 + 1e-6
    assert abs(nv.mean() - 1.0) < 0.05 and abs(nv.std() - 2.0) < 0.05
    assert uv.min() >= -1.0 and uv.max() < 3.0 and abs(uv.mean() - 1.0) < 0.05


def test_uniform_bits_follow_the_documented_stream():
    u = gf.random_uniform([5], seed=99)
    with gf.Session(device="reference") as s:
        got = s.run(u)
    # element i uses counter (i, 0, 0, 0); numpy adds one to the counter before drawing,
    # and all-ones wraps around to all zeros
    words = []
    for i in range(5):
        start = [i - 1, 0, 0, 0] if i else [2**64 - 1] * 4
        words.append(int(np.random.Philox(counter=start, key=[99, 0]).random_raw(4)[0]))
    np.testing.assert_array_equal(got, [(w >> 40) * 2.0**-24 for w in words])


@pytest.mark.parametrize("device", DEVICES)
def test_dropout_keeps_and_scales_and_changes_every_run(device):
    x = gf.ones([1000])
    y = gf.nn.dropout(x, rate=0.25, seed=7)
    with gf.Session(device=device) as s:
        first, second = s.run(y), s.run(y)
    assert set(np.unique(first)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((first == 0).mean() - 0.25) < 0.05
    assert not np.array_equal(first, second)
    with gf.Session(device=device) as s:
        assert np.array_equal(s.run(y), first)  # same seed, same first mask
    dx = gf.gradients(gf.reduce_sum(y), x)[0]
    with gf.Session(device=device) as s:
        out, grad = s.run([y, dx])
    np.testing.assert_allclose(grad, (out != 0) / 0.75, rtol=1e-6)


# ---- variables and the Saver ------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_variable_names_assign_ops_and_collections(device):
    w = gf.Variable(np.zeros((2, 3), np.float32), name="w")
    step = gf.Variable(0, name="step", trainable=False)
    assert w.name == "w:0" and w.shape == (2, 3) and step.dtype is gf.int32
    assert gf.global_variables() == [w, step] and gf.trainable_variables() == [w]
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        s.run(gf.assign(w, np.ones((2, 3))))
        s.run(step.assign_add(5))
        s.run(w.assign_sub(gf.ones([2, 3]) * 0.5))
        np.testing.assert_array_equal(s.run(w), np.full((2, 3), 0.5))
        assert s.run(step) == 5
    with pytest.raises(gf.errors.ShapeError, match="cannot assign"):
        w.assign(np.zeros(3, np.float32))


@pytest.mark.parametrize("device", DEVICES)
def test_saver_round_trip_on_a_rebuilt_graph(tmp_path, device):
    path = str(tmp_path / "model.ckpt")  # no .npz suffix: written exactly here
    w = gf.Variable(gf.random_normal([3, 4], seed=1), name="w")
    b = gf.Variable(gf.zeros([4]), name="b")
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        s.run(b.assign(np.arange(4, dtype=np.float32)))
        saved_w = s.run(w)
        assert gf.train.Saver().save(s, path) == path
    assert os.path.exists(path) and os.listdir(tmp_path) == ["model.ckpt"]
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["b", "w"]

    gf.reset_default_graph()
    w2 = gf.Variable(gf.zeros([3, 4]), name="w")
    b2 = gf.Variable(gf.zeros([4]), name="b")
    with gf.Session(device=device) as s:
        gf.train.Saver().restore(s, path)  # no initializer needed
        np.testing.assert_array_equal(s.run(w2), saved_w)
        np.testing.assert_array_equal(s.run(b2), np.arange(4))


@pytest.mark.parametrize("device", DEVICES)
def test_saver_restore_is_all_or_nothing(tmp_path, device):
    path = str(tmp_path / "ckpt.npz")
    w = gf.Variable(np.ones(3, np.float32), name="w")
    with gf.Session(device=device) as s:
        s.run(w.initializer)
        gf.train.Saver().save(s, path)

    gf.reset_default_graph()
    w = gf.Variable(np.zeros(3, np.float32), name="w")
    gf.Variable(np.zeros(2, np.float32), name="extra")
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        with pytest.raises(GraphflowError, match="no value for variable.*extra"):
            gf.train.Saver().restore(s, path)
        np.testing.assert_array_equal(s.run(w), np.zeros(3))  # unchanged

    gf.reset_default_graph()
    w = gf.Variable(np.zeros(4, np.float32), name="w")
    with gf.Session(device=device) as s:
        s.run(w.initializer)
        with pytest.raises(GraphflowError, match=r"shape \[3\] there but \[4\]"):
            gf.train.Saver().restore(s, path)
        np.testing.assert_array_equal(s.run(w), np.zeros(4))
