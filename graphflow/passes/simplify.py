"""Algebraic simplification as a table of small rules.

Each rule looks at one op and returns the tensor that may replace its output (same static
shape and dtype), or None. A rule may instead rewrite the op in place (fewer ops, same
value) and return None. Rules are exact in floating point: x*1, x+0, x-0, x/1, neg(neg x),
cast to the same dtype, transpose of a transpose, reshape of a reshape, one-input AddN,
pow(x, 1) and pow(x, 2). A fill of a constant becomes a literal: a scalar constant, or a
broadcastable [1, ..., 1] one where every consumer broadcasts anyway, so the relu gradient's
`select(x > 0, g, zeros)` keeps no zeros buffer. exp/log pairs are left alone: neither
log(exp(x)) = x (exp overflows) nor exp(log(x)) = x (x <= 0) holds in float.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..registry import Spec
from .lowered import LGraph, LOp, LTensor

BROADCASTING = {"Add", "Sub", "Mul", "Div", "Pow", "Maximum", "Minimum", "Select", "Equal",
                "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual", "LogicalAnd",
                "LogicalOr"}


def _const_value(t: LTensor) -> np.ndarray | None:
    return t.op.attrs["value"] if t.op.type == "Const" else None


def _is_all(t: LTensor, value: float) -> bool:
    v = _const_value(t)
    return v is not None and v.size > 0 and bool(np.all(v == value))


def _same(a: LTensor, out: LTensor) -> LTensor | None:
    """`a` may stand for `out` when the static shapes and dtypes agree."""
    return a if tuple(a.shape) == tuple(out.shape) and a.dtype is out.dtype else None


def _identity(op: LOp, g: LGraph) -> LTensor | None:
    return _same(op.inputs[0], op.outputs[0])


def _neutral(value: float, positions: tuple) -> Callable:
    def rule(op: LOp, g: LGraph) -> LTensor | None:
        for pos in positions:
            if _is_all(op.inputs[pos], value):
                kept = _same(op.inputs[1 - pos], op.outputs[0])
                if kept is not None:
                    return kept
        return None
    return rule


def _neg_neg(op: LOp, g: LGraph) -> LTensor | None:
    inner = op.inputs[0].op
    return _same(inner.inputs[0], op.outputs[0]) if inner.type == "Neg" else None


def _cast(op: LOp, g: LGraph) -> LTensor | None:
    return op.inputs[0] if op.inputs[0].dtype is op.outputs[0].dtype else None


def _transpose(op: LOp, g: LGraph) -> LTensor | None:
    inner = op.inputs[0].op
    if inner.type == "Transpose":  # transpose(transpose(x, p), q) = transpose(x, p[q])
        op.attrs["perm"] = tuple(inner.attrs["perm"][i] for i in op.attrs["perm"])
        op.inputs = [inner.inputs[0]]
    if tuple(op.attrs["perm"]) == tuple(range(len(op.attrs["perm"]))):
        return _same(op.inputs[0], op.outputs[0])
    return None


def _reshape(op: LOp, g: LGraph) -> LTensor | None:
    inner = op.inputs[0].op
    if inner.type in ("Reshape", "ExpandDims", "Squeeze") and op.type == "Reshape" \
            and None not in op.outputs[0].shape:
        op.inputs = [inner.inputs[0]]  # a fully known target does not depend on the middle
    return _same(op.inputs[0], op.outputs[0]) if None not in op.outputs[0].shape else None


def _add_n(op: LOp, g: LGraph) -> LTensor | None:
    if len(op.inputs) == 1:
        return _same(op.inputs[0], op.outputs[0])
    return _slice_grads_to_concat(op, g)


def _slice_grads_to_concat(op: LOp, g: LGraph) -> LTensor | None:
    """The sum of the gradients of slices that tile a tensor along one axis (attention's q, k,
    v cut from one projection) is their concatenation: no zeros written, nothing added."""
    out = op.outputs[0]
    if None in out.shape or any(t.op.type != "StridedSliceGrad" for t in op.inputs):
        return None
    pieces, axis = [], None
    for t in op.inputs:
        key, ref = t.op.attrs["key"], t.op.inputs[1]
        if tuple(ref.shape) != tuple(out.shape) or t.op.inputs[0].dtype != out.dtype \
                or len(key) > len(out.shape) or any(k[0] != "s" for k in key):
            return None
        cut = [i for i, k in enumerate(key) if range(out.shape[i])[slice(*k[1:])] != range(out.shape[i])]
        if len(cut) != 1 or (axis is not None and cut[0] != axis):
            return None
        axis = cut[0]
        r = range(out.shape[axis])[slice(*key[axis][1:])]
        if r.step != 1 or not r:
            return None
        pieces.append((r.start, r.stop, t.op.inputs[0]))
    pieces.sort(key=lambda p: p[0])
    if pieces[0][0] != 0 or pieces[-1][1] != out.shape[axis] or any(
            a[1] != b[0] for a, b in zip(pieces, pieces[1:])):
        return None
    concat = LOp("Concat", op.name + "/concat", [p[2] for p in pieces], {"axis": axis},
                 list(op.origins), out.spec())
    g.ops.insert(g.ops.index(op), concat)
    return concat.outputs[0]


def _pow(op: LOp, g: LGraph) -> LTensor | None:
    if _is_all(op.inputs[1], 1):
        return _same(op.inputs[0], op.outputs[0])
    if _is_all(op.inputs[1], 2) and op.outputs[0].dtype.is_floating \
            and _same(op.inputs[0], op.outputs[0]) is not None:
        op.type, op.inputs, op.attrs = "Square", [op.inputs[0]], {}
    return None


def _fill(op: LOp, g: LGraph) -> LTensor | None:
    """FillLike becomes a constant: its own shape when that is one element, else
    [1, ..., 1] fed to consumers that broadcast it to the same result."""
    out = op.outputs[0]
    value = np.full([1] * len(out.shape), op.attrs["value"], dtype=out.dtype.np)
    if None not in out.shape and int(np.prod(out.shape, dtype=np.int64)) == 1:
        value = value.reshape(tuple(out.shape))
        return _new_const(g, op, value)
    users = [u for u in g.ops if out in u.inputs]
    if not users or not all(u.type in BROADCASTING and _still_same(u, out, value.shape)
                            for u in users):
        return None
    const = _new_const(g, op, value)
    for u in users:
        u.inputs = [const if t is out else t for t in u.inputs]
    return None


def _still_same(user: LOp, old: LTensor, shape: tuple) -> bool:
    specs = [Spec(shape, t.dtype) if t is old else t.spec() for t in user.inputs]
    try:
        return tuple(user.op_def.infer(specs, **user.attrs).shape) == tuple(user.outputs[0].shape)
    except Exception:  # noqa: BLE001 - a rule that does not apply is simply skipped
        return False


def _new_const(g: LGraph, op: LOp, value: np.ndarray) -> LTensor:
    value = np.array(value, order="C")
    value.flags.writeable = False
    const = LOp("Const", op.name + "/value", [], {"value": value}, op.origins,
                Spec(value.shape, op.outputs[0].dtype))
    g.ops.insert(g.ops.index(op), const)
    return const.outputs[0]


RULES: dict[str, Callable[[LOp, LGraph], LTensor | None]] = {
    "Identity": _identity,
    "StopGradient": _identity,
    "Mul": _neutral(1, (0, 1)),
    "Add": _neutral(0, (0, 1)),
    "Sub": _neutral(0, (1,)),
    "Div": _neutral(1, (1,)),
    "Neg": _neg_neg,
    "Cast": _cast,
    "Transpose": _transpose,
    "Reshape": _reshape,
    "AddN": _add_n,
    "Pow": _pow,
    "FillLike": _fill,
}


def simplify(graph: LGraph) -> LGraph:
    """Apply RULES once per op in order (later ops see earlier rewrites)."""
    for op in list(graph.ops):
        rule = RULES.get(op.type)
        if rule is None or not op.outputs:
            continue
        new = rule(op, graph)
        if new is not None and new is not op.outputs[0]:
            new.op.origins.extend(o for o in op.origins if o not in new.op.origins)
            graph.replace_uses(op.outputs[0], new)
    graph.renumber()
    return graph
