"""Data movement: transpose, strided slices, concat, gather, one-hot, and their gradients.

Every kernel here except the tiled transpose is "one thread per output element": the flat
output index is unravelled over the output dims (C literals when static, `long long`
parameters when a dim is None) and mapped to the source element with index math, inside the
same tile loop the elementwise kernels use (see codegen/kernel.py: tile_loop, tiled_launch).
Axes that move together are merged first, so a slice of the batch dim of a [None, 128, 64]
tensor unravels over two dims, not three.

Run-time dims: slice bounds against a None dim are normalized at launch in Python
(`slice(...).indices(dim)`) and passed as `long long` scalars; concat offsets are sums of the
inputs' run-time sizes along the axis.

Out-of-range gather indices cannot raise inside a kernel: Gather writes 0 for them and
GatherGrad drops them (the numpy reference raises instead).
"""

from __future__ import annotations

from graphflow.errors import CompileError
from graphflow.graph import Operation, Tensor

from ..kernel import (
    EmitContext,
    Kernel,
    KernelBuilder,
    Launch,
    add_map_kernel,
    add_zero_kernel,
    compute_ctype,
    ctype,
    index_type_for,
    numel,
    rounded,
    row_loop,
    tiled_launch,
)
from ..launch import DeviceCopies
from . import emitter
from .reduce import paren

# ---- small C-expression helpers ---------------------------------------------------------------


def _is_lit(expr: str) -> bool:
    return expr.isdigit()


def _prod(dims: list[str]) -> str:
    """C expression for a product of dim expressions (literals folded)."""
    known, symbolic = 1, []
    for d in dims:
        if _is_lit(d):
            known *= int(d)
        else:
            symbolic.append(d)
    if not symbolic:
        return str(known)
    parts = ([str(known)] if known != 1 else []) + symbolic
    return parts[0] if len(parts) == 1 else "(" + " * ".join(parts) + ")"


def _mul(a: str, b: str) -> str:
    if a == "0" or b == "0":
        return "0"
    if a == "1":
        return b
    if b == "1":
        return a
    return f"{a} * {b}"


def _sum(terms: list[str]) -> str:
    terms = [t for t in terms if t != "0"]
    return " + ".join(terms) if terms else "0"


def _unravel(idx: str, dims: list[str], names: list[str], itype: str) -> list[str]:
    """C lines declaring coordinate `names[k]` of flat index `idx` over `dims` (row-major).

    A dim that is the literal 1 gets no line: its coordinate is 0 (callers skip it).
    """
    live = [k for k, d in enumerate(dims) if d != "1"]
    if not live:
        return []
    if len(live) == 1:
        return [f"const {itype} {names[live[0]]} = {idx};"]
    lines = [f"{itype} rest = {idx};"]
    for k in reversed(live[1:]):
        lines.append(f"const {itype} {names[k]} = rest % {dims[k]};")
        lines.append(f"rest /= {dims[k]};")
    lines.append(f"const {itype} {names[live[0]]} = rest;")
    return lines


def map_kernel(ctx: EmitContext, kb: KernelBuilder, out: Tensor, dims: list[str], names: list[str],
               stmts: list[str], itype: str, comment: str, checks=None,
               flops=lambda shapes: 0, helpers=(), top: str = "") -> Kernel:
    """A one-thread-per-element kernel over `out`, whose coordinates (`names` over `dims`,
    row-major) and flat index `i` the statements use (`top`: lines before any loop). On the
    GPU: the flat tile loop, each thread unravelling its index. On the cpu: rows of the
    innermost dim, unravelled once per row, then a plain loop along the row (no div/mod per
    element, so it vectorizes)."""
    live = len(dims)
    while live and dims[live - 1] == "1":  # size-1 axes have no coordinate (callers skip them)
        live -= 1
    if ctx.device != "cpu" or live < 2:
        lines = _unravel("i", dims, names, itype) + stmts
        return add_map_kernel(ctx, kb, out, "\n".join(lines), itype, comment, flops=flops, checks=checks,
                              helpers=helpers, top=top)
    dims, names = dims[:live], names[:live]
    code = row_loop(_prod(dims[:-1]), dims[-1], itype, "\n".join(stmts), last=names[-1],
                    per_row="\n".join(_unravel("row", dims[:-1], names[:-1], itype)))
    # the tile loop's launch: one block per TILE elements (blocks grid-stride over rows)
    return ctx.add(kb.build(top + code, tiled_launch(lambda shapes: numel(shapes[out])), flops=flops,
                            comment=comment + "; cpu schedule: row by row", checks=checks or [],
                            helpers=helpers))


def _strides(dims: list[str]) -> list[str]:
    """Row-major strides (C expressions) of a list of dim expressions."""
    out = []
    for k in range(len(dims)):
        out.append(_prod(dims[k + 1 :]))
    return out


def _zero(t: Tensor) -> str:
    return "false" if t.dtype.is_bool else f"({ctype(t.dtype)})0"


# ---- Transpose ---------------------------------------------------------------------------------

TILE_DIM, TILE_ROWS = 32, 8


def _merge_transpose(x: Tensor, perm: tuple) -> tuple[list[list[int]], list[int]]:
    """Drop static size-1 axes and merge runs of input axes that stay adjacent in perm.

    Returns (the merged groups of input axes in input order, the permutation over the groups).
    """
    keep = [a for a in range(len(x.shape)) if x.shape[a] != 1]
    order = [p for p in perm if p in keep]  # output order of the kept input axes
    groups: list[list[int]] = []
    for a in order:
        if groups and groups[-1][-1] + 1 == a:
            groups[-1].append(a)
        else:
            groups.append([a])
    by_input = sorted(groups, key=lambda g: g[0])
    return by_input, [by_input.index(g) for g in groups]


def _transpose_tiled(ctx: EmitContext, op: Operation, kb: KernelBuilder, groups: list[list[int]]) -> None:
    """out[b][c][r] = in[b][r][c] through a 32x33 shared tile (the +1 column kills bank conflicts).

    Reads and writes are both coalesced: a warp reads 32 consecutive columns of one input row
    and writes 32 consecutive rows of one output row. Tiles are walked by a grid-stride loop,
    so any batch size fits in grid.x. On the cpu one thread copies each tile straight across,
    writing a row of the output at a time (the tile's 32 input rows stay in cache): no shared
    tile, and no barrier, which would make the emulator run each block as fibers.
    """
    x, out = op.inputs[0], op.outputs[0]
    src, dst, t = kb.input(x), kb.output(out), ctype(x.dtype)
    dims = [_prod([kb.dim(x, a) for a in g]) for g in groups]
    batch, rows, cols = _prod(dims[:-2]), dims[-2], dims[-1]
    it = index_type_for(x)
    if ctx.device == "cpu":
        copy = f"""\
    const {it} r_end = r0 + {TILE_DIM} < rows ? r0 + {TILE_DIM} : rows;
    const {it} c_end = c0 + {TILE_DIM} < cols ? c0 + {TILE_DIM} : cols;
    for ({it} c = c0; c < c_end; ++c) {{
      for ({it} r = r0; r < r_end; ++r) to[c * rows + r] = from[r * cols + c];
    }}
"""
    else:
        copy = f"""\
    for (int ty = threadIdx.y; ty < {TILE_DIM}; ty += blockDim.y) {{
      for (int tx = threadIdx.x; tx < {TILE_DIM}; tx += blockDim.x) {{
        const {it} r = r0 + ty, c = c0 + tx;
        if (r < rows && c < cols) tile[ty][tx] = from[r * cols + c];
      }}
    }}
    __syncthreads();
    for (int ty = threadIdx.y; ty < {TILE_DIM}; ty += blockDim.y) {{
      for (int tx = threadIdx.x; tx < {TILE_DIM}; tx += blockDim.x) {{
        const {it} c = c0 + ty, r = r0 + tx;
        if (c < cols && r < rows) to[c * rows + r] = tile[tx][ty];
      }}
    }}
    __syncthreads();
"""
    shared = "" if ctx.device == "cpu" else f"  __shared__ {t} tile[{TILE_DIM}][{TILE_DIM + 1}];\n"
    body = shared + f"""\
  const {it} rows = {rows}, cols = {cols};
  const {it} tiles_r = (rows + {TILE_DIM - 1}) / {TILE_DIM}, tiles_c = (cols + {TILE_DIM - 1}) / {TILE_DIM};
  const {it} tiles = tiles_r * tiles_c * {batch};
  for ({it} tile_id = blockIdx.x; tile_id < tiles; tile_id += gridDim.x) {{
    const {it} tc = tile_id % tiles_c, rest = tile_id / tiles_c;
    const {it} r0 = (rest % tiles_r) * {TILE_DIM}, c0 = tc * {TILE_DIM};
    const {it} plane = (rest / tiles_r) * rows * cols;
    const {t}* __restrict__ from = {src} + plane;
    {t}* __restrict__ to = {dst} + plane;
{copy}  }}
"""

    def launch(shapes, device):
        s = shapes[x]
        rows_n = numel([s[a] for a in groups[-2]])
        cols_n = numel([s[a] for a in groups[-1]])
        batch_n = numel([s[a] for g in groups[:-2] for a in g])
        tiles = max(1, -(-rows_n // TILE_DIM) * -(-cols_n // TILE_DIM) * batch_n)
        if device == "cpu":  # one thread walks a whole tile; a few blocks per core
            return Launch((min(tiles, 64), 1, 1), (1, 1, 1))
        return Launch((min(tiles, 2**20), 1, 1), (TILE_DIM, TILE_ROWS, 1))

    perm = op.attrs["perm"]
    how = "one thread per tile on the cpu" if ctx.device == "cpu" else "through shared memory"
    ctx.add(kb.build(body, launch, comment=f"Transpose {list(x.shape)} perm {list(perm)}: tiled "
                     f"{TILE_DIM}x{TILE_DIM} batched 2-D transpose, {how}"))


@emitter("Transpose")
def emit_transpose(ctx: EmitContext, op: Operation) -> None:
    x, out = op.inputs[0], op.outputs[0]
    kb = ctx.builder("transpose", [op])
    groups, q = _merge_transpose(x, op.attrs["perm"])
    r = len(q)
    dims = [_prod([kb.dim(x, a) for a in g]) for g in groups]
    # a batched 2-D transpose goes through shared-memory tiles, unless a side is so short
    # (static and < 8) that a 32x32 tile would be mostly empty
    if (r >= 2 and q[-2:] == [r - 1, r - 2] and q[:-2] == list(range(r - 2))
            and not any(_is_lit(d) and int(d) < 8 for d in dims[-2:])):
        _transpose_tiled(ctx, op, kb, groups)
        return
    src, dst = kb.input(x), kb.output(out)
    itype = index_type_for(x)
    in_strides = _strides(dims)
    out_dims = [dims[a] for a in q]
    names = [f"o{k}" for k in range(r)]
    offset = _sum([_mul(names[k], in_strides[q[k]]) for k in range(r) if out_dims[k] != "1"])
    what = "copy (the permutation only moves size-1 axes)" if r <= 1 else f"merged dims perm {q}"
    map_kernel(ctx, kb, out, out_dims, names, [f"{dst}[i] = {src}[{offset}];"], itype,
               f"Transpose {list(x.shape)} perm {list(op.attrs['perm'])}: gather by index math, {what}")


# ---- StridedSlice / StridedSliceGrad -----------------------------------------------------------


class _SliceAxis:
    """How one input axis is indexed: a fixed index, a slice (start, step, length), or all of it."""

    def __init__(self, kind: str, axis: int, start: str = "0", step: int = 1, out_axis: int | None = None):
        self.kind, self.axis, self.start, self.step, self.out_axis = kind, axis, start, step, out_axis


def _slice_plan(kb: KernelBuilder, x: Tensor, key: tuple, checks: list) -> tuple[list[_SliceAxis], int]:
    """Per input axis: its indexing, with bounds as C literals or launch-time scalars.

    Returns (axes in input order, number of leading input axes that are keyed; the rest are
    taken whole). out_axis is the axis of the sliced tensor an input axis lands on.
    """
    axes: list[_SliceAxis] = []
    a = o = 0
    for k in key:
        if k[0] == "n":
            o += 1
            continue
        d = x.shape[a]
        if k[0] == "i":
            idx = k[1]
            if d is not None:
                start = str(idx + d if idx < 0 else idx)
            else:
                start = kb.scalar(f"index{a}", "long long",
                                  lambda shapes, a=a, idx=idx: idx + shapes[x][a] if idx < 0 else idx)
                checks.append(
                    lambda shapes, a=a, idx=idx: None if -shapes[x][a] <= idx < shapes[x][a] else
                    f"index {idx} is out of bounds for axis {a} with size {shapes[x][a]} at run time")
            axes.append(_SliceAxis("i", a, start))
        else:
            sl = slice(*k[1:])
            step = sl.step if sl.step is not None else 1
            if step == 1 and sl.start in (None, 0) and sl.stop is None:
                axes.append(_SliceAxis("all", a, out_axis=o))
            elif d is not None:
                axes.append(_SliceAxis("s", a, str(sl.indices(d)[0]), step, o))
            else:
                start = kb.scalar(f"start{a}", "long long",
                                  lambda shapes, a=a, sl=sl: sl.indices(shapes[x][a])[0])
                axes.append(_SliceAxis("s", a, start, step, o))
            o += 1
        a += 1
    keyed = a
    for b in range(keyed, len(x.shape)):
        axes.append(_SliceAxis("all", b, out_axis=o))
        o += 1
    return axes, keyed


def _merge_whole_tail(kb: KernelBuilder, x: Tensor, axes: list[_SliceAxis]) -> tuple[list[_SliceAxis], str]:
    """Fold the trailing run of whole axes into one (contiguous in input and output alike).

    Returns (the axes before it, the C size of the folded run: "1" when there is none).
    """
    n = len(axes)
    while n and axes[n - 1].kind == "all":
        n -= 1
    return axes[:n], _prod([kb.dim(x, ax.axis) for ax in axes[n:]])


@emitter("StridedSlice")
def emit_strided_slice(ctx: EmitContext, op: Operation) -> None:
    x, out = op.inputs[0], op.outputs[0]
    key = op.attrs["key"]
    kb = ctx.builder("strided_slice", [op])
    src, dst = kb.input(x), kb.output(out)
    checks: list = []
    axes, _ = _slice_plan(kb, x, key, checks)
    head, tail = _merge_whole_tail(kb, x, axes)
    itype = index_type_for(x, out)
    # strides need every dim but the first (asking for it would add an unused parameter)
    in_strides = _strides(["?"] + [kb.dim(x, a) for a in range(1, len(x.shape))])
    # unravel over the output axes that select (slices and whole axes of the head), then the tail
    walked = [ax for ax in head if ax.kind != "i"]
    dims = [kb.dim(out, ax.out_axis) for ax in walked] + [tail]
    names = [f"c{ax.axis}" for ax in walked] + ["inner"]
    terms = []
    for ax in head:
        if ax.kind == "i":
            pos = ax.start
        elif ax.kind == "all":
            pos = f"c{ax.axis}" if dims[walked.index(ax)] != "1" else "0"
        else:
            c = f"c{ax.axis}" if dims[walked.index(ax)] != "1" else "0"
            moved = c if ax.step == 1 else f"{c} * ({ax.step})"
            pos = ax.start if moved == "0" else (moved if ax.start == "0" else f"({ax.start} + {moved})")
        terms.append(_mul(pos, in_strides[ax.axis]))
    if tail != "1":
        terms.append("inner")
    map_kernel(ctx, kb, out, dims, names, [f"{dst}[i] = {src}[{_sum(terms)}];"], itype,
               f"StridedSlice {list(x.shape)} -> {list(out.shape)}: one thread per output element",
               checks=checks)


@emitter("StridedSliceGrad")
def emit_strided_slice_grad(ctx: EmitContext, op: Operation) -> None:
    """Zeros shaped like x with g at the sliced positions, in one pass over the output."""
    g, ref = op.inputs
    out = op.outputs[0]
    key = op.attrs["key"]
    kb = ctx.builder("strided_slice_grad", [op])
    dst, src = kb.output(out), kb.input(g)
    checks: list = []
    axes, _ = _slice_plan(kb, out, key, checks)  # out has ref's shape: bounds from its dims
    head, tail = _merge_whole_tail(kb, out, axes)
    itype = index_type_for(out, g)
    g_dims = [kb.dim(g, a) for a in range(len(g.shape))]
    g_strides = _strides(g_dims)
    dims = [kb.dim(out, ax.axis) for ax in head] + [tail]
    names = [f"c{ax.axis}" for ax in head] + ["inner"]
    lines: list[str] = []
    conds, terms = [], []
    for ax in head:
        c = f"c{ax.axis}" if kb.dim(out, ax.axis) != "1" else "0"
        if ax.kind == "i":
            conds.append(f"{c} == {ax.start}")
            continue
        if ax.kind == "all":
            q = c
        else:
            length = g_dims[ax.out_axis]
            if ax.step == 1:
                lines.append(f"const {itype} q{ax.axis} = {c} - {ax.start};")
            else:
                lines.append(f"const {itype} d{ax.axis} = {c} - {ax.start};")
                lines.append(f"const {itype} q{ax.axis} = d{ax.axis} / ({ax.step});")
                conds.append(f"d{ax.axis} % ({ax.step}) == 0")
            q = f"q{ax.axis}"
            conds.append(f"{q} >= 0 && {q} < {length}")
        terms.append(_mul(q, g_strides[ax.out_axis]))
    if tail != "1":
        terms.append("inner")
    value = f"{src}[{_sum(terms)}]"
    if conds:
        value = f"({' && '.join(conds)}) ? {value} : {_zero(out)}"
    lines.append(f"{dst}[i] = {value};")
    map_kernel(ctx, kb, out, dims, names, lines, itype,
               f"StridedSliceGrad {list(g.shape)} -> {list(out.shape)}: g inside the slice, 0 elsewhere",
               checks=checks)


# ---- Concat / ConcatSlice ----------------------------------------------------------------------


def _split_at(kb: KernelBuilder, t: Tensor, axis: int) -> tuple[str, str]:
    """(outer, inner) C sizes of t around `axis`."""
    rank = len(t.shape)
    return (_prod([kb.dim(t, a) for a in range(axis)]),
            _prod([kb.dim(t, a) for a in range(axis + 1, rank)]))


@emitter("Concat")
def emit_concat(ctx: EmitContext, op: Operation) -> None:
    """out[o, c, n] from the input whose range along the axis holds c (a compare chain). On the
    cpu, one loop per input instead: each row of an input (its part along the axis and
    everything after it) is a contiguous run of the output, copied with unit stride."""
    xs, out, axis = list(op.inputs), op.outputs[0], op.attrs["axis"]
    kb = ctx.builder("concat", [op])
    dst = kb.output(out)
    srcs = [kb.input(x) for x in xs]
    itype = index_type_for(out, *xs)
    outer, inner = _split_at(kb, out, axis)
    if ctx.device == "cpu":
        run = _mul(kb.dim(out, axis), inner)  # elements of the output per outer index
        body, offset = "", "0"
        for x, src in zip(xs, srcs):
            piece = _mul(kb.dim(x, axis), inner)  # elements of this input per outer index
            to = _sum([f"row * {paren(run)}", _mul(paren(offset), inner), "last"])
            body += (f"  {{  // {x.name}\n" + row_loop(outer, piece, itype,
                                                       f"{dst}[{to}] = {src}[i];") + "  }\n")
            offset = _sum([offset, kb.dim(x, axis)])
        kernel = kb.build(body, tiled_launch(lambda shapes: numel(shapes[out])),
                          comment=f"Concat of {len(xs)} tensors along axis {axis} -> {list(out.shape)}; "
                          "cpu schedule: a contiguous copy per input row")
        kernel.map = True  # row loops: right for any grid and block
        ctx.add(kernel)
        return
    total = kb.dim(out, axis)
    lines = _unravel("i", [outer, total, inner], ["outer", "along", "within"], itype)
    o = "outer" if outer != "1" else "0"
    n = "within" if inner != "1" else "0"
    c = "along" if total != "1" else "0"
    offset = "0"
    branches = []
    for j, (x, src) in enumerate(zip(xs, srcs)):
        size = kb.dim(x, axis)
        local = c if offset == "0" else f"({c} - {offset})"
        row = _sum([_mul(o, size), local]) if o != "0" else local
        index = _sum([_mul(f"({row})" if "+" in row else row, inner), n])
        end = size if offset == "0" else (str(int(offset) + int(size)) if _is_lit(offset) and _is_lit(size)
                                           else f"{offset} + {size}")
        cond = f"if ({c} < {end}) " if j < len(xs) - 1 else ""
        branches.append(f"{'else ' if j else ''}{cond}{dst}[i] = {src}[{index}];")
        offset = end if _is_lit(end) else f"({end})"
    lines += branches
    add_map_kernel(ctx, kb, out, "\n".join(lines), itype,
                f"Concat of {len(xs)} tensors along axis {axis} -> {list(out.shape)}")


@emitter("ConcatSlice")
def emit_concat_slice(ctx: EmitContext, op: Operation) -> None:
    """The piece of g that concat took from refs[index]: offsets from the refs' run-time sizes."""
    g, refs = op.inputs[0], list(op.inputs[1:])
    axis, index, out = op.attrs["axis"], op.attrs["index"], op.outputs[0]
    kb = ctx.builder("concat_slice", [op])
    dst, src = kb.output(out), kb.input(g)
    itype = index_type_for(out, g)
    outer, inner = _split_at(kb, out, axis)
    size = kb.dim(out, axis)
    offset = _sum([kb.dim(r, axis) for r in refs[:index]])
    if _is_lit(offset.replace(" + ", "")) and "+" in offset:
        offset = str(sum(int(p) for p in offset.split(" + ")))
    lines = _unravel("i", [outer, size, inner], ["outer", "along", "within"], itype)
    o = "outer" if outer != "1" else "0"
    c = "along" if size != "1" else "0"
    n = "within" if inner != "1" else "0"
    row = _sum([_mul(o, kb.dim(g, axis)), c, offset if offset == "0" or _is_lit(offset) else f"({offset})"])
    lines.append(f"{dst}[i] = {src}[{_sum([_mul(f'({row})' if '+' in row else row, inner), n])}];")
    add_map_kernel(ctx, kb, out, "\n".join(lines), itype,
                f"ConcatSlice: piece {index} of {len(refs)} of {list(g.shape)} along axis {axis}")


# ---- Gather / GatherGrad -----------------------------------------------------------------------


def _gathered_row(kb: KernelBuilder, table: Tensor, indices: Tensor, axis: int,
                  ids: str) -> tuple[list[str], list[str], str, str, str]:
    """A gather-shaped tensor [outer, indices..., inner]: its dims and coordinate names (outer,
    j, within), the C line setting `index` (read from `ids` at j), the offset of that element
    in `table` (params or its dense gradient), and table's size along axis. Gather and
    GatherGrad share this."""
    outer, inner = _split_at(kb, table, axis)
    count = _prod([kb.dim(indices, a) for a in range(len(indices.shape))])
    size = kb.dim(table, axis)
    j = "j" if count != "1" else "0"
    o = "outer" if outer != "1" else "0"
    n = "within" if inner != "1" else "0"
    index = f"const long long index = (long long){ids}[{j}];"
    where = _sum([_mul(f"({_sum([_mul(o, size), 'index'])})" if o != "0" else "index", inner), n])
    return [outer, count, inner], ["outer", "j", "within"], index, where, size


@emitter("Gather")
def emit_gather(ctx: EmitContext, op: Operation, epilogue: tuple | None = None) -> None:
    """out[o, j, n] = params[o, indices[j], n]; an out-of-range index gives 0 (no trap).
    `epilogue`: elementwise ops applied to each gathered value in registers (an embedding's
    position term). On the cpu a row (n) at a time: one index load, then a plain copy."""
    params, indices = op.inputs
    out, axis = op.outputs[0], op.attrs["axis"]
    comment = (f"Gather axis {axis}: {list(params.shape)} at {list(indices.shape)} indices "
               "(out-of-range indices give 0)")
    if epilogue is None:
        kb = ctx.builder("gather", [op])
        dst, src, ids = kb.output(out), kb.input(params), kb.input(indices)
        itype = index_type_for(out, params, indices)
        dims, names, index, where, size = _gathered_row(kb, params, indices, axis, ids)
        load = f"{dst}[i] = (index >= 0 && index < {size}) ? {src}[{where}] : {_zero(out)};"
        map_kernel(ctx, kb, out, dims, names, [index, load], itype, comment)
        return
    from ..fusion import type_names
    from .elementwise import HELPERS as SCALAR_HELPERS
    from .fused import FusedCode
    ops, inline, stored = epilogue
    kb = ctx.builder("_".join(["gather", *type_names(ops)[:3]]), [op])
    src, ids = kb.input(params), kb.input(indices)
    code = FusedCode(kb, ops, inline, stored)
    kb.nodes = [op, *ops, *code.used_inline]
    rank = len(params.shape)
    if ctx.device == "cpu" and axis % rank == rank - 2 and params.shape[-1] != 1:
        code.split = ("row", "within", out)  # map_kernel walks rows of out's last dim
    body = code.segment(ops, out, bound={out: "gather_v"})  # registers its loads first
    itype = index_type_for(out, params, indices, *[p.tensor for p in kb.params if p.tensor is not None])
    dims, names, index, where, size = _gathered_row(kb, params, indices, axis, ids)
    stmts = [index, f"const {ctype(out.dtype)} gather_v = (index >= 0 && index < {size}) ? "
             f"{src}[{where}] : {_zero(out)};", *body]
    top = "".join(f"  {line}\n" for line in code.prologue)
    map_kernel(ctx, kb, out, dims, names, stmts, itype,
               f"{comment}; epilogue: {', '.join(e.type for e in ops)}", checks=code.checks,
               helpers=(SCALAR_HELPERS,), top=top)


@emitter("GatherGrad")
def emit_gather_grad(ctx: EmitContext, op: Operation) -> None:
    """The dense gradient of a gather: zeros shaped like params, g added at the indices (out of
    range: dropped). On the GPU, a zero fill, then one thread per element of g atomicAdds it.
    On the cpu, one kernel whose blocks each own table rows: zero them, then add every row of g
    whose index is one of them, in index order (no atomics, and the same sums every run)."""
    g, indices, ref = op.inputs
    out, axis = op.outputs[0], op.attrs["axis"]
    if out.dtype.is_bool:
        raise CompileError(f"{op.describe()}: GatherGrad of a bool tensor")
    if ctx.device == "cpu":
        _gather_grad_owned(ctx, op)
        return
    add_zero_kernel(ctx, op, "gather_grad_zero",
                    f"GatherGrad pass 1 of 2: zero the dense gradient {list(out.shape)}")
    # pass 2: one thread per element of g adds it into its row
    kb = ctx.builder("gather_grad_scatter", [op])
    dst, src, ids = kb.output(out), kb.input(g), kb.input(indices)
    itype = index_type_for(out, g, indices)
    dims, names, index, where, size = _gathered_row(kb, out, indices, axis, ids)
    lines = _unravel("i", dims, names, itype) + [index]
    if out.dtype.name == "int64":  # CUDA has no signed 64-bit atomicAdd; two's complement agrees
        add = (f"atomicAdd((unsigned long long*)&{dst}[{where}], "
               f"(unsigned long long){src}[i]);")
    else:
        add = f"atomicAdd(&{dst}[{where}], {src}[i]);"
    lines.append(f"if (index >= 0 && index < {size}) {add}")
    add_map_kernel(ctx, kb, g, "\n".join(lines), itype,
                   f"GatherGrad pass 2 of 2: scatter-add g {list(g.shape)} into rows along axis {axis} "
                   "(atomicAdd; out-of-range indices are dropped)", flops=lambda s: numel(s[g]))


GATHER_GRAD_OWNERS = 64  # cpu: threads owning the table's rows (each scans every index)


def _gather_grad_owned(ctx: EmitContext, op: Operation) -> None:
    """GatherGrad's cpu schedule (see emit_gather_grad). The first GATHER_GRAD_OWNERS threads
    of the launch, whatever its grid and block, own a run of table rows each, so the kernel may
    share a launch with a template."""
    g, indices, _ = op.inputs
    out, axis = op.outputs[0], op.attrs["axis"]
    kb = ctx.builder("gather_grad", [op])
    dst, src, ids = kb.output(out), kb.input(g), kb.input(indices)
    t = index_type_for(out, g, indices)
    outer, inner = _split_at(kb, out, axis)
    count = _prod([kb.dim(indices, a) for a in range(len(indices.shape))])
    size = kb.dim(out, axis)
    value = ctype(out.dtype)
    if out.dtype.is_integer:  # wraps as the GPU's atomics do (signed overflow is undefined in C)
        add = f"({value})((unsigned long long)to[n] + (unsigned long long)from[n])"
    else:
        add = rounded(out.dtype, f"({compute_ctype(out.dtype)})to[n] + ({compute_ctype(out.dtype)})from[n]")
    code = f"""\
  const {t} outer = {outer}, size = {size}, count = {count}, len = {inner};
  const {t} threads = ({t})gridDim.x * ({t})blockDim.x;
  const {t} owners = threads < {GATHER_GRAD_OWNERS} ? threads : {GATHER_GRAD_OWNERS};
  const {t} me = ({t})blockIdx.x * ({t})blockDim.x + threadIdx.x;
  const {t} per = (size + owners - 1) / owners;  // table rows per owner
  const {t} r0 = me * per, r1 = r0 + per < size ? r0 + per : size;
  if (me < owners && r0 < r1) {{
    for ({t} o = 0; o < outer; ++o) {{
      for ({t} n = (o * size + r0) * len; n < (o * size + r1) * len; ++n) {dst}[n] = ({value})0;
    }}
    for ({t} o = 0; o < outer; ++o) {{
      for ({t} j = 0; j < count; ++j) {{
        const long long index = (long long){ids}[j];
        if (index < r0 || index >= r1) continue;  // another owner's row, or out of range
        {value}* to = {dst} + (o * size + ({t})index) * len;
        const {value}* from = {src} + (o * count + j) * len;
        for ({t} n = 0; n < len; ++n) to[n] = {add};
      }}
    }}
  }}
"""

    def launch(shapes, device):  # the block of a tile loop's launch, so it may share one
        block = tiled_launch(lambda s: 1)(shapes, device).block
        return Launch((max(1, min(shapes[out][axis], GATHER_GRAD_OWNERS)), 1, 1), block)

    kernel = kb.build(code, launch, flops=lambda s: numel(s[g]),
                      comment=f"GatherGrad: g {list(g.shape)} added into the rows of a dense "
                      f"{list(out.shape)} along axis {axis} (cpu schedule: threads own table rows; "
                      "out-of-range indices are dropped)")
    kernel.map = True  # right for any grid and block (see above)
    ctx.add(kernel)


# ---- OneHot ------------------------------------------------------------------------------------


@emitter("OneHot")
def emit_one_hot(ctx: EmitContext, op: Operation) -> None:
    indices, out = op.inputs[0], op.outputs[0]
    depth = op.attrs["depth"]
    kb = ctx.builder("one_hot", [op])
    dst, ids = kb.output(out), kb.input(indices)
    itype = index_type_for(out, indices)
    one = "true" if out.dtype.is_bool else f"({ctype(out.dtype)})1"
    inner = (f"const long long hot = (long long){ids}[i / {max(depth, 1)}];\n"
             f"{dst}[i] = hot == (long long)(i % {max(depth, 1)}) ? {one} : {_zero(out)};")
    add_map_kernel(ctx, kb, out, inner, itype,
                f"OneHot depth {depth} of {list(indices.shape)} indices (out-of-range: all zeros)")



# ---- variables set to constants: copies, no kernel -------------------------------------------
def const_copy_pairs(ops: list) -> list[tuple] | None:
    """(Const tensor, Assign output) per op when every op assigns a constant of the variable's
    own shape and dtype (an initializer); else None."""
    from ..fusion import alias_root

    pairs = []
    for op in ops:
        if op.type != "Assign":
            return None
        value = alias_root(op.inputs[1])
        out = op.outputs[0]
        if value.op.type != "Const" or value.dtype != out.dtype or tuple(value.shape) != tuple(out.shape) \
                or None in out.shape:
            return None
        pairs.append((value, out))
    return pairs


def emit_const_copies(ctx: EmitContext, ops: list, pairs: list[tuple]) -> None:
    """One host step copying each constant into its variable (device to device), so an
    initializer that only sets constants compiles nothing."""
    kb = ctx.builder("assign_constants", list(ops))
    for value, out in pairs:
        kb.input(value)
        kb.output(out)
    kernel = kb.build(body="", launch=lambda shapes, device: Launch((1, 1, 1), (1, 1, 1)),
                      comment=f"{len(pairs)} variable(s) set to constants: device-to-device copies")
    where = {(p.kind, p.tensor): j for j, p in enumerate(kernel.params)}
    moves = [(where[("in", value)], where[("out", out)], numel(out.shape) * out.dtype.size)
             for value, out in pairs]
    kernel.host = DeviceCopies(moves, "cpu" if ctx.device == "cpu" else "cuda")
    ctx.add(kernel)
