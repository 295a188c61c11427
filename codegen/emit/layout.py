"""Tile, its gradient TileGrad, and constant Pad: one thread per output element.

Each unravels the flat output index over the output dims (movement.py's helpers: literals
when static, `long long` parameters when a dim is None) and maps it to the source:
Tile reads x at (c mod size) per dim; TileGrad sums g over every copy of its element
(a loop over the product of the multiples); Pad reads x at (c - before) inside the
input and writes the constant outside it.
"""

from __future__ import annotations

from graphflow.graph import Operation

from ..kernel import EmitContext, ctype, index_type_for, numel
from . import emitter
from .elementwise import Dialect
from .movement import _mul, _split_at, _strides, _sum, map_kernel


@emitter("Tile")
def emit_tile(ctx: EmitContext, op: Operation) -> None:
    x, out = op.inputs[0], op.outputs[0]
    multiples = op.attrs["multiples"]
    kb = ctx.builder("tile", [op])
    dst, src = kb.output(out), kb.input(x)
    rank = len(x.shape)
    dims = [kb.dim(x, a) for a in range(rank)]
    out_dims = [kb.dim(out, a) for a in range(rank)]
    names = [f"c{a}" for a in range(rank)]
    itype = index_type_for(out, x)
    terms = []
    for a in range(rank):
        if out_dims[a] == "1" or dims[a] == "1":
            continue
        coord = names[a] if multiples[a] == 1 else f"({names[a]} % {dims[a]})"
        terms.append(_mul(coord, _strides(dims)[a]))
    map_kernel(ctx, kb, out, out_dims, names, [f"{dst}[i] = {src}[{_sum(terms)}];"], itype,
               f"Tile {list(x.shape)} by {list(multiples)}: each output reads x at c mod size")


@emitter("TileGrad")
def emit_tile_grad(ctx: EmitContext, op: Operation) -> None:
    g, ref = op.inputs
    out = op.outputs[0]
    multiples = op.attrs["multiples"]
    kb = ctx.builder("tile_grad", [op])
    dst, src = kb.output(out), kb.input(g)
    rank = len(ref.shape)
    dims = [kb.dim(out, a) for a in range(rank)]
    g_strides = _strides([kb.dim(g, a) for a in range(rank)])
    names = [f"c{a}" for a in range(rank)]
    itype = index_type_for(out, g)
    copies = numel(multiples)
    lines = [f"{ctype(out.dtype)} acc = ({ctype(out.dtype)})0;",
              f"for (long long r = 0; r < {copies}LL; ++r) {{",
              "  long long copy = r;"]
    terms = []
    for a in reversed(range(rank)):
        coord = names[a] if dims[a] != "1" else "0"
        if multiples[a] != 1:
            lines += [f"  const long long m{a} = copy % {multiples[a]};", f"  copy /= {multiples[a]};"]
            coord = f"(m{a} * {dims[a]} + {coord})" if coord != "0" else f"m{a} * {dims[a]}"
        terms.append(_mul(coord, g_strides[a]))
    lines += [f"  acc += {src}[{_sum(terms)}];", "}", f"{dst}[i] = acc;"]
    map_kernel(ctx, kb, out, dims, names, lines, itype,
               f"TileGrad {list(g.shape)} -> {list(out.shape)}: each element sums its "
               f"{copies} copies", flops=lambda s: numel(s[g]))


@emitter("Pad")
def emit_pad(ctx: EmitContext, op: Operation) -> None:
    x, out = op.inputs[0], op.outputs[0]
    paddings = op.attrs["paddings"]
    kb = ctx.builder("pad", [op])
    dst, src = kb.output(out), kb.input(x)
    rank = len(x.shape)
    dims = [kb.dim(x, a) for a in range(rank)]
    in_strides = _strides(dims)
    names = [f"c{a}" for a in range(rank)]
    itype = index_type_for(out, x)
    out_dims = [kb.dim(out, a) for a in range(rank)]
    conds, terms = [], []
    for a, (before, after) in enumerate(paddings):
        if kb.dim(out, a) == "1":
            coord = "0" if before == 0 else f"(0 - {before})"
        else:
            coord = names[a] if before == 0 else f"({names[a]} - {before})"
        if before or after:
            conds.append(f"{coord} >= 0 && {coord} < {dims[a]}")
        terms.append(_mul(coord, in_strides[a]))
    fill = Dialect(out.dtype).lit(op.attrs["constant_values"])
    if out.dtype.is_bool:
        fill = "true" if op.attrs["constant_values"] else "false"
    stmt = (f"{dst}[i] = ({' && '.join(conds) or 'true'}) ? {src}[{_sum(terms)}] : "
            f"({ctype(out.dtype)}){fill};")
    map_kernel(ctx, kb, out, out_dims, names, [stmt], itype,
                   f"Pad {list(x.shape)} by {[list(p) for p in paddings]} with "
                   f"{op.attrs['constant_values']!r}")


def _offset(o: str, size: str, pos: str, inner: str, n: str) -> str:
    """C offset of [o, pos, n] in a [outer, size, inner] tensor."""
    row = _sum([_mul(o, size), pos])
    return _sum([_mul(f"({row})", inner), n])


def _mirror_geometry(kb, t, axis: int, op: Operation):
    outer, inner = _split_at(kb, t, axis)
    a = op.attrs
    return outer, inner, a["before"], a["after"], a["symmetric"]


@emitter("MirrorPad")
def emit_mirror_pad(ctx: EmitContext, op: Operation) -> None:
    """out[o, c, n] = x[o, q, n], q = c - before mirrored back inside [0, d)."""
    x, out = op.inputs[0], op.outputs[0]
    axis = op.attrs["axis"]
    kb = ctx.builder("mirror_pad", [op])
    dst, src = kb.output(out), kb.input(x)
    outer, inner, before, after, symmetric = _mirror_geometry(kb, x, axis, op)
    d, length = kb.dim(x, axis), kb.dim(out, axis)
    itype = index_type_for(out, x)
    o = "outer" if outer != "1" else "0"
    c = "along" if length != "1" else "0"
    n = "within" if inner != "1" else "0"
    low, high = ("-q - 1", f"2 * {d} - 1 - q") if symmetric else ("-q", f"2 * {d} - 2 - q")
    lines = [f"{itype} q = {c} - {before};",
             f"q = q < 0 ? {low} : (q >= {d} ? {high} : q);",
             f"{dst}[i] = {src}[{_offset(o, d, 'q', inner, n)}];"]
    map_kernel(ctx, kb, out, [outer, length, inner], ["outer", "along", "within"], lines, itype,
                   f"MirrorPad ({'SYMMETRIC' if symmetric else 'REFLECT'}) axis {axis} of "
                   f"{list(x.shape)} by ({before}, {after})")


@emitter("MirrorPadGrad")
def emit_mirror_pad_grad(ctx: EmitContext, op: Operation) -> None:
    """Each input element sums g at its own place and at its (at most two) mirror images."""
    g, ref = op.inputs
    out, axis = op.outputs[0], op.attrs["axis"]
    kb = ctx.builder("mirror_pad_grad", [op])
    dst, src = kb.output(out), kb.input(g)
    outer, inner, before, after, symmetric = _mirror_geometry(kb, out, axis, op)
    d, length = kb.dim(out, axis), kb.dim(g, axis)
    itype = index_type_for(out, g)
    o = "outer" if outer != "1" else "0"
    c = "along" if d != "1" else "0"
    n = "within" if inner != "1" else "0"

    def read(pos: str) -> str:
        return f"{src}[{_offset(o, length, pos, inner, n)}]"

    skip = 0 if symmetric else 1  # REFLECT leaves out the edge element
    lines = [f"{ctype(out.dtype)} acc = {read(f'{before} + {c}')};"]
    if before:
        lines.append(f"if ({c} >= {skip} && {c} < {skip + before}) "
                     f"acc += {read(f'{before - 1 + skip} - {c}')};")
    if after:
        lines.append(f"if ({c} >= {d} - {skip + after} && {c} < {d} - {skip}) "
                     f"acc += {read(f'{before} + 2 * {d} - {1 + skip} - {c}')};")
    lines.append(f"{dst}[i] = acc;")
    map_kernel(ctx, kb, out, [outer, d, inner], ["outer", "along", "within"], lines, itype,
               f"MirrorPadGrad axis {axis}: {list(g.shape)} -> {list(out.shape)}, own place "
                   "plus mirror images")
