"""The training stack: RMSProp, Adagrad, AdamW (numpy and torch), schedules, the global step,
clipping inside the step, scalar fetches, variable_scope/get_variable, gf.data.

Each optimizer test builds one graph and fetches [train, vars...] in one run (one compile per
device): the fetched values are the ones before the step, compared with a numpy transcription
of the update rule after each step.
"""
import inspect
import math

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import GraphflowError, ShapeError

DEVICES = ["reference", "cpu"]
X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5], [-1.0, 2.0, 0.5], [0.3, 0.7, -1.2]])
T = np.array([[1.0, -2.0], [0.5, 0.0], [-1.0, 1.0], [2.0, 0.5]])
W0 = np.array([[0.1, -0.2], [0.3, 0.05], [-0.4, 0.2]])
B0 = np.array([0.05, -0.1])


def linear_problem(dtype=np.float64):
    """loss = sum((x @ w + b - t)^2) / 2; returns (w, b, loss, numpy gradient fn)."""
    w = gf.Variable(W0.astype(dtype), name="w")
    b = gf.Variable(B0.astype(dtype), name="bias")
    loss = gf.reduce_sum(gf.square(gf.constant(X.astype(dtype)) @ w + b - T.astype(dtype))) / 2.0

    def grads(wv, bv):
        r = X @ wv + bv - T
        return X.T @ r, r.sum(axis=0)
    return w, b, loss, grads


def run_steps(device, train, fetch, steps, numpy_step, state, rtol=1e-10):
    """Run `steps` steps; before each, the fetched values must equal numpy's `state`."""
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        for k in range(steps + 1):
            got = s.run([train] + fetch)[1:]
            for g, want in zip(got, state):
                np.testing.assert_allclose(g, want, rtol=rtol, atol=1e-12)
            state = numpy_step(k, state)


# ---- optimizers against hand-written numpy ------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("centered", [False, True])
def test_rmsprop_matches_tf1_rule(device, centered):
    w, b, loss, grads = linear_problem()
    lr, rho, momentum, eps = 0.01, 0.8, 0.5, 1e-3
    opt = gf.train.RMSPropOptimizer(lr, decay=rho, momentum=momentum, epsilon=eps,
                                    centered=centered)
    train = opt.minimize(loss)
    assert opt.get_slot(w, "rms").op.name == "w/RMSProp"

    def step(k, state):
        new = []
        for p, g, ms, mom, mg in zip(state[:2], grads(*state[:2]), *state[2:]):
            ms[...] = ms + (g * g - ms) * (1 - rho)  # ms starts at ones (TF1)
            mg[...] = mg + (g - mg) * (1 - rho)
            denom = ms - mg * mg + eps if centered else ms + eps
            mom[...] = momentum * mom + lr * g / np.sqrt(denom)
            new.append(p - mom)
        return new + state[2:]
    ones, zeros = [np.ones_like(W0), np.ones_like(B0)], [np.zeros_like(W0), np.zeros_like(B0)]
    state = [W0, B0, ones, zeros, [np.zeros_like(W0), np.zeros_like(B0)]]
    run_steps(device, train, [w, b], 4, step, state)


def test_rmsprop_defaults_are_tf1s():
    opt = gf.train.RMSPropOptimizer(0.1)
    assert (opt.decay, opt.momentum, opt.epsilon, opt.centered) == (0.9, 0.0, 1e-10, False)


@pytest.mark.parametrize("device", DEVICES)
def test_adagrad_matches_tf1_rule(device):
    w, b, loss, grads = linear_problem()
    lr, init = 0.1, 0.25
    opt = gf.train.AdagradOptimizer(lr, initial_accumulator_value=init)
    train = opt.minimize(loss)

    def step(k, state):
        wv, bv, acc_w, acc_b = state
        gw, gb = grads(wv, bv)
        acc_w, acc_b = acc_w + gw * gw, acc_b + gb * gb
        return [wv - lr * gw / np.sqrt(acc_w), bv - lr * gb / np.sqrt(acc_b), acc_w, acc_b]
    state = [W0, B0, np.full_like(W0, init), np.full_like(B0, init)]
    slots = [opt.get_slot(w, "accumulator"), opt.get_slot(b, "accumulator")]
    run_steps(device, train, [w, b] + slots, 4, step, state)
    with pytest.raises(GraphflowError, match="initial_accumulator_value must be > 0"):
        gf.train.AdagradOptimizer(0.1, initial_accumulator_value=0.0)


def adamw_numpy(params, grads, lr, wd, b1, b2, eps, decayed, steps):
    """torch.optim.AdamW's documented algorithm, transcribed; yields params before each step.
    lr is a number or a list, one rate per step (a schedule)."""
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        yield [p.copy() for p in params]
        gs = grads(*params)
        rate = lr[t - 1] if isinstance(lr, list) else lr
        for i, (p, g) in enumerate(zip(params, gs)):
            if decayed[i]:
                p *= 1 - rate * wd
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            p -= rate * m_hat / (np.sqrt(v_hat) + eps)
    yield params


@pytest.mark.parametrize("device", DEVICES)
def test_adamw_matches_numpy_with_a_decay_mask(device):
    w, b, loss, grads = linear_problem()
    lr, wd, b1, b2, eps = 0.05, 0.3, 0.8, 0.95, 1e-3
    opt = gf.train.AdamWOptimizer(lr, wd, b1, b2, eps, exclude_from_weight_decay=["bias"])
    train = opt.minimize(loss)
    assert opt.decays(w) and not opt.decays(b)
    expected = list(adamw_numpy([W0, B0], grads, lr, wd, b1, b2, eps, [True, False], 4))
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        for want in expected:
            got = s.run([train, w, b])[1:]
            for g, e in zip(got, want):
                np.testing.assert_allclose(g, e, rtol=1e-10)


def test_adamw_decay_var_list_callable_mask_and_scheduled_rate():
    w, b, loss, grads = linear_problem()
    wd = 0.5
    step = gf.train.get_or_create_global_step()
    lr = gf.cast(gf.train.linear_warmup(0.05, step, 2), gf.float64)
    train = gf.train.AdamWOptimizer(lr, wd).minimize(loss, global_step=step, decay_var_list=[b])
    other = gf.train.AdamWOptimizer(lr, wd, exclude_from_weight_decay=lambda v: v.shape == (3, 2))
    assert not other.decays(w) and other.decays(b)
    assert not gf.train.AdamWOptimizer(lr, wd, exclude_from_weight_decay="bias").decays(b)
    rates = [float(np.float32(r)) for r in (0.0, 0.025, 0.05, 0.05)]  # a float32 schedule
    expected = list(adamw_numpy([W0, B0], grads, rates, wd, 0.9, 0.999, 1e-8, [False, True], 4))
    with gf.Session(device="reference") as s:
        s.run(gf.global_variables_initializer())
        for want in expected:
            got = s.run([train, w, b])[1:]
            for g, e in zip(got, want):
                np.testing.assert_allclose(g, e, rtol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_matches_torch(device, dtype):
    torch = pytest.importorskip("torch")
    lr, wd, betas, eps = 5e-2, 0.1, (0.9, 0.95), 1e-8
    w, b, loss, _ = linear_problem(dtype)
    train = gf.train.AdamWOptimizer(lr, wd, *betas, eps,
                                    exclude_from_weight_decay=["bias"]).minimize(loss)
    tw = torch.tensor(W0.astype(dtype), requires_grad=True)
    tb = torch.tensor(B0.astype(dtype), requires_grad=True)
    topt = torch.optim.AdamW([{"params": [tw], "weight_decay": wd},
                              {"params": [tb], "weight_decay": 0.0}], lr=lr, betas=betas, eps=eps)
    tx, tt = torch.tensor(X.astype(dtype)), torch.tensor(T.astype(dtype))
    rtol = 1e-5 if dtype == np.float32 else 1e-11
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        for _ in range(6):
            _, wv, bv, lv = s.run([train, w, b, loss])
            np.testing.assert_allclose(wv, tw.detach().numpy(), rtol=rtol, atol=1e-7)
            np.testing.assert_allclose(bv, tb.detach().numpy(), rtol=rtol, atol=1e-7)
            topt.zero_grad()
            tloss = ((tx @ tw + tb - tt) ** 2).sum() / 2
            np.testing.assert_allclose(lv, tloss.item(), rtol=rtol)
            tloss.backward()
            topt.step()


# ---- schedules -------------------------------------------------------------------
def numpy_schedules(k):
    cos = lambda s, n, a: (1 - a) * 0.5 * (1 + math.cos(math.pi * min(max(s, 0), n) / n)) + a  # noqa: E731
    return [0.1 * 0.5 ** (k / 7),
            0.1 * 0.5 ** (k // 7),
            [1.0, 0.5, 0.1][0 if k <= 5 else 1 if k <= 12 else 2],
            0.2 * cos(k, 20, 0.0),
            0.2 * cos(k, 20, 0.1),
            0.3 * min(1.0, k / 8),
            0.3 * min(1.0, k / 4) * cos(k - 4, 16, 0.0),
            (0.1 - 0.01) * (1 - min(k, 10) / 10) ** 2 + 0.01,
            (0.1 - 0.01) * (1 - k / (10 * max(1, math.ceil(k / 10)))) ** 2 + 0.01]


@pytest.mark.parametrize("device", DEVICES)
def test_schedules_match_tf1_formulas(device):
    step = gf.placeholder(gf.int64, [], name="step")
    schedules = [gf.train.exponential_decay(0.1, step, 7, 0.5),
                 gf.train.exponential_decay(0.1, step, 7, 0.5, staircase=True),
                 gf.train.piecewise_constant(step, [5, 12], [1.0, 0.5, 0.1]),
                 gf.train.cosine_decay(0.2, step, 20),
                 gf.train.cosine_decay(0.2, step, 20, alpha=0.1),
                 gf.train.linear_warmup(0.3, step, 8),
                 gf.train.linear_warmup(gf.train.cosine_decay(0.3, step - 4, 16), step, 4),
                 gf.train.polynomial_decay(0.1, step, 10, 0.01, power=2.0),
                 gf.train.polynomial_decay(0.1, step, 10, 0.01, power=2.0, cycle=True)]
    assert schedules[0].name.startswith("ExponentialDecay/")
    with gf.Session(device=device) as s:
        fn = s.make_callable(schedules, feed_list=[step])
        for k in range(0, 30):
            got = fn(k)
            assert all(type(g) is np.float32 for g in got)
            np.testing.assert_allclose(got, numpy_schedules(k), rtol=2e-6, atol=1e-8)


def test_schedule_errors():
    step = gf.train.get_or_create_global_step()
    with pytest.raises(GraphflowError, match="one more value than boundaries"):
        gf.train.piecewise_constant(step, [5, 12], [1.0, 0.5])
    with pytest.raises(GraphflowError, match="boundaries must increase"):
        gf.train.piecewise_constant(step, [5, 5], [1.0, 0.5, 0.1])
    with pytest.raises(GraphflowError, match="decay_steps must be > 0"):
        gf.train.cosine_decay(0.1, step, 0)
    with pytest.raises(GraphflowError, match="warmup_steps must be > 0"):
        gf.train.linear_warmup(0.1, step, 0)
    with pytest.raises(GraphflowError, match="float scalar"):
        gf.train.exponential_decay(1, step, 10, 0.5)


# ---- the global step -------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_global_step_drives_a_schedule_and_increments(device):
    w, b, loss, grads = linear_problem(np.float32)
    step = gf.train.get_or_create_global_step()
    assert gf.train.get_or_create_global_step() is step and gf.train.get_global_step() is step
    assert step.op.name == "global_step" and step.dtype is gf.int64 and step.shape == ()
    assert step not in gf.trainable_variables() and step in gf.global_variables()
    lr = gf.train.exponential_decay(0.1, step, 2, 0.5, staircase=True)
    train = gf.train.GradientDescentOptimizer(lr).minimize(loss, global_step=step)
    wv, bv = W0.astype(np.float32), B0.astype(np.float32)
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        for k in range(5):
            _, k_seen, lr_seen, w_seen = s.run([train, step, lr, w])
            assert type(k_seen) is np.int64 and k_seen == k
            assert lr_seen == np.float32(0.1 * 0.5 ** (k // 2))
            np.testing.assert_allclose(w_seen, wv, rtol=1e-5)
            gw, gb = grads(wv, bv)
            wv, bv = wv - lr_seen * gw, bv - lr_seen * gb
        assert s.run(step) == 5


def test_global_step_is_opt_in_and_accepts_tf1_positional_order():
    w, b, loss, _ = linear_problem()
    step = gf.train.get_or_create_global_step()
    plain = gf.train.GradientDescentOptimizer(0.1).minimize(loss)
    positional = gf.train.GradientDescentOptimizer(0.1).minimize(loss, step)
    opt = gf.train.MomentumOptimizer(0.1, 0.9)
    applied = opt.apply_gradients(opt.compute_gradients(loss), global_step=step)
    with gf.Session(device="reference") as s:
        s.run(gf.global_variables_initializer())
        s.run(plain)
        assert s.run(step) == 0
        s.run(positional)
        s.run(applied)
        assert s.run(step) == 2
    with pytest.raises(GraphflowError, match="global_step must be an integer gf.Variable"):
        gf.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=w)
    with pytest.raises(GraphflowError, match="already has a global step"):
        gf.train.create_global_step()


# ---- clipping inside the step -------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_clip_by_global_norm_between_compute_and_apply(device):
    w, b, loss, grads = linear_problem()
    step = gf.train.get_or_create_global_step()
    opt = gf.train.GradientDescentOptimizer(0.1)
    gvs = opt.compute_gradients(loss)
    clipped, norm = gf.clip_by_global_norm([g for g, _ in gvs], 1.0)
    train = opt.apply_gradients(zip(clipped, [v for _, v in gvs]), global_step=step)
    wv, bv = W0, B0
    with gf.Session(device=device) as s:
        s.run(gf.global_variables_initializer())
        for _ in range(3):
            _, n, w_seen, b_seen = s.run([train, norm, w, b])
            np.testing.assert_allclose(w_seen, wv, rtol=1e-10)
            np.testing.assert_allclose(b_seen, bv, rtol=1e-10)
            gw, gb = grads(wv, bv)
            total = math.sqrt((gw ** 2).sum() + (gb ** 2).sum())
            assert total > 1.0  # the clip is active
            np.testing.assert_allclose(n, total, rtol=1e-10)
            wv, bv = wv - 0.1 * gw / total, bv - 0.1 * gb / total
        assert s.run(step) == 3


# ---- scalar fetches ------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_scalar_fetches_are_numpy_scalars(device):
    x = gf.placeholder(gf.float32, [None], name="x")
    total = gf.reduce_sum(x)
    count = gf.cast(gf.reduce_sum(gf.ones_like(x)), gf.int32)
    with gf.Session(device=device) as s:
        got = s.run({"sum": total, "nested": [count, gf.reduce_sum(x, keepdims=True)]},
                    {x: [1.0, 2.5]})
        assert type(got["sum"]) is np.float32 and got["sum"] == 3.5
        assert type(got["nested"][0]) is np.int32 and got["nested"][0] == 2
        assert isinstance(got["nested"][1], np.ndarray) and got["nested"][1].shape == (1,)
        fn = s.make_callable(total, feed_list=[x])
        assert type(fn(np.ones(3, np.float32))) is np.float32


# ---- variable_scope / get_variable ------------------------------------------------
def test_get_variable_names_and_reuse():
    with gf.variable_scope("layer1") as scope:
        w = gf.get_variable("w", [784, 128])
        b = gf.get_variable("b", [128], initializer=gf.initializers.zeros())
        h = w + 1.0
        with gf.variable_scope("inner"):
            v = gf.get_variable("v", [2])
    assert (w.op.name, b.op.name, v.op.name) == ("layer1/w", "layer1/b", "layer1/inner/v")
    assert h.name.startswith("layer1/") and scope.name == "layer1" and not scope.reuse
    with gf.variable_scope("layer1", reuse=True):
        assert gf.get_variable("w", [784, 128]) is w
        assert gf.get_variable("w") is w  # shape may be omitted when sharing
        h2 = w * 2.0
        with gf.variable_scope("inner", reuse=False):  # reuse=True is sticky, as in TF1
            assert gf.get_variable("v", [2]) is v
    assert h2.name.startswith("layer1_1/")  # the op name scope is fresh, variables are shared
    with gf.variable_scope(scope, reuse=True):
        assert gf.get_variable("b", [128]) is b
    with gf.name_scope("ignored"), gf.variable_scope("layer2"):
        assert gf.get_variable("w", [3]).op.name == "layer2/w"  # name scopes do not count
    with gf.variable_scope("layer3") as scope3:
        x = gf.get_variable("x", [2])
        scope3.reuse_variables()
        assert gf.get_variable("x", [2]) is x
    assert gf.trainable_variables()[:2] == [w, b]


def test_default_name_makes_unique_scopes():
    def dense(n):
        with gf.variable_scope(None, default_name="dense"):
            return gf.get_variable("w", [n])
    assert [dense(2).op.name, dense(3).op.name] == ["dense/w", "dense_1/w"]


def test_get_variable_ignores_name_scopes():
    with gf.name_scope("outer"):
        v = gf.get_variable("v", [2])
    assert v.op.name == "v"


def test_get_variable_reuse_errors_name_the_first_site():
    with gf.variable_scope("layer1"):
        first_line = inspect.currentframe().f_lineno + 1
        gf.get_variable("w", [3, 4])
    with pytest.raises(ValueError, match=rf"'layer1/w' already exists \(first created at "
                                         rf".*test_train_stack.py:{first_line}\).*reuse=True"):
        with gf.variable_scope("layer1"):
            gf.get_variable("w", [3, 4])
    with pytest.raises(ValueError, match="'layer1/q' does not exist.*AUTO_REUSE"):
        with gf.variable_scope("layer1", reuse=True):
            gf.get_variable("q", [3, 4])
    with pytest.raises(ShapeError, match=r"share variable 'layer1/w'.*shape \[4, 3\].*\[3, 4\]"):
        with gf.variable_scope("layer1", reuse=True):
            gf.get_variable("w", [4, 3])
    with pytest.raises(GraphflowError, match="as float64.*it is float32"):
        with gf.variable_scope("layer1", reuse=True):
            gf.get_variable("w", [3, 4], dtype=gf.float64)
    with pytest.raises(ShapeError, match="needs a shape"):
        gf.get_variable("noshape")
    assert gf.get_variable("noshape", [2]).op.name == "noshape"  # a failed call leaves no trace
    with pytest.raises(GraphflowError, match="reuse must be"):
        with gf.variable_scope("x", reuse="yes"):
            pass


def test_auto_reuse_creates_then_shares():
    def layer(x):
        with gf.variable_scope("dense", reuse=gf.AUTO_REUSE):
            return x @ gf.get_variable("w", [2, 2], initializer=np.eye(2, dtype=np.float32))
    x = gf.constant(np.ones((1, 2), np.float32))
    y1, y2 = layer(x), layer(x)
    assert [v.op.name for v in gf.global_variables()] == ["dense/w"]
    with gf.Session(device="reference") as s:
        s.run(gf.global_variables_initializer())
        np.testing.assert_array_equal(s.run(y1), [[1, 1]])
        np.testing.assert_array_equal(s.run(y2), [[1, 1]])


def test_get_variable_initializers():
    with gf.variable_scope("a", initializer=gf.initializers.ones()):
        ones = gf.get_variable("ones", [3])
        with gf.variable_scope("b"):
            inherited = gf.get_variable("inherited", [2])
    glorot = gf.get_variable("glorot", [300, 200])
    ints = gf.get_variable("ints", [4], dtype=gf.int32)
    value = gf.get_variable("value", initializer=np.arange(3.0))  # dtype from the default
    assert value.dtype is gf.float32 and value.shape == (3,)
    from_tensor = gf.get_variable("from_tensor", initializer=gf.constant([1.0, 2.0]))
    assert from_tensor.shape == (2,)
    with pytest.raises(gf.errors.DTypeError, match="'f64', dtype=float32.*is float64"):
        gf.get_variable("f64", initializer=gf.constant([1.0], gf.float64))
    with pytest.raises(ShapeError, match="does not match its initial value's shape"):
        gf.get_variable("bad", [2], initializer=np.arange(3.0))
    with gf.Session(device="reference") as s:
        s.run(gf.global_variables_initializer())
        o, i, g, n = s.run([ones, inherited, glorot, ints])
    np.testing.assert_array_equal(o, 1.0)
    np.testing.assert_array_equal(i, 1.0)
    limit = math.sqrt(6 / (300 + 200))  # TF1's default, glorot_uniform
    assert np.abs(g).max() <= limit and abs(g.std() - limit / math.sqrt(3)) < 0.005
    np.testing.assert_array_equal(n, 0)  # integers default to zeros


# ---- gf.data ------------------------------------------------------------------------
def test_batches_in_order_and_drop_last():
    x, y = np.arange(10).reshape(10, 1), np.arange(10) * 2
    got = list(gf.data.batches((x, y), batch_size=4))
    assert [len(xb) for xb, _ in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([xb[:, 0] for xb, _ in got]), np.arange(10))
    assert all(np.array_equal(yb, xb[:, 0] * 2) for xb, yb in got)
    dropped = list(gf.data.batches(x, batch_size=4, drop_last=True))
    assert [b.shape for b in dropped] == [(4, 1), (4, 1)]
    assert gf.data.num_batches(10, 4) == 3 and gf.data.num_batches(10, 4, drop_last=True) == 2
    assert list(gf.data.batches(x, batch_size=20, drop_last=True)) == []


def test_shuffled_batches_are_seeded_and_keep_pairs_together():
    x, y = np.arange(100), np.arange(100) * 3
    a = list(gf.data.batches((x, y), 32, shuffle=True, seed=7, drop_last=True))
    b = list(gf.data.batches((x, y), 32, shuffle=True, seed=7, drop_last=True))
    c = list(gf.data.batches((x, y), 32, shuffle=True, seed=8, drop_last=True))
    order = np.random.default_rng([7, 0]).permutation(100)  # the documented stream
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in a]), order[:96])
    assert all(np.array_equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))
    assert not np.array_equal(a[0][0], c[0][0])
    assert all(np.array_equal(yb, xb * 3) for xb, yb in a)
    full = np.concatenate(list(gf.data.batches(x, 32, shuffle=True, seed=7)))
    np.testing.assert_array_equal(np.sort(full), x)  # a permutation: every example once


def test_epochs_reshuffle_each_epoch():
    x = np.arange(50)
    seen = [(e, np.concatenate(list(bs))) for e, bs in gf.data.epochs(x, 16, num_epochs=3,
                                                                         seed=1)]
    assert [e for e, _ in seen] == [0, 1, 2]
    for e, order in seen:
        np.testing.assert_array_equal(order, np.random.default_rng([1, e]).permutation(50))
    assert not np.array_equal(seen[0][1], seen[1][1])


def test_data_errors():
    with pytest.raises(ShapeError, match=r"different lengths \[10, 3\]"):
        gf.data.batches((np.zeros(10), np.zeros(3)), 4)
    with pytest.raises(ShapeError, match="scalar"):
        gf.data.batches(np.float32(1.0), 4)
    with pytest.raises(GraphflowError, match="batch_size must be a positive int"):
        gf.data.batches(np.zeros(10), 0)
    with pytest.raises(GraphflowError, match=r"different lengths"):
        gf.data.epochs((np.zeros(10), np.zeros(3)), 4, num_epochs=2)


# ---- all of it together -----------------------------------------------------------
def test_a_training_loop_with_the_whole_stack_learns():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(200, 6)).astype(np.float32)
    labels = (data[:, 0] - data[:, 1] > 0).astype(np.int64)
    x = gf.placeholder(gf.float32, [None, 6], name="x")
    y = gf.placeholder(gf.int64, [None], name="y")

    def dense(h, n, name):
        with gf.variable_scope(name):
            return h @ gf.get_variable("w", [h.shape[-1], n]) + gf.get_variable(
                "b", [n], initializer=gf.initializers.zeros())
    logits = dense(gf.nn.relu(dense(x, 16, "layer1")), 2, "layer2")
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    step = gf.train.get_or_create_global_step()
    lr = gf.train.linear_warmup(gf.train.cosine_decay(0.05, step - 5, 60), step, 5)
    opt = gf.train.AdamWOptimizer(lr, weight_decay=0.01, exclude_from_weight_decay=["/b$"])
    gvs = opt.compute_gradients(loss)
    clipped, _ = gf.clip_by_global_norm([g for g, _ in gvs], 1.0)
    train = opt.apply_gradients(zip(clipped, [v for _, v in gvs]), global_step=step)
    losses = []
    with gf.Session(device="reference") as s:  # each piece is checked on cpu above
        s.run(gf.global_variables_initializer())
        for _, epoch in gf.data.epochs((data, labels), 50, num_epochs=16, seed=3, drop_last=True):
            for xb, yb in epoch:
                _, value = s.run([train, loss], {x: xb, y: yb})
                losses.append(value)
        assert s.run(step) == 64
    assert type(losses[0]) is np.float32
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
