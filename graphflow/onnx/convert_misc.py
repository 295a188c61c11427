"""ONNX Einsum, RotaryEmbedding, LRN, MeanVarianceNormalization and inverse hyperbolics."""
from __future__ import annotations

from ..ops import array as arr
from ..ops import elementwise as ew
from ..ops import reduction as red
from .common import Unsupported, input_at, need_float
from .convert_shape import pad


def _einsum_terms(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    eq = equation.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise Unsupported(f"Einsum equation {equation!r} does not match {len(ranks)} inputs")
    spare = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    ell_rank = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t),
                   default=0)
    ell = "".join(next(spare) for _ in range(ell_rank))
    expanded = []
    for t, r in zip(terms, ranks):
        if "..." in t:
            n = r - len(t.replace("...", ""))
            t = t.replace("...", ell[ell_rank - n:] if n else "")
        if len(t) != r or not t.isalpha():
            raise Unsupported(f"Einsum term {t!r} for a rank-{r} input")
        if len(set(t)) != len(t):
            raise Unsupported("Einsum with a repeated index in one term (diagonals)")
        expanded.append(t)
    if arrow:
        out = out.replace("...", ell)
    else:
        counts = {}
        for t in expanded:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    if len(set(out)) != len(out) or any(c not in "".join(expanded) for c in out):
        raise Unsupported(f"Einsum output {out!r}")
    return expanded, out


def _einsum(node, inputs, attrs, opset):
    for t in inputs:
        if t.dtype.is_bool or t.dtype is not inputs[0].dtype:
            raise Unsupported("Einsum needs number inputs of one dtype")
    terms, out = _einsum_terms(attrs["equation"], [len(t.shape) for t in inputs])
    letters = out + "".join(sorted({c for t in terms for c in t} - set(out)))
    product = None
    for t, term in zip(inputs, terms):
        order = sorted(range(len(term)), key=lambda i: letters.index(term[i]))
        x = arr.transpose(t, order) if order != list(range(len(term))) else t
        present = sorted(term, key=letters.index)
        for pos, c in enumerate(letters):
            if c not in present:
                x = arr.expand_dims(x, pos)
        product = x if product is None else product * x
    summed = list(range(len(out), len(letters)))
    return red.reduce_sum(product, summed) if summed else product


def _rotary(node, inputs, attrs, opset):
    x, cos, sin = inputs[:3]
    pos = input_at(inputs, 3)
    need_float(x)
    rank = len(x.shape)
    interleaved = attrs.get("interleaved", 0)
    rot_dim = attrs.get("rotary_embedding_dim", 0)
    heads = attrs.get("num_heads", 0)
    if rank == 4:
        x4 = arr.transpose(x, [0, 2, 1, 3])                     # [B, S, heads, H]
    elif rank == 3:
        b, s, hidden = x.shape
        if not heads or hidden is None or hidden % heads:
            raise Unsupported("3-D RotaryEmbedding needs num_heads dividing the hidden size")
        x4 = arr.reshape(x, [-1 if b is None else b, s, heads, hidden // heads])
    else:
        raise Unsupported("RotaryEmbedding needs a 3-D or 4-D input")
    head = x4.shape[3]
    rot_dim = rot_dim or head
    if head is None or rot_dim % 2 or rot_dim > head:
        raise Unsupported("RotaryEmbedding needs a known head size and an even rotary dim")
    half = rot_dim // 2
    rot, keep = x4[..., :rot_dim], x4[..., rot_dim:]
    if pos is not None:
        cos, sin = arr.gather(cos, pos, 0), arr.gather(sin, pos, 0)
    cos, sin = arr.expand_dims(cos[..., :half], 2), arr.expand_dims(sin[..., :half], 2)
    x1, x2 = (rot[..., 0::2], rot[..., 1::2]) if interleaved else (rot[..., :half],
                                                                   rot[..., half:])
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if interleaved:
        pair = arr.concat([arr.expand_dims(real, -1), arr.expand_dims(imag, -1)], -1)
        rotated = arr.reshape(pair, [-1 if d is None else d for d in rot.shape[:3]] + [rot_dim])
    else:
        rotated = arr.concat([real, imag], -1)
    y = arr.concat([rotated, keep], -1) if rot_dim < head else rotated
    if rank == 3:
        b = x.shape[0]
        return arr.reshape(y, [-1 if b is None else b] + list(x.shape[1:]))
    return arr.transpose(y, [0, 2, 1, 3])


def _lrn(node, inputs, attrs, opset):
    x = inputs[0]
    need_float(x)
    size = attrs["size"]
    alpha, beta, bias = attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0)
    rank = len(x.shape)
    c = x.shape[1]
    if rank < 3 or c is None:
        raise Unsupported("LRN needs N, C (known), spatial...")
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    pads = [0] * (2 * rank)
    pads[1], pads[rank + 1] = before, after
    sq = pad(x * x, pads, "constant", 0.0)
    total = None
    for i in range(size):
        part = sq[:, i:i + c]
        total = part if total is None else total + part
    return x / ew.pow(total * (alpha / size) + bias, beta)


def _mvn(node, inputs, attrs, opset):
    x = inputs[0]
    need_float(x)
    axes = list(attrs.get("axes", [0, 2, 3]))
    mean = red.reduce_mean(x, axes, keepdims=True)
    d = x - mean
    var = red.reduce_mean(d * d, axes, keepdims=True)
    return d / (ew.sqrt(var) + 1e-9)


def _float(fn):
    def convert(node, inputs, attrs, opset):
        need_float(inputs[0])
        return fn(inputs[0])
    return convert


MISC = {
    "Einsum": _einsum, "RotaryEmbedding": _rotary, "LRN": _lrn,
    "MeanVarianceNormalization": _mvn,
    "Asinh": _float(lambda x: ew.log(x + ew.sqrt(x * x + 1.0))),
    "Acosh": _float(lambda x: ew.log(x + ew.sqrt(x * x - 1.0))),
    "Atanh": _float(lambda x: ew.log((x + 1.0) / (1.0 - x)) * 0.5),
}
