"""Each example's fast mode, on `reference` and `cpu`: it learns (the loss falls clearly, the metric
rises well above chance). Plus the oracles outside graphflow: micrograd's printed losses and its
README expression, and numpy transcriptions of minGPT's and mamba-minimal's forward passes.

The `test` extra installs scikit-learn and tqdm, which the examples need."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import graphflow as gf

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)
DEVICES = ["reference", "cpu"]

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")


def run_example(module: str, *argv: str) -> dict:
    return __import__(module).main(list(argv))


@pytest.mark.parametrize("device", DEVICES)
def test_train_digits_learns(device, capsys):
    result = run_example("train_digits", "--fast", "--device", device)
    assert result["losses"][-1] < 0.5 * result["losses"][0]
    assert result["accuracy"] > 0.8  # chance is 10%
    assert capsys.readouterr().out.splitlines()[-1].startswith("test accuracy: ")


@pytest.mark.parametrize("device", DEVICES)
def test_moons_mlp_matches_micrograd(device, capsys):
    """Same data, same weights, same float64 arithmetic: micrograd's own printed losses."""
    result = run_example("moons_mlp", "--fast", "--device", device, "--plot", "")
    assert result["losses"][0] == pytest.approx(0.8958441028683222, rel=1e-9)  # demo.ipynb
    assert result["losses"][19] == pytest.approx(0.1845374874688392, rel=1e-9)  # "step 19 loss"
    assert result["accuracy"] > 0.8  # chance is 50%
    assert capsys.readouterr().out.splitlines()[-1].startswith("training accuracy: ")


@pytest.mark.parametrize("device", DEVICES)
def test_micrograd_readme_expression(device):
    """micrograd's README example in float64: g and its gradients as micrograd prints them."""
    a = gf.placeholder(gf.float64, [], name="a")
    b = gf.placeholder(gf.float64, [], name="b")
    relu = gf.nn.relu
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + relu(b + a)
    d += 3 * d + relu(b - a)
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    grads = gf.gradients(g, [a, b])
    with gf.Session(device=device) as sess:
        g_val, da, db = sess.run([g, *grads], {a: -4.0, b: 2.0})
    assert round(float(g_val), 4) == 24.7041
    assert round(float(da), 4) == 138.8338
    assert round(float(db), 4) == 645.5773


@pytest.mark.parametrize("device", DEVICES)
def test_linear_regression_finds_least_squares(device, capsys):
    result = run_example("linear_regression", "--fast", "--device", device)
    assert result["losses"][-1] < 0.1 * result["losses"][0]
    np.testing.assert_allclose(result["fitted"], result["exact"], atol=0.01)  # np.polyfit's line
    assert capsys.readouterr().out.splitlines()[-1].startswith("np.polyfit: slope ")


@pytest.mark.parametrize("device", DEVICES)
def test_cnn_digits_learns(device, capsys):
    result = run_example("cnn_digits", "--fast", "--device", device)
    assert result["losses"][-1] < 0.6 * result["losses"][0]
    assert result["accuracy"] > 0.7  # chance is 10%
    assert capsys.readouterr().out.splitlines()[-1].startswith("test accuracy: ")


def _np_gpt(p: dict, idx: np.ndarray, n_layer: int, n_head: int) -> np.ndarray:
    """minGPT's model.py forward (eval mode), transcribed line by line into numpy."""
    def ln(x, w, b):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * w + b

    def gelu(x):  # NewGELU
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))

    b_, t = idx.shape
    x = p["wte"][idx] + p["wpe"][np.arange(t)][None]
    for i in range(n_layer):
        h = f"h{i}."
        y = ln(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"])
        q, k, v = np.split(y @ p[h + "attn.c_attn.weight"] + p[h + "attn.c_attn.bias"], 3, axis=2)
        c = q.shape[-1]
        q, k, v = (z.reshape(b_, t, n_head, c // n_head).transpose(0, 2, 1, 3) for z in (q, k, v))
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(c // n_head)
        att = np.where(np.tril(np.ones((t, t))) == 0, -np.inf, att)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(b_, t, c)
        x = x + y @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
        y = ln(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"])
        y = gelu(y @ p[h + "mlp.c_fc.weight"] + p[h + "mlp.c_fc.bias"])
        x = x + y @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    return ln(x, p["ln_f.weight"], p["ln_f.bias"]) @ p["lm_head.weight"]


@pytest.mark.parametrize("device", DEVICES)
def test_gpt_forward_matches_mingpt_equations(device):
    from gpt import GPTConfig, decayed, forward, init_params
    config = GPTConfig(vocab_size=5, block_size=7, n_layer=2, n_head=2, n_embd=8)
    rng = np.random.default_rng(0)
    params = init_params(config)
    idx = gf.placeholder(gf.int64, [None, 7])
    logits = forward(params, idx, config, dropout=0.0)
    ids = rng.integers(5, size=(3, 7))
    with gf.Session(device=device) as sess:
        values = {name: rng.normal(scale=0.5, size=var.shape).astype(np.float32)
                  for name, var in params.items()}  # random weights, not the init's 0s and 1s
        sess.set_variables({params[name]: value for name, value in values.items()})
        got = sess.run(logits, {idx: ids})
    want = _np_gpt({k: v.astype(np.float64) for k, v in values.items()}, ids, 2, 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    linear = ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"]
    assert sorted(v.op.name for v in decayed(params)) == sorted(
        [f"h{i}.{n}" for i in range(2) for n in linear] + ["lm_head.weight"])


@pytest.mark.parametrize("device", DEVICES)
def test_gpt_masked_loss_ignores_minus_one(device):
    from gpt import masked_loss
    rng = np.random.default_rng(1)
    logits_np = rng.normal(size=(2, 4, 3)).astype(np.float32)
    targets_np = np.array([[-1, -1, 2, 0], [-1, 1, 1, 2]])
    loss = masked_loss(gf.constant(logits_np), gf.constant(targets_np, gf.int64))
    with gf.Session(device=device) as sess:
        got = sess.run(loss)
    flat, labels = logits_np.reshape(-1, 3).astype(np.float64), targets_np.reshape(-1)
    logp = flat - np.log(np.exp(flat).sum(1, keepdims=True))
    keep = labels >= 0
    assert got == pytest.approx(-logp[keep, labels[keep]].mean(), rel=1e-5)  # F.cross_entropy


# The sequence models' fast training runs, on both devices (the cpu ones compile their training
# graphs: about 50 s of this file's time on a 2-core machine).
GPT_DEVICES = ["reference", "cpu"]


@pytest.mark.parametrize("device", GPT_DEVICES)
def test_gpt_sort_learns(device, capsys):
    result = run_example("gpt_sort", "--fast", "--device", device)
    losses = result["losses"]
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])
    assert result["accuracy"] > 0.2  # chance (a random sorted guess) is about 1%
    assert capsys.readouterr().out.splitlines()[-1].startswith("held-out accuracy: ")


@pytest.mark.parametrize("device", GPT_DEVICES)
def test_gpt_adder_learns(device, capsys):
    result = run_example("gpt_adder", "--fast", "--device", device)
    losses = result["losses"]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])
    assert result["accuracy"] >= 0.01  # 10x chance: 100 steps of a tiny model only begin to add
    assert capsys.readouterr().out.splitlines()[-1].startswith("held-out accuracy: ")


def _np_mamba(p: dict, ids: np.ndarray, n_layer: int, d_inner: int, d_state: int,
              dt_rank: int) -> np.ndarray:
    """mamba-minimal's model.py forward, transcribed into numpy (float64)."""
    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * w

    def silu(x):
        return x / (1 + np.exp(-x))

    x = p["embedding.weight"][ids]
    length = ids.shape[1]
    for i in range(n_layer):
        q = f"layers.{i}.mixer."
        h = rms(x, p[f"layers.{i}.norm.weight"]) @ p[q + "in_proj.weight"]
        u, res = h[..., :d_inner], h[..., d_inner:]
        w = p[q + "conv1d.weight"]  # [k, d_in]
        k = w.shape[0]
        padded = np.concatenate([np.zeros((u.shape[0], k - 1, d_inner)), u], axis=1)
        u = silu(sum(padded[:, t:t + length] * w[t] for t in range(k)) + p[q + "conv1d.bias"])
        x_dbl = u @ p[q + "x_proj.weight"]
        delta = x_dbl[..., :dt_rank] @ p[q + "dt_proj.weight"] + p[q + "dt_proj.bias"]
        delta = np.log1p(np.exp(delta))
        b, c = x_dbl[..., dt_rank:dt_rank + d_state], x_dbl[..., dt_rank + d_state:]
        a = -np.exp(p[q + "A_log"])
        state, ys = np.zeros((u.shape[0], d_inner, d_state)), []
        for t in range(length):
            state = (np.exp(delta[:, t, :, None] * a) * state
                     + delta[:, t, :, None] * b[:, t, None, :] * u[:, t, :, None])
            ys.append(np.einsum("bdn,bn->bd", state, c[:, t]))
        y = np.stack(ys, axis=1) + u * p[q + "D"]
        x = x + (y * silu(res)) @ p[q + "out_proj.weight"]
    return rms(x, p["norm_f.weight"]) @ p["embedding.weight"].T


@pytest.mark.parametrize("device", DEVICES)
def test_mamba_forward_matches_mamba_minimal(device):
    from mamba_copy import MambaConfig, forward, init_params
    config = MambaConfig(d_model=8, n_layer=2, d_state=4)
    rng = np.random.default_rng(0)
    values = {name: (v + rng.normal(scale=0.1, size=v.shape)).astype(np.float32)
              for name, v in init_params(config).items()}  # not the init's exact 1s
    ids_np = rng.integers(config.vocab_size, size=(2, 9))
    params = {name: gf.Variable(v, name=name) for name, v in values.items()}
    ids = gf.placeholder(gf.int64, [None, 9])
    logits = forward(params, ids, config)
    with gf.Session(device=device) as sess:
        sess.run(gf.global_variables_initializer())
        got = sess.run(logits, {ids: ids_np})
    want = _np_mamba({k: v.astype(np.float64) for k, v in values.items()}, ids_np,
                     config.n_layer, config.d_inner, config.d_state, config.dt_rank)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


def test_mamba_gradients_match_finite_differences():
    """The whole model's training gradient on cpu (float64, every parameter, tied embedding
    head, causal conv, the scan) against central differences of the compiled loss."""
    from mamba_copy import MambaConfig, forward, init_params
    config = MambaConfig(d_model=8, n_layer=2, d_state=4)
    rng = np.random.default_rng(3)
    values = {name: v.astype(np.float64) + rng.normal(scale=0.1, size=v.shape)
              for name, v in init_params(config).items()}
    ids_np = rng.integers(config.vocab_size, size=(2, 11))
    labels_np = rng.integers(config.vocab_size, size=(2, 11))
    names = sorted(values)
    params = {name: gf.placeholder(gf.float64, values[name].shape) for name in names}
    ids, labels = gf.placeholder(gf.int64, [None, 11]), gf.placeholder(gf.int64, [None, 11])
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=forward(params, ids, config)))
    feed_list = [params[name] for name in names] + [ids, labels]
    with gf.Session(device="cpu") as sess:
        f_loss = sess.make_callable(loss, feed_list)
        grads = sess.make_callable(gf.gradients(loss, [params[n] for n in names]), feed_list)(
            *[values[n] for n in names], ids_np, labels_np)
        eps = 1e-6
        for name, grad in zip(names, grads):
            for c in rng.choice(grad.size, min(grad.size, 3), replace=False):
                f = []
                for sign in (1, -1):
                    feed = {n: values[n].copy() for n in names}
                    feed[name].flat[c] += sign * eps
                    f.append(f_loss(*[feed[n] for n in names], ids_np, labels_np))
                numeric = (f[0] - f[1]) / (2 * eps)
                assert abs(grad.flat[c] - numeric) <= 1e-7 + 1e-5 * abs(numeric), (name, c)


@pytest.mark.parametrize("device", GPT_DEVICES)
def test_mamba_copy_loss_falls(device, capsys):
    result = run_example("mamba_copy", "--fast", "--device", device)
    losses = result["losses"]
    # a few dozen steps learn which symbols answer, not yet the copy itself
    assert np.mean(losses[-10:]) < 0.85 * np.mean(losses[:5])
    assert capsys.readouterr().out.splitlines()[-1].startswith("held-out token accuracy: ")


@pytest.mark.parametrize("device", DEVICES)
def test_custom_op_example(device, capsys):
    """The tutorials' kernels as custom ops: numpy agrees, the gradients agree with float64
    central differences, and the network built from them learns the digits."""
    result = run_example("custom_op", "--fast", "--device", device)
    assert result["forward_error"] < 1e-5
    assert result["gradient_error"] < 1e-6
    assert result["losses"][-1] < 0.5 * result["losses"][0]
    assert result["accuracy"] > 0.8  # chance is 10%
    if device == "cpu":
        assert "matmul_tiled_0" in result["kernels"] and "swish_backward_0" in result["kernels"]
    assert capsys.readouterr().out.splitlines()[-1].startswith("test accuracy: ")
