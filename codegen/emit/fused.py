"""The fused elementwise kernel: one or more segments, each a chain of scalar expressions
over one iteration space, composed from elementwise.SCALAR.

Values stay in registers; only what leaves the kernel is stored (fetches, values other
kernels read, variable updates). One-element values (inlined chains such as Adam's
bias-corrected learning rate, scalar operands) are computed once per thread before the
loops. Segments are independent, so all blocks walk each segment in turn, no barrier.
"""
from __future__ import annotations

from graphflow.ops.state import ASSIGN_OPS

from ..fusion import Group, _loaded_inputs, is_one_element, kernel_base_name, variable_root
from ..kernel import TILE, EmitContext, KernelBuilder, ctype, index_type_for, numel, tile_loop, tiled_launch
from .elementwise import HELPERS, SCALAR, Dialect, operand_offset


def scalar_expr(kb: KernelBuilder, op, args: list[str]) -> str:
    """The C expression op computes from its loaded operands' names."""
    out = op.outputs[0]
    if op.type == "Cast":
        return f"({args[0]} != 0)" if out.dtype.is_bool else f"({ctype(out.dtype)})({args[0]})"
    if op.type == "FillLike":
        return Dialect(out.dtype).lit(op.attrs["value"])
    if op.type == "AddN":
        return "(" + " + ".join(args) + ")"
    if op.type == "ReducedSize":
        x = op.inputs[0]
        return " * ".join(f"(long long){kb.dim(x, a)}" for a in op.attrs["axis"]) or "1"
    if op.type in ("Assign", "BroadcastLike", "BroadcastTo"):
        return args[0]
    dialect = Dialect(op.inputs[-1].dtype if op.type == "Select" else op.inputs[0].dtype)
    return SCALAR[op.type](args, dialect)


def emit_fused(ctx: EmitContext, group: Group, inline: set, stored: set) -> None:
    """One kernel for `group`; `stored` are the member outputs that must reach memory."""
    written = {variable_root(op.inputs[0]).op for op in group.ops if op.type in ASSIGN_OPS}
    used_inline = _inline_closure(group, inline)
    kb = ctx.builder(kernel_base_name(group), list(group.ops) + used_inline)
    names: dict = {}
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def reads_written(op) -> bool:
        stack, seen = [op], set()
        while stack:
            o = stack.pop()
            if o in seen:
                continue
            seen.add(o)
            for t in _loaded_inputs(o):
                if variable_root(t).op in written:
                    return True
                if t.op in inline:
                    stack.append(t.op)
        return False

    checks: list = []
    prologue: list[str] = []
    for op in used_inline:  # one-element chains: once per thread, unless they read what we write
        if not reads_written(op):
            names[op.outputs[0]] = _define(kb, op, names, prologue, fresh, hoist=True)
    outs = {t: kb.output(t, f"out{k}") for k, t in enumerate(sorted(stored, key=lambda t: t.op.id))}
    iters, bodies = [], []
    for segment in group.segments:
        over = _iteration_tensor(segment)
        iters.append(over)
        local = dict(names)
        lines: list[str] = []
        for op in used_inline:
            if op.outputs[0] not in local and _needed_by(op, segment, inline):
                local[op.outputs[0]] = _define(kb, op, local, lines, fresh, hoist=True)
        for op in segment:
            args = []
            for t in _loaded_inputs(op):
                if t not in local:
                    local[t] = _load(kb, t, over, local, lines, prologue, fresh, checks, written)
                args.append(local[t])
            name = fresh("v")
            lines.append(f"const {ctype(op.outputs[0].dtype)} {name} = "
                         f"({ctype(op.outputs[0].dtype)})({scalar_expr(kb, op, args)});")
            local[op.outputs[0]] = name
            if op.outputs[0] in outs:
                lines.append(f"{outs[op.outputs[0]]}[i] = {name};")
        bodies.append((over, lines))
    itype = index_type_for(*iters, *[p.tensor for p in kb.params if p.tensor is not None])
    body = "".join(f"  {line}\n" for line in prologue)
    for over, lines in bodies:
        body += "  {  // " + f"{over.op.name}: {list(over.shape)}\n" + tile_loop(
            kb.numel(over), itype, "\n".join(lines)) + "  }\n"
    count = lambda shapes: max(numel(shapes[t]) for t in iters)  # noqa: E731
    flops = lambda shapes: sum(numel(shapes[t]) * len(seg) for t, seg in zip(iters, group.segments))  # noqa: E731
    what = ", ".join(sorted({op.type for op in group.ops}))
    ctx.add(kb.build(body, tiled_launch(count), flops=flops, checks=checks, helpers=(HELPERS,),
                     comment=f"{len(group.segments)} segment(s) of {what}, tiles of {TILE}"))


def _iteration_tensor(segment: list):
    big = [op.outputs[0] for op in segment if not is_one_element(op.outputs[0])]
    return big[0] if big else segment[0].outputs[0]


def _inline_closure(group: Group, inline: set) -> list:
    found, stack = set(), [t.op for op in group.ops for t in _loaded_inputs(op) if t.op in inline]
    while stack:
        op = stack.pop()
        if op not in found:
            found.add(op)
            stack.extend(t.op for t in _loaded_inputs(op) if t.op in inline)
    return sorted(found, key=lambda op: op.id)


def _needed_by(op, segment: list, inline: set) -> bool:
    stack = [t.op for o in segment for t in _loaded_inputs(o)]
    seen = set()
    while stack:
        o = stack.pop()
        if o is op:
            return True
        if o in seen or o not in inline:
            continue
        seen.add(o)
        stack.extend(t.op for t in _loaded_inputs(o))
    return False


def _define(kb, op, names: dict, lines: list, fresh, hoist: bool) -> str:
    """Compute an inlined one-element op (its operands loaded at index 0)."""
    args = []
    for t in _loaded_inputs(op):
        if t not in names:
            name = fresh("s")
            lines.append(f"const {ctype(t.dtype)} {name} = {kb.input(t)}[0];")
            names[t] = name
        args.append(names[t])
    name = fresh("s")
    c = ctype(op.outputs[0].dtype)
    lines.append(f"const {c} {name} = ({c})({scalar_expr(kb, op, args)});")
    return name


def _load(kb, t, over, local: dict, lines: list, prologue: list, fresh, checks, written) -> str:
    """Bind the value of external tensor t at this element (once per kernel if one element)."""
    name = fresh("x")
    offset = operand_offset(kb, t, over, "i", checks)
    if offset == "0" and variable_root(t).op not in written and not is_one_element(over):
        prologue.append(f"const {ctype(t.dtype)} {name} = {kb.input(t)}[0];")
        local[t] = name
        return name
    lines.append(f"const {ctype(t.dtype)} {name} = {kb.input(t)}[{offset}];")
    return name
