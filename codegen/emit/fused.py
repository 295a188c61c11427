"""Fused elementwise code: chains of scalar expressions composed from elementwise.SCALAR.

`FusedCode` writes the code of elementwise segments for any kernel: the standalone fused
kernel below (one or more independent segments, each over its own iteration space), and the
epilogues of template kernels (a GEMM's store). Values stay in registers; only what leaves
the kernel is stored (fetches, values other kernels read, variable updates). One-element
values (inlined chains such as Adam's bias-corrected learning rate, scalar operands) are
computed once per thread before any loop.
"""
from __future__ import annotations

import numpy as np

from graphflow.ops.state import ASSIGN_OPS

from ..fusion import ALIAS_OPS, INDEXED, Group, _loaded_inputs, alias_root, is_one_element, kernel_base_name
from ..kernel import (
    TILE,
    EmitContext,
    KernelBuilder,
    compute_ctype,
    ctype,
    index_type_for,
    numel,
    rounded,
    row_loop,
    tile_loop,
    tiled_launch,
)
from .elementwise import HELPERS, SCALAR, Dialect, operand_offset


def scalar_expr(kb: KernelBuilder, op, args: list[str], split: tuple | None = None) -> str:
    """The C expression op computes from its loaded operands' names (`split`: (row, last)
    when the loop walks rows of the op's output: see FusedCode.split)."""
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
    if op.type == "OneHot":  # element i of [..., depth]: is index i / depth equal to i % depth?
        depth = max(op.attrs["depth"], 1)
        one = "true" if out.dtype.is_bool else f"({ctype(out.dtype)})1"
        zero = "false" if out.dtype.is_bool else f"({ctype(out.dtype)})0"
        index, position = split if split else (f"i / {depth}", f"i % {depth}")
        return (f"((long long){kb.input(op.inputs[0])}[{index}] == (long long)({position})"
                f" ? {one} : {zero})")
    dialect = Dialect(op.inputs[-1].dtype if op.type == "Select" else op.inputs[0].dtype)
    return SCALAR[op.type](args, dialect)


class FusedCode:
    """Writes fused elementwise code for one kernel (see module docstring)."""

    def __init__(self, kb: KernelBuilder, ops: list, inline: set, stored: set,
                 prefix: str = "") -> None:
        self.kb, self.inline, self.checks = kb, inline, []
        self._prefix = prefix  # a second FusedCode in the same kernel names its values apart
        self.written = {alias_root(op.inputs[0]).op for op in ops if op.type in ASSIGN_OPS}
        self.used_inline = _inline_closure(ops, inline)
        self.prologue: list[str] = []
        self.names: dict = {}
        self.column: str | None = None  # a GEMM epilogue's C name of the column of element i
        # (row, last, tensor): the loop walks rows of the tensor's last dim (see row_loop)
        self.split: tuple | None = None
        self.used_split = False  # a load indexed by the split
        self._count = 0
        for op in self.used_inline:  # one-element chains: once per thread, unless they read
            if not self._reads_written(op):  # a variable this kernel updates
                self.names[op.outputs[0]] = self._define(op, self.names, self.prologue)
        self.outs = {t: kb.output(t, f"out{k}")
                     for k, t in enumerate(sorted(stored, key=lambda t: t.op.id))}

    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{self._prefix}{prefix}{self._count}"

    def segment(self, ops: list, over, bound: dict | None = None) -> list[str]:
        """Statements computing `ops` at flat index `i` of `over`; `bound` maps tensors the
        enclosing template already holds (a GEMM's accumulator) to their C names."""
        local = {**self.names, **(bound or {})}
        lines: list[str] = []
        for op in self.used_inline:
            if op.outputs[0] not in local and _needed_by(op, ops, self.inline):
                local[op.outputs[0]] = self._define(op, local, lines)
        for t, name in (bound or {}).items():
            if t in self.outs:
                lines.append(f"{self.outs[t]}[i] = {name};")
        for op in ops:
            args = []
            for t in ([] if op.type in INDEXED else _loaded_inputs(op)):
                name = _known(t, local)
                if name is None:  # loaded at i of the iteration space, or of this op's output
                    at = _space(op.outputs[0], over)  # where the op sees it reshaped
                    key = (t, tuple(at.shape))
                    if key not in local:
                        local[key] = self._load(t, at, lines)
                    name = local[key]
                args.append(name)
            name = self.fresh("v")
            dt = op.outputs[0].dtype
            split = self._split_for(op.outputs[0])
            self.used_split |= split is not None and op.type in INDEXED
            lines.append(f"const {compute_ctype(dt)} {name} = "
                         f"{rounded(dt, scalar_expr(self.kb, op, args, split))};")
            local[op.outputs[0]] = name
            if op.outputs[0] in self.outs:
                lines.append(f"{self.outs[op.outputs[0]]}[i] = {name};")
        self._last = local
        return lines

    def _split_for(self, t) -> tuple[str, str] | None:
        """(row, last) when the loop walks rows of a tensor shaped like t, else None."""
        if self.split is not None and tuple(t.shape) == tuple(self.split[2].shape):
            return self.split[:2]
        return None

    def value_of(self, t) -> str:
        """The C name holding t in the statements the last segment() call wrote."""
        return self._last[t]

    def _reads_written(self, op) -> bool:
        stack, seen = [op], set()
        while stack:
            o = stack.pop()
            if o in seen:
                continue
            seen.add(o)
            for t in _loaded_inputs(o):
                if alias_root(t).op in self.written:
                    return True
                if t.op in self.inline:
                    stack.append(t.op)
        return False

    def _define(self, op, names: dict, lines: list) -> str:
        """Compute an inlined uniform op (its operands loaded at index 0)."""
        if op.type in ALIAS_OPS:  # a view: the same value
            t = op.inputs[0]
            if t not in names:
                names[t] = self._define(t.op, names, lines)
            return names[t]
        args = []
        for t in _loaded_inputs(op):
            if t not in names:
                name = self.fresh("s")
                lines.append(f"const {compute_ctype(t.dtype)} {name} = {self._scalar(t)};")
                names[t] = name
            args.append(names[t])
        name = self.fresh("s")
        dt = op.outputs[0].dtype
        lines.append(f"const {compute_ctype(dt)} {name} = {rounded(dt, scalar_expr(self.kb, op, args))};")
        return name

    def _scalar(self, t) -> str:
        """A one-element tensor's value: a constant's literal (g++ folds it, and merges the
        expressions it makes equal: the GELU gradient's tanh with the forward's), else a load."""
        if t.op.type == "Const" and is_one_element(t):
            return Dialect(t.dtype).lit(np.asarray(t.op.attrs["value"]).reshape(-1)[0])
        return f"{self.kb.input(t)}[0]"

    def _load(self, t, over, lines: list) -> str:
        """Bind external tensor t at this element (once per kernel when it is one element)."""
        name = self.fresh("x")
        if t.op.type == "Const" and is_one_element(t):
            self.prologue.append(f"const {compute_ctype(t.dtype)} {name} = {self._scalar(t)};")
            self.names[t] = name
            return name
        if self.column is not None and _row_vector(t, over):  # a bias: index by column, which
            lines.append(f"const {compute_ctype(t.dtype)} {name} = {self.kb.input(t)}[{self.column}];")
            return name  # vectorizes (the flat index's `i % N` does not)
        split = self._split_for(over)
        offset = operand_offset(self.kb, t, over, "i", self.checks, split)
        self.used_split |= split is not None and offset not in ("i", "0")
        if offset == "0" and alias_root(t).op not in self.written and not is_one_element(over):
            self.prologue.append(f"const {compute_ctype(t.dtype)} {name} = {self.kb.input(t)}[0];")
            self.names[t] = name
            return name
        lines.append(f"const {compute_ctype(t.dtype)} {name} = {self.kb.input(t)}[{offset}];")
        return name


def emit_fused(ctx: EmitContext, group: Group, inline: set, stored: set) -> None:
    """One kernel for an elementwise `group`: each segment a tile loop over its own space."""
    kb = ctx.builder(kernel_base_name(group), list(group.ops))
    code = FusedCode(kb, group.ops, inline, stored)
    kb.nodes = list(group.ops) + code.used_inline
    iters, bodies = [], []
    for segment in group.segments:
        over = iteration_tensor(segment)
        iters.append(over)
        code.split = ("row", "last", over) if ctx.device == "cpu" and _rows_worth_it(over) else None
        code.used_split = False
        bodies.append((over, code.segment(segment, over), code.used_split))
    itype = index_type_for(*iters, *[p.tensor for p in kb.params if p.tensor is not None])
    body = "".join(f"  {line}\n" for line in code.prologue)
    for over, lines, by_rows in bodies:
        if by_rows:  # a load broadcasts: walk rows, so it divides once per row, not per element
            rows = " * ".join(kb.dim(over, a) for a in range(len(over.shape) - 1))
            loop = row_loop(rows, kb.dim(over, -1), itype, "\n".join(lines))
        else:
            loop = tile_loop(kb.numel(over), itype, "\n".join(lines), ctx.device)
        body += "  {  // " + f"{over.op.name}: {list(over.shape)}\n" + loop + "  }\n"
    count = lambda shapes: max(numel(shapes[t]) for t in iters)  # noqa: E731
    flops = lambda shapes: sum(numel(shapes[t]) * len(seg) for t, seg in zip(iters, group.segments))  # noqa: E731
    what = ", ".join(sorted({op.type for op in group.ops}))
    kernel = ctx.add(kb.build(body, tiled_launch(count), flops=flops, checks=code.checks, helpers=(HELPERS,),
                     comment=f"{len(group.segments)} segment(s) of {what}, tiles of {TILE}"))
    kernel.map = True  # tile and row loops: right for any grid and block


def _rows_worth_it(over) -> bool:
    """Walk `over` by rows on the cpu (when a load broadcasts)? Rows long enough to vectorize."""
    shape = over.shape
    return len(shape) >= 2 and shape[-1] is not None and shape[-1] >= 8


def _space(out, over):
    """The tensor whose shape an op's operands broadcast against: the segment's iteration
    tensor, unless the op's output is the same elements statically reshaped (fusion.same_space)."""
    if is_one_element(out) or tuple(out.shape) == tuple(over.shape) or None in out.shape:
        return over
    return out


def _known(t, local: dict) -> str | None:
    """The C name of t's value if the code holds it already, seen through reshapes."""
    while t not in local and t.op.type in ALIAS_OPS:
        t = t.op.inputs[0]
    return local.get(t)


def _row_vector(t, over) -> bool:
    """Is t, broadcast against `over`, one value per column of its last (static) dim?"""
    shape, full = list(t.shape), list(over.shape)
    return (len(shape) >= 1 and len(full) >= 1 and shape[-1] is not None
            and shape[-1] == full[-1] and shape[-1] > 1 and all(d == 1 for d in shape[:-1]))


def iteration_tensor(segment: list):
    big = [op.outputs[0] for op in segment if not is_one_element(op.outputs[0])]
    return big[0] if big else segment[0].outputs[0]


def _inline_closure(ops: list, inline: set) -> list:
    found, stack = set(), [t.op for op in ops for t in _loaded_inputs(op) if t.op in inline]
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
