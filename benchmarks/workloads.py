"""W1, W2, W3: the workloads graphflow's launch-count and speed goals refer to (the compiler and
cpu-speed issues). Built exactly as ../shared/workloads.py builds them; `python
benchmarks/workloads.py` checks that both give the same graphs and first losses.

W1: digits MLP 64-128(relu)-10, mean sparse softmax cross-entropy, batch 64 ([None, 64]), Adam 1e-3.
W2: MLP 784-256(relu)-256(relu)-10, random data, batch 128 (static), SGD 0.01.
W3: one GPT block forward + backward (vocab 16, seq 32, d_model 64, 2 heads, batch 16), no update.
Each builder returns (x, y, fetches, (x value, y value)).
"""
from __future__ import annotations

import numpy as np

import graphflow as gf

SEED = 0


def _uniform_linear(rng, fan_in: int, fan_out: int, bias: bool = True):
    bound = 1.0 / np.sqrt(fan_in)
    w = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)
    return w, (rng.uniform(-bound, bound, (fan_out,)).astype(np.float32) if bias else None)


def _mlp(dims, batch):
    rng = np.random.default_rng(SEED)
    x = gf.placeholder(gf.float32, [batch, dims[0]], name="x")
    y = gf.placeholder(gf.int32, [batch], name="y")
    h, params = x, []
    for i in range(len(dims) - 1):
        w0, b0 = _uniform_linear(rng, dims[i], dims[i + 1])
        w, b = gf.Variable(w0, name=f"W{i}"), gf.Variable(b0, name=f"b{i}")
        params += [w, b]
        h = gf.matmul(h, w) + b
        if i < len(dims) - 2:
            h = gf.nn.relu(h)
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    return x, y, loss, params


def _digits_batch():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)
    xtr, _, ytr, _ = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    return xtr[:64].copy(), ytr[:64].copy()


def build_w1():
    x, y, loss, params = _mlp((64, 128, 10), None)
    train = gf.train.AdamOptimizer(1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8).minimize(loss, var_list=params)
    return x, y, [loss, train], _digits_batch()


def build_w2():
    x, y, loss, params = _mlp((784, 256, 256, 10), 128)
    train = gf.train.GradientDescentOptimizer(0.01).minimize(loss, var_list=params)
    rng = np.random.default_rng(SEED + 2)
    data = (rng.standard_normal((128, 784)).astype(np.float32), rng.integers(0, 10, 128).astype(np.int32))
    return x, y, [loss, train], data


GPT_PARAMS = ["tok_emb", "pos_emb", "ln1_g", "ln1_b", "w_qkv", "b_qkv", "w_o", "b_o", "ln2_g", "ln2_b",
              "w_fc", "b_fc", "w_proj", "b_proj", "lnf_g", "lnf_b", "w_head"]


def _gpt_init(D, V, T, F):
    rng = np.random.default_rng(SEED + 3)
    p = {"tok_emb": (0.02 * rng.standard_normal((V, D))).astype(np.float32),
         "pos_emb": (0.02 * rng.standard_normal((T, D))).astype(np.float32)}
    for n in ("ln1", "ln2", "lnf"):
        p[n + "_g"], p[n + "_b"] = np.ones(D, np.float32), np.zeros(D, np.float32)
    p["w_qkv"], p["b_qkv"] = _uniform_linear(rng, D, 3 * D)
    p["w_o"], p["b_o"] = _uniform_linear(rng, D, D)
    p["w_fc"], p["b_fc"] = _uniform_linear(rng, D, F)
    p["w_proj"], p["b_proj"] = _uniform_linear(rng, F, D)
    p["w_head"], _ = _uniform_linear(rng, D, V, bias=False)
    return p


def build_w3(B=16, T=32, D=64, H=2, V=16):
    hd = D // H
    tok = gf.placeholder(gf.int32, [B, T], name="x")
    tgt = gf.placeholder(gf.int32, [B, T], name="y")
    P = {k: gf.Variable(v, name=k) for k, v in _gpt_init(D, V, T, 4 * D).items()}
    mask = gf.constant(np.triu(np.full((T, T), -1e9, np.float32), k=1), name="causal_bias")

    def ln(t, n):
        return gf.nn.layer_norm(t, P[n + "_g"], P[n + "_b"], axis=-1, epsilon=1e-5)

    def heads(t):
        return gf.transpose(gf.reshape(t, [B, T, H, hd]), [0, 2, 1, 3])

    h = gf.gather(P["tok_emb"], tok) + P["pos_emb"]
    qkv = gf.matmul(gf.reshape(ln(h, "ln1"), [B * T, D]), P["w_qkv"]) + P["b_qkv"]
    q, k, v = heads(qkv[:, 0:D]), heads(qkv[:, D:2 * D]), heads(qkv[:, 2 * D:3 * D])
    att = gf.nn.softmax(gf.matmul(q, k, transpose_b=True) * float(1.0 / np.sqrt(hd)) + mask, axis=-1)
    y = gf.reshape(gf.transpose(gf.matmul(att, v), [0, 2, 1, 3]), [B * T, D])
    h = h + gf.reshape(gf.matmul(y, P["w_o"]) + P["b_o"], [B, T, D])
    m = gf.nn.gelu(gf.matmul(gf.reshape(ln(h, "ln2"), [B * T, D]), P["w_fc"]) + P["b_fc"], approximate=True)
    h = h + gf.reshape(gf.matmul(m, P["w_proj"]) + P["b_proj"], [B, T, D])
    logits = gf.matmul(gf.reshape(ln(h, "lnf"), [B * T, D]), P["w_head"])
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=gf.reshape(tgt, [-1]),
                                                                         logits=logits))
    grads = gf.gradients(loss, [P[k] for k in GPT_PARAMS])
    rng = np.random.default_rng(SEED + 4)
    data = (rng.integers(0, V, (B, T)).astype(np.int32), rng.integers(0, V, (B, T)).astype(np.int32))
    return tok, tgt, [loss, grads], data


BUILDERS = {"W1": build_w1, "W2": build_w2, "W3": build_w3}


def build(name: str):
    """(graph, x, y, fetches, data, initializer) for workload `name` in a new graph."""
    g = gf.Graph()
    with g.as_default():
        x, y, fetches, data = BUILDERS[name]()
        init = gf.global_variables_initializer()
    return g, x, y, fetches, data, init


if __name__ == "__main__":  # the same graphs as the shared reference construction
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
    import workloads as shared
    for name in BUILDERS:
        firsts = []
        for builders in (BUILDERS, shared.BUILDERS):
            g = gf.Graph()
            with g.as_default():
                x, y, fetches, (xv, yv) = builders[name]()
                init = gf.global_variables_initializer()
            with gf.Session(graph=g, device="reference") as s:
                s.run(init)
                firsts.append((float(s.run(fetches, {x: xv, y: yv})[0]),
                               [(op.type, [list(t.shape) for t in op.outputs]) for op in g.get_operations()]))
        same = firsts[0] == firsts[1]
        print(f"{name}: first loss {firsts[0][0]:.6f} vs shared {firsts[1][0]:.6f}; same graph: {same}")
