"""Views: a transpose or a basic slice whose only readers are GEMMs makes no kernel. Its
elements are another tensor's, re-indexed, so each GEMM that reads it loads them in place:
the operand's element (batch..., row, col) is found in the root tensor's buffer by index
math composed through the chain (transposes permute coordinates, slices offset and scale
them, reshapes regroup them), rendered to C once per operand. Attention's heads
(`transpose(reshape(qkv[:, 0:D], [B, T, H, hd]), [0, 2, 1, 3])`) are read this way.

Only static shapes are viewed, and never a variable, so the in-place update rules never
meet a view.
"""
from __future__ import annotations

from graphflow.passes import LGraph, LOp, LTensor

from .fusion import ALIAS_OPS

VIEW_OPS = ("Transpose", "StridedSlice")


def view_ops(graph: LGraph, fetched: set, users: dict) -> set[LOp]:
    """The Transpose and StridedSlice ops that need no kernel: static, not fetched, of a
    computed tensor, and read (through reshapes and other views) by GEMM operands only."""
    memo: dict = {}

    def only_gemms_read(t: LTensor) -> bool:
        if t in memo:
            return memo[t]
        memo[t] = False  # (a cycle cannot happen in a DAG; this only guards recursion)
        readers = [u for u in users.get(t, []) if _reads_values(u, t)]
        ok = t not in fetched and bool(readers) and all(
            (u.type == "MatMul") or
            ((u.type in ALIAS_OPS or _viewable(u)) and only_gemms_read(u.outputs[0]))
            for u in readers)
        memo[t] = ok
        return ok

    viewable = [op for op in graph.ops if _viewable(op)]
    candidates = set(viewable)  # walked through for the root: never a variable, by any chain
    return {op for op in viewable if only_gemms_read(op.outputs[0])
            and source(op.outputs[0], candidates).op.type != "Variable"}


# ops that read these inputs' shapes only (a gradient's reference to its forward value)
SHAPE_ONLY = {"ReshapeLike": (1,), "BroadcastLike": (1,), "SumToLike": (1,), "StridedSliceGrad": (1,),
              "FillLike": (0,), "ReducedSize": (0,), "RandomUniformLike": (0,)}


def _reads_values(u: LOp, t: LTensor) -> bool:
    shape_only = SHAPE_ONLY.get(u.type, ())
    return any(x is t and i not in shape_only for i, x in enumerate(u.inputs))


def _viewable(op: LOp) -> bool:
    if op.type not in VIEW_OPS:
        return False
    shapes = [op.inputs[0].shape, op.outputs[0].shape]
    return all(None not in s for s in shapes)


def source(t: LTensor, views: set) -> LTensor:
    """The tensor whose buffer holds t's elements: through reshapes and views."""
    while t.op.type in ALIAS_OPS or t.op in views:
        t = t.op.inputs[0]
    return t


def is_view(t: LTensor, views: set) -> bool:
    """Does reading t go through a view (not only reshapes)?"""
    while t.op.type in ALIAS_OPS or t.op in views:
        if t.op in views:
            return True
        t = t.op.inputs[0]
    return False


def element_offset(t: LTensor, coords: list[str], views: set) -> tuple[LTensor, str]:
    """(root tensor, C expression of the flat offset in its buffer) of element `coords` of t
    (C expressions, one per dim of t, each within its dim)."""
    coords = list(coords)
    while t.op.type in ALIAS_OPS or t.op in views:
        src = t.op.inputs[0]
        if t.op.type == "Transpose":
            back = [""] * len(coords)
            for i, p in enumerate(t.op.attrs["perm"]):
                back[p] = coords[i]
            coords = back
        elif t.op.type == "StridedSlice":
            coords = _slice_coords(t.op.attrs["key"], src.shape, coords)
        else:  # a reshape: same elements, same order
            coords = _reshape_coords(coords, t.shape, src.shape)
        t = src
    return t, _flatten(coords, t.shape)


def _paren(e: str) -> str:
    return e if e.replace("_", "").isalnum() else f"({e})"


def _flatten(coords: list[str], shape) -> str:
    """Row-major flat index; dims of size 1 and zero coordinates drop out."""
    terms, stride = [], 1
    for c, d in reversed(list(zip(coords, shape))):
        if d != 1 and c != "0":
            terms.append(_paren(c) if stride == 1 else f"{_paren(c)} * {stride}")
        stride *= d
    return " + ".join(reversed(terms)) or "0"


def _reshape_coords(coords: list[str], out_shape, in_shape) -> list[str]:
    """Coordinates in `in_shape` of the element at `coords` of the same data in `out_shape`:
    dims are matched in groups of equal size, so a merge is a sum and a split a div/mod."""
    out = [(c, d) for c, d in zip(coords, out_shape) if d != 1]
    ins = [i for i, d in enumerate(in_shape) if d != 1]
    result = ["0"] * len(in_shape)
    i = j = 0
    while i < len(out) and j < len(ins):
        i2, j2 = i + 1, j + 1
        a, b = out[i][1], in_shape[ins[j]]
        while a != b:
            if a < b:
                a *= out[i2][1]
                i2 += 1
            else:
                b *= in_shape[ins[j2]]
                j2 += 1
        flat = _flatten([c for c, _ in out[i:i2]], [d for _, d in out[i:i2]])
        dims = [in_shape[k] for k in ins[j:j2]]
        for n, k in enumerate(ins[j:j2]):
            inner = 1
            for d in dims[n + 1:]:
                inner *= d
            e = flat if inner == 1 else f"{_paren(flat)} / {inner}"
            result[k] = e if n == 0 else f"{_paren(e)} % {dims[n]}"
        i, j = i2, j2
    return result


def _slice_coords(key, in_shape, coords: list[str]) -> list[str]:
    """Coordinates in the sliced tensor of the element at `coords` of x[key]."""
    result, k_out, axis = [], 0, 0
    for item in key:
        if item[0] == "n":  # a new axis of size 1: its coordinate is 0
            k_out += 1
            continue
        d = in_shape[axis]
        axis += 1
        if item[0] == "i":
            result.append(str(item[1] % d))
            continue
        r = range(d)[slice(*item[1:])]
        c = coords[k_out]
        k_out += 1
        scaled = c if r.step == 1 else f"{_paren(c)} * {r.step}"
        result.append(scaled if r.start == 0 else f"{r.start} + {_paren(scaled)}")
    result.extend(coords[k_out:])
    return result


def strides(root_shape, expr: str, names: list[str]) -> list[int]:
    """How far one step along each named coordinate moves in the root (at the origin)."""
    def at(values: dict) -> int:
        return eval(expr.replace("/", "//"), {}, values)  # noqa: S307 - our own index text
    origin = {n: 0 for n in names}
    base = at(origin)
    return [abs(at({**origin, n: 1}) - base) for n in names]


# ---- the other direction: a GEMM storing straight into a concatenation ----------------------
def concat_stores(graph: LGraph, fetched: set, users: dict) -> dict[LOp, tuple]:
    """MatMul op -> (Concat op, the reshapes and transposes from its output to the concat's
    input, in order): concatenations of GEMM results that make no kernel, each GEMM storing its
    elements where the concatenation holds them (the q, k, v gradients into dqkv)."""
    def readers(t: LTensor) -> list[LOp]:
        return [u for u in users.get(t, []) if _reads_values(u, t)]

    found: dict[LOp, tuple] = {}
    for op in graph.ops:
        out = op.outputs[0] if op.outputs else None
        if op.type != "Concat" or out is None or None in out.shape or out in fetched:
            continue
        plan = {}
        for t in op.inputs:
            chain, x = [], t
            while x.op.type in ALIAS_OPS or x.op.type == "Transpose":
                chain.append(x.op)
                x = x.op.inputs[0]
            tensors = [x] + [c.outputs[0] for c in reversed(chain)]
            if x.op.type != "MatMul" or x.op in plan or any(
                    None in s.shape or s in fetched or len(readers(s)) != 1 for s in tensors):
                break
            plan[x.op] = (op, list(reversed(chain)))
        else:
            found.update(plan)
    return found


def stored_offset(out: LTensor, coords: list[str], chain: list, concat: LOp) -> str:
    """C expression of where element `coords` of `out` (a GEMM's result) lies in the
    concatenation it is part of, through `chain` (reshapes, transposes) to the concat."""
    coords, t = list(coords), out
    for op in chain:
        if op.type == "Transpose":
            coords = [coords[p] for p in op.attrs["perm"]]
        else:
            coords = _reshape_coords(coords, t.shape, op.outputs[0].shape)
        t = op.outputs[0]
    axis = concat.attrs["axis"] % len(concat.outputs[0].shape)
    start = 0
    for x in concat.inputs:
        if x is t:
            break
        start += x.shape[axis]
    if start:
        coords[axis] = f"{start} + {_paren(coords[axis])}"
    return _flatten(coords, concat.outputs[0].shape)
