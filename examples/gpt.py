"""minGPT's model as a graphflow graph, shared by gpt_sort.py and gpt_adder.py.

Follows karpathy/minGPT's mingpt/model.py: token + position embeddings, `n_layer` pre-layer-norm
blocks (causal multi-head self-attention, then a tanh-GELU MLP 4x wide), a final layer norm and
a bias-free head; dropout on the embeddings, the attention weights and both residual branches.
Weights start as minGPT's do (normal(0, 0.02), residual projections 0.02/sqrt(2*n_layer), biases
0, layer norms 1 and 0). Training is minGPT's Trainer: AdamW with weight decay on the matmul
weights only, gradient clipping by global norm, a constant learning rate.

The model is built twice from one set of variables: once with dropout (the training step) and
once without (evaluation). Both take a full block of tokens; generation pads the prompt to the
block and reads the logits at the last real position, which causal attention makes exactly
minGPT's `generate` on the shorter sequence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import graphflow as gf


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int
    n_layer: int = 3  # gpt-nano
    n_head: int = 3
    n_embd: int = 48
    dropout: float = 0.1  # minGPT's embd_pdrop = resid_pdrop = attn_pdrop


@dataclass
class TrainConfig:  # minGPT's Trainer defaults, with the demos' learning rate
    learning_rate: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    grad_norm_clip: float = 1.0
    batch_size: int = 64


def fast_configs(config: GPTConfig) -> tuple[GPTConfig, TrainConfig]:
    """The --fast mode the tests use: a one-layer, 16-wide model, a larger learning rate,
    half batches (it learns visibly in a few dozen steps)."""
    small = GPTConfig(config.vocab_size, config.block_size, n_layer=1, n_head=2, n_embd=16)
    return small, TrainConfig(learning_rate=1e-2, batch_size=32)


def init_params(config: GPTConfig, seed: int = 0) -> dict[str, gf.Variable]:
    """Every parameter, by minGPT's name; the matmul weights are the ones named `*.weight`
    other than embeddings and layer norms (see `decayed`)."""
    c, params = config.n_embd, {}
    seeds = iter(range(seed * 1000, seed * 1000 + 1000))

    def normal(name: str, shape: tuple, std: float = 0.02) -> None:
        init = gf.initializers.random_normal(0.0, std, seed=next(seeds))
        params[name] = gf.Variable(init(shape), name=name)

    def const(name: str, shape: tuple, value: float) -> None:
        params[name] = gf.Variable(np.full(shape, value, np.float32), name=name)

    proj_std = 0.02 / math.sqrt(2 * config.n_layer)
    normal("wte", (config.vocab_size, c))
    normal("wpe", (config.block_size, c))
    for i in range(config.n_layer):
        p = f"h{i}."
        const(p + "ln_1.weight", (c,), 1.0)
        const(p + "ln_1.bias", (c,), 0.0)
        normal(p + "attn.c_attn.weight", (c, 3 * c))
        const(p + "attn.c_attn.bias", (3 * c,), 0.0)
        normal(p + "attn.c_proj.weight", (c, c), proj_std)
        const(p + "attn.c_proj.bias", (c,), 0.0)
        const(p + "ln_2.weight", (c,), 1.0)
        const(p + "ln_2.bias", (c,), 0.0)
        normal(p + "mlp.c_fc.weight", (c, 4 * c))
        const(p + "mlp.c_fc.bias", (4 * c,), 0.0)
        normal(p + "mlp.c_proj.weight", (4 * c, c), proj_std)
        const(p + "mlp.c_proj.bias", (c,), 0.0)
    const("ln_f.weight", (c,), 1.0)
    const("ln_f.bias", (c,), 0.0)
    normal("lm_head.weight", (c, config.vocab_size))
    return params


def decayed(params: dict[str, gf.Variable]) -> list[gf.Variable]:
    """minGPT's weight-decay set: the weights of Linear layers (not biases, norms, embeddings)."""
    return [v for name, v in params.items() if name.endswith(".weight") and ".ln_" not in name
            and not name.startswith("ln_")]


def _dense(x: gf.Tensor, w: gf.Tensor, b: gf.Tensor | None = None) -> gf.Tensor:
    """x [B, T, in] @ w [in, out] (+ b) -> [B, T, out]."""
    t, n_in, n_out = x.shape[1], w.shape[0], w.shape[1]
    y = gf.reshape(x, [-1, n_in]) @ w
    if b is not None:
        y = y + b
    return gf.reshape(y, [-1, t, n_out])


def _dropout(x: gf.Tensor, rate: float) -> gf.Tensor:
    return gf.nn.dropout(x, rate) if rate > 0 else x


def forward(params: dict[str, gf.Variable], idx: gf.Tensor, config: GPTConfig,
            dropout: float) -> gf.Tensor:
    """Logits [B, T, vocab] for token ids idx [B, T] (T = block_size)."""
    t, c, nh = config.block_size, config.n_embd, config.n_head
    hs = c // nh
    causal = np.triu(np.full((t, t), -1e9, np.float32), k=1)  # -1e9 above the diagonal
    x = gf.nn.embedding_lookup(params["wte"], idx) + params["wpe"]
    x = _dropout(x, dropout)
    for i in range(config.n_layer):
        p = f"h{i}."
        with gf.name_scope(f"h{i}"):
            with gf.name_scope("attn"):
                h = gf.nn.layer_norm(x, params[p + "ln_1.weight"], params[p + "ln_1.bias"])
                qkv = _dense(h, params[p + "attn.c_attn.weight"], params[p + "attn.c_attn.bias"])

                def heads(part: int) -> gf.Tensor:  # [B, T, C] slice -> [B, nh, T, hs]
                    s = qkv[:, :, part * c:(part + 1) * c]
                    return gf.transpose(gf.reshape(s, [-1, t, nh, hs]), [0, 2, 1, 3])

                q, k, v = heads(0), heads(1), heads(2)
                att = gf.matmul(q, k, transpose_b=True) * (1.0 / math.sqrt(hs)) + causal
                att = _dropout(gf.nn.softmax(att), dropout)
                y = gf.reshape(gf.transpose(att @ v, [0, 2, 1, 3]), [-1, t, c])
                y = _dense(y, params[p + "attn.c_proj.weight"], params[p + "attn.c_proj.bias"])
                x = x + _dropout(y, dropout)
            with gf.name_scope("mlp"):
                h = gf.nn.layer_norm(x, params[p + "ln_2.weight"], params[p + "ln_2.bias"])
                h = gf.nn.gelu(_dense(h, params[p + "mlp.c_fc.weight"], params[p + "mlp.c_fc.bias"]),
                               approximate=True)
                h = _dense(h, params[p + "mlp.c_proj.weight"], params[p + "mlp.c_proj.bias"])
                x = x + _dropout(h, dropout)
    x = gf.nn.layer_norm(x, params["ln_f.weight"], params["ln_f.bias"])
    return _dense(x, params["lm_head.weight"])


def masked_loss(logits: gf.Tensor, targets: gf.Tensor) -> gf.Tensor:
    """Mean cross-entropy over the positions whose target is >= 0 (minGPT's ignore_index=-1)."""
    vocab = logits.shape[-1]
    flat = gf.reshape(targets, [-1])
    keep = gf.cast(flat >= 0, gf.float32)
    losses = gf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=gf.maximum(flat, 0), logits=gf.reshape(logits, [-1, vocab]))
    return gf.reduce_sum(losses * keep) / gf.reduce_sum(keep)


class GPT:
    """The training step and the greedy generator, compiled in one Session."""

    def __init__(self, config: GPTConfig, train: TrainConfig, device: str | None, seed: int = 0):
        self.config = config
        t = config.block_size
        self.idx = gf.placeholder(gf.int64, [None, t], name="idx")
        self.targets = gf.placeholder(gf.int64, [None, t], name="targets")
        self.params = init_params(config, seed)
        with gf.name_scope("train"):
            self.loss = masked_loss(forward(self.params, self.idx, config, config.dropout),
                                    self.targets)
        with gf.name_scope("eval"):
            self.logits = forward(self.params, self.idx, config, 0.0)
        optimizer = gf.train.AdamWOptimizer(train.learning_rate, train.weight_decay,
                                            beta1=train.betas[0], beta2=train.betas[1])
        grads_and_vars = optimizer.compute_gradients(self.loss, list(self.params.values()))
        clipped, _ = gf.clip_by_global_norm([g for g, _ in grads_and_vars], train.grad_norm_clip)
        self.train_op = optimizer.apply_gradients(
            zip(clipped, [v for _, v in grads_and_vars]), decay_var_list=decayed(self.params))
        init = gf.global_variables_initializer()
        gf.get_default_graph().finalize()
        self.sess = gf.Session(device=device)
        self.sess.run(init)
        self.step = self.sess.make_callable([self.train_op, self.loss],
                                            feed_list=[self.idx, self.targets])
        self._logits = self.sess.make_callable(self.logits, feed_list=[self.idx])

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One AdamW step on a batch; returns the loss before it."""
        return float(self.step(x, y)[1])

    def generate(self, prompt: np.ndarray, new_tokens: int) -> np.ndarray:
        """Greedy continuation of prompt [B, n] by new_tokens tokens: [B, n + new_tokens]."""
        batch, n = prompt.shape
        seq = np.zeros((batch, self.config.block_size), np.int64)
        seq[:, :n] = prompt
        for pos in range(n, n + new_tokens):
            logits = self._logits(seq)
            token = logits[:, pos - 1, :].argmax(axis=-1)
            if pos < self.config.block_size:
                seq[:, pos] = token
            else:  # the last token is never fed back (minGPT's block is one shorter)
                seq = np.concatenate([seq, token[:, None]], axis=1)
        return seq[:, :n + new_tokens]

    def close(self) -> None:
        self.sess.close()
