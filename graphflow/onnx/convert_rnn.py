"""ONNX RNN, GRU and LSTM, unrolled over a sequence of static length into matmuls and
elementwise ops (so they fuse and differentiate like any other graph)."""
from __future__ import annotations

from ..graph import Tensor
from ..nn import relu
from ..ops import array as arr
from ..ops import elementwise as ew
from ..ops.linalg import matmul
from .common import Unsupported, input_at

_ACTIVATIONS = {"Sigmoid": ew.sigmoid, "Tanh": ew.tanh, "Relu": relu}
_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
_DEFAULT_ACTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


def _split(t: Tensor, parts: int, axis: int = -1) -> list[Tensor]:
    n = t.shape[axis] // parts
    key = (slice(None),) * (axis % len(t.shape))
    return [t[key + (slice(i * n, (i + 1) * n),)] for i in range(parts)]


def _recurrent(kind: str):
    gates = _GATES[kind]

    def convert(node, inputs, attrs, opset):
        x, w, r = inputs[:3]
        b, seq_lens, h0 = input_at(inputs, 3), input_at(inputs, 4), input_at(inputs, 5)
        c0, peep = (input_at(inputs, 6), input_at(inputs, 7)) if kind == "LSTM" else (None, None)
        if seq_lens is not None:
            raise Unsupported("sequence_lens (run-time sequence lengths)")
        if not x.dtype.is_floating:
            raise Unsupported(f"{kind} of {x.dtype.name}")
        if attrs.get("activation_alpha") or attrs.get("activation_beta"):
            raise Unsupported("activation_alpha/beta")
        if kind == "LSTM" and attrs.get("input_forget", 0):
            raise Unsupported("input_forget=1")
        linear_before_reset = attrs.get("linear_before_reset", 0) if kind == "GRU" else 0
        clip = attrs.get("clip")
        direction = attrs.only("direction", "forward", "reverse", "bidirectional")
        layout = attrs.get("layout", 0) if opset >= 14 else 0
        hidden = attrs.get("hidden_size", w.shape[1] // gates if w.shape[1] else None)
        dirs = 2 if direction == "bidirectional" else 1
        names = list(attrs.get("activations", _DEFAULT_ACTS[kind] * dirs))
        if len(names) != len(_DEFAULT_ACTS[kind]) * dirs or any(
                a not in _ACTIVATIONS for a in names):
            raise Unsupported(f"activations {names} (supported: Sigmoid, Tanh, Relu)")
        if layout:
            x = arr.transpose(x, [1, 0, 2])
            h0 = None if h0 is None else arr.transpose(h0, [1, 0, 2])
            c0 = None if c0 is None else arr.transpose(c0, [1, 0, 2])
        steps = x.shape[0]
        if steps is None or None in w.shape or None in r.shape:
            raise Unsupported(f"{kind} needs a known sequence length and weight shapes")
        per = len(_DEFAULT_ACTS[kind])
        ys, hs, cs = [], [], []
        for d in range(dirs):
            acts = [_ACTIVATIONS[a] for a in names[d * per:(d + 1) * per]]
            reverse = direction == "reverse" or d == 1
            out = _run_direction(kind, x, w[d], r[d], None if b is None else b[d],
                                 None if h0 is None else h0[d], None if c0 is None else c0[d],
                                 None if peep is None else peep[d], hidden, acts, clip,
                                 linear_before_reset, reverse, steps)
            ys.append(out[0])
            hs.append(out[1])
            cs.append(out[2])
        y = arr.stack(ys, 1)                                    # [seq, dirs, batch, hidden]
        y_h, y_c = arr.stack(hs, 0), (arr.stack(cs, 0) if kind == "LSTM" else None)
        if layout:
            y = arr.transpose(y, [2, 0, 1, 3])
            y_h = arr.transpose(y_h, [1, 0, 2])
            y_c = None if y_c is None else arr.transpose(y_c, [1, 0, 2])
        return [y, y_h] + ([y_c] if kind == "LSTM" else [])
    return convert


def _run_direction(kind, x, w, r, b, h, c, peep, hidden, acts, clip, lbr, reverse, steps):
    wb, rb = (None, None) if b is None else _split(b, 2, 0)
    batch = x.shape[1]
    if h is None or (kind == "LSTM" and c is None):
        if batch is None:
            raise Unsupported("zero initial states need a known batch size")
        from ..ops.core import zeros
        h = zeros([batch, hidden], x.dtype) if h is None else h
        c = zeros([batch, hidden], x.dtype) if c is None else c
    # input projections of every step at once: [seq, batch, gates*hidden]
    xw = matmul(x, w, transpose_b=True)
    if wb is not None:
        xw = xw + wb
    f = acts[0]

    def clipped(t):
        return t if not clip else ew.minimum(ew.maximum(t, -float(clip)), float(clip))

    outs = [None] * steps
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        xt = xw[t]
        if kind == "RNN":
            pre = xt + matmul(h, r, transpose_b=True) + (0.0 if rb is None else rb)
            h = f(clipped(pre))
        elif kind == "GRU":
            xz, xr, xh = _split(xt, 3)
            rz, rr, rh = _split(r, 3, 0)
            bz, br, bh = (None, None, None) if rb is None else _split(rb, 3, 0)

            def rec(m, bias, state):
                out = matmul(state, m, transpose_b=True)
                return out if bias is None else out + bias
            z = f(clipped(xz + rec(rz, bz, h)))
            rt = f(clipped(xr + rec(rr, br, h)))
            if lbr:
                hh = acts[1](clipped(xh + rt * rec(rh, bh, h)))
            else:
                hh = acts[1](clipped(xh + rec(rh, bh, rt * h)))
            h = (1.0 - z) * hh + z * h
        else:
            pre = xt + matmul(h, r, transpose_b=True)
            if rb is not None:
                pre = pre + rb
            gi, go, gf, gc = _split(pre, 4)
            pi, po, pf = (None, None, None) if peep is None else _split(peep, 3, 0)
            i = f(clipped(gi if pi is None else gi + pi * c))
            fg = f(clipped(gf if pf is None else gf + pf * c))
            cc = acts[1](clipped(gc))
            c = fg * c + i * cc
            o = f(clipped(go if po is None else go + po * c))
            h = o * acts[2](c)
        outs[t] = h
    return arr.stack(outs, 0), h, c


RNN = {kind: _recurrent(kind) for kind in _GATES}
