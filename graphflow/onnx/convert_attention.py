"""ONNX Attention (opset 23+): scaled dot-product attention with masks, causal and sliding-window
frontiers, a KV cache, grouped-query heads and softcap, from matmul, softmax and where."""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..graph import Tensor
from ..ops import array as arr
from ..ops import elementwise as ew
from ..ops import nn as gnn
from ..ops import reduction as red
from ..ops.core import cast, constant, zeros_like
from ..ops.linalg import matmul
from .common import Unsupported, input_at, to_dtype


def _heads(t: Tensor, heads: int | None, what: str) -> Tensor:
    """[B, S, heads*H] -> [B, heads, S, H]."""
    if heads is None:
        raise Unsupported(f"3-D {what} needs q_num_heads and kv_num_heads")
    b, s, hidden = t.shape
    if hidden is None or hidden % heads:
        raise Unsupported(f"{what} hidden size {hidden} is not a multiple of {heads} heads")
    return arr.transpose(arr.reshape(t, [-1 if b is None else b, s, heads, hidden // heads]),
                         [0, 2, 1, 3])


def _frontier(q: int, kv: int, offset: int, left: int, right: int, causal: bool) -> np.ndarray:
    """Allowed (query, key) pairs of the causal and sliding-window rules, [q, kv] bool."""
    diff = np.arange(q)[:, None] + offset - np.arange(kv)[None, :]
    allowed = np.ones((q, kv), bool)
    if causal:
        allowed &= diff >= 0
    if left >= 0:
        allowed &= diff <= left
    if right >= 0:
        allowed &= -diff <= right
    return allowed


def _run_time_frontier(nonpad: Tensor, q: int, kv: int, left: int, right: int, causal: bool,
                       dtype) -> Tensor:
    """The [B, 1, q, kv] bias of an external cache holding nonpad[b] valid keys: key j is
    padding when j >= nonpad[b]; query i sits at position i + nonpad[b] - q."""
    if len(nonpad.shape) != 1 or not nonpad.dtype.is_integer:
        raise Unsupported("nonpad_kv_seqlen must be a 1-D integer tensor")
    lens = arr.reshape(cast(nonpad, dtypes.int64), [-1, 1, 1])
    j = np.arange(kv)[None, :]
    i = np.arange(q)[:, None]
    allowed = ew.less(constant(np.broadcast_to(j, (q, kv)).astype(np.int64)), lens)
    # diff = i + nonpad - q - j: the query's position minus the key's
    base = constant((i - q - j).astype(np.int64))
    if causal:
        allowed = allowed & ew.less_equal(-base, lens)
    if left >= 0:
        allowed = allowed & ew.less_equal(base + lens, left)
    if right >= 0:
        allowed = allowed & ew.less_equal(-(base + lens), right)
    bias = ew.where(allowed, constant(0.0, dtype), constant(-math.inf, dtype))
    return arr.expand_dims(bias, 1)


def _attention(node, inputs, attrs, opset):
    q, k, v = inputs[:3]
    mask, past_k, past_v = input_at(inputs, 3), input_at(inputs, 4), input_at(inputs, 5)
    nonpad = input_at(inputs, 6)
    if nonpad is not None and past_k is not None:
        raise Unsupported("nonpad_kv_seqlen together with a past cache")
    if not q.dtype.is_floating or k.dtype is not q.dtype or v.dtype is not q.dtype:
        raise Unsupported("Attention needs Q, K, V of one floating dtype")
    if (past_k is None) != (past_v is None):
        raise Unsupported("past_key and past_value must come together")
    rank = len(q.shape)
    qh, kvh = attrs.get("q_num_heads"), attrs.get("kv_num_heads")
    if rank == 3:
        q, k, v = _heads(q, qh, "Q"), _heads(k, kvh, "K"), _heads(v, kvh, "V")
    elif rank != 4 or qh is not None or kvh is not None:
        raise Unsupported("Attention needs 4-D Q, K, V (or 3-D with head counts)")
    if None in q.shape[1:] or None in k.shape[1:] or None in v.shape[1:]:
        raise Unsupported("Attention needs known head, sequence and head-size dims")
    if past_k is not None:
        if None in past_k.shape[1:]:
            raise Unsupported("Attention needs a past cache of known shape")
        k, v = arr.concat([past_k, k], 2), arr.concat([past_v, v], 2)
    present_k, present_v = k, v
    offset = 0 if past_k is None else past_k.shape[2]
    q_len, kv_len = q.shape[2], k.shape[2]
    scale = attrs.get("scale")
    scale = 1 / math.sqrt(q.shape[3]) if scale is None else scale
    s = float(q.dtype.np.type(math.sqrt(scale)))
    # bias: attn_mask (padded to kv_len) plus the causal / window frontiers
    bias = None
    if mask is not None:
        width = mask.shape[-1]
        if width is None or width > kv_len:
            raise Unsupported("attn_mask's last dim must be known and at most the kv length")
        if width < kv_len:
            pads = [0] * (2 * len(mask.shape))
            pads[2 * len(mask.shape) - 1] = kv_len - width
            from .convert_shape import pad
            mask = pad(mask, pads, "constant", False if mask.dtype.is_bool else -math.inf)
        if mask.dtype.is_bool:
            bias = ew.where(mask, constant(0.0, q.dtype), constant(-math.inf, q.dtype))
        elif mask.dtype is q.dtype:
            bias = mask
        else:
            raise Unsupported(f"attn_mask of dtype {mask.dtype.name}")
    left, right = attrs.get("left_window_size", -1), attrs.get("right_window_size", -1)
    causal = bool(attrs.get("is_causal", 0))
    if nonpad is not None:
        frontier = _run_time_frontier(nonpad, q_len, kv_len, left, right, causal, q.dtype)
        bias = frontier if bias is None else bias + frontier
    elif causal or left >= 0 or right >= 0:
        allowed = _frontier(q_len, kv_len, offset, left, right, causal)
        frontier = constant(np.where(allowed, 0.0, -np.inf).astype(q.dtype.np))
        bias = frontier if bias is None else bias + frontier
    # grouped-query heads: each KV head serves q_heads / kv_heads query heads, interleaved
    nq, nk = q.shape[1], k.shape[1]
    if nq != nk:
        if nq % nk or v.shape[1] != nk:
            raise Unsupported(f"{nq} query heads do not group over {nk} KV heads")
        rep = nq // nk

        def repeat(t):
            e = arr.expand_dims(t, 2)
            b = t.shape[0]
            return arr.reshape(arr.concat([e] * rep, 2),
                               [-1 if b is None else b, nq, t.shape[2], t.shape[3]])
        k, v = repeat(k), repeat(v)
    scores = matmul(q * s, k * s, transpose_b=True)
    softcap = attrs.get("softcap")
    if softcap is not None and softcap > 0:
        scores = ew.tanh(scores / float(softcap)) * float(softcap)
    qk_out = scores
    with_bias = scores if bias is None else scores + bias
    mode = attrs.only("qk_matmul_output_mode", 0, 1, 2, 3)
    if mode == 2:
        qk_out = with_bias
    precision = attrs.get("softmax_precision")
    logits = with_bias if precision is None else cast(with_bias, to_dtype(precision))
    probs = gnn.softmax(logits, -1)
    if bias is not None:
        dead = ew.equal(red.reduce_max(bias, -1, keepdims=True), -math.inf)
        probs = ew.where(dead, zeros_like(probs), probs)
    probs = cast(probs, q.dtype)
    if mode == 3:
        qk_out = probs
    y = matmul(probs, v)
    if rank == 3:
        b = y.shape[0]
        y = arr.reshape(arr.transpose(y, [0, 2, 1, 3]), [-1 if b is None else b, q_len, -1])
    return [y, present_k, present_v, qk_out]


ATTENTION = {"Attention": _attention}
