"""Row kernels: Softmax, LogSoftmax, the two cross-entropies, Standardize (layer norm) and its
gradient, and Cumsum (a scan).

Each op works along one axis of x, seen as [outer, len, inner]: row o (of outer * inner) holds
x[base(o) + j * inner], j < len. The thread layout is the one of reduce.py: threadIdx.x picks one
of blockDim.x consecutive rows (consecutive in memory when inner > 1, so loads coalesce), the
blockDim.y threads of that threadIdx.x share the row and combine through gf_red_block (warp
shuffles + a shared-memory tree). One kernel per op, numerically stable, accumulating in the
input dtype:

  softmax / log-softmax / cross-entropy: a read pass for the row's max, one summing
      exp(x - max), each combined across the block; then a write pass (softmax, log-softmax) or
      another read pass (soft-label cross-entropy);
  standardize (layer norm): a read pass summing x, block-reduced to the mean, a second summing
      (x - mean)^2; then the write pass (its gradient: a third read pass summing dy and dy * xhat
      first);
  cumsum: tiles of blockDim.y * ITEMS elements per row; each thread scans ITEMS consecutive
      elements serially, a block-wide exclusive scan (warp __shfl_up_sync Hillis-Steele + the warp
      totals through shared memory) offsets them, and a running carry links the tiles.
"""

from __future__ import annotations

from graphflow.graph import Operation, Tensor

from ..fusion import type_names
from ..kernel import EmitContext, KernelBuilder, Launch, ctype, index_type_for, numel
from . import emitter
from .elementwise import Dialect
from .reduce import HELPERS, block_shape, grid_size, indent, lanes_loop, mul, paren, scaled

ROW_HELPERS = r"""
// graphflow row kernels: exp/log by dtype
__device__ __forceinline__ float gf_row_exp(float x) { return expf(x); }
__device__ __forceinline__ double gf_row_exp(double x) { return exp(x); }
__device__ __forceinline__ float gf_row_log(float x) { return logf(x); }
__device__ __forceinline__ double gf_row_log(double x) { return log(x); }
__device__ __forceinline__ float gf_row_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double gf_row_sqrt(double x) { return sqrt(x); }

"""

SCAN_ITEMS = 4  # consecutive elements each thread scans serially per tile
CPU_ROW_BLOCKS = 64  # cpu: blocks of one thread, rows split among them (a few per OS thread)


class Rows:
    """x seen as [outer, len, inner] along `axis`; C expressions and run-time sizes."""

    def __init__(self, kb: KernelBuilder, x: Tensor, axis: int, serial: bool = False) -> None:
        """serial: the cpu schedule, whose blocks are (rows, 1, 1): one thread walks each row,
        with a unit stride g++ can see (and vectorize the loops that are not reductions)."""
        self.serial = serial
        dims = [kb.dim(x, i) for i in range(len(x.shape))]
        self.len = dims[axis]
        self.inner = mul(*dims[axis + 1 :])
        self.rows = mul(*dims[:axis], *dims[axis + 1 :])
        self.x, self.axis = x, axis

    def sizes(self, shapes) -> tuple[int, int, int]:
        """(rows, len, inner) for concrete shapes."""
        shape = tuple(shapes[self.x])
        a = self.axis
        return numel(shape[:a] + shape[a + 1 :]), shape[a], numel(shape[a + 1 :])

    def base(self) -> str:
        if self.inner == "1":
            return scaled("o", self.len)
        inner = paren(self.inner)
        return f"(o / {inner}) * {paren(mul(self.len, self.inner))} + o % {inner}"

    def at(self, j: str) -> str:
        return f"base + {scaled(j, self.inner)}"

    def launch(self, items: int = 1):
        def launch(shapes, device: str) -> Launch:
            rows, length, inner = self.sizes(shapes)
            if self.serial and device == "cpu":  # a thread per block, each walking many rows
                return Launch((max(1, min(rows, CPU_ROW_BLOCKS)), 1, 1), (1, 1, 1))
            bx, by = block_shape(rows, -(-length // items), inner, device)
            return Launch((grid_size(-(-rows // bx), device), 1, 1), (bx, by, 1))

        return launch


def row_loop(itype: str, body: list) -> list:
    """Lines: this thread's share of the row (j = threadIdx.y, += blockDim.y, or all of it on
    the cpu schedule: see row_kernel), when active."""
    return [
        "if (active) {",
        f"  for ({itype} j = row_first; j < len; j += row_step) {{",
        *["    " + line for line in body],
        "  }",
        "}",
    ]


def row_reduce(itype: str, c: str, rows: Rows, body: list, terms: dict, red: str = "") -> list:
    """Lines combining this thread's share of the row into each `name` of terms ({name:
    expression of the element at j}, after the per-element `body` lines) with the combiner
    `red` (default gf_red_sum<c>), declared here. The cpu schedule keeps eight partial results
    per name (reduce.lanes_loop), so g++ vectorizes the loop; the other combines into one."""
    red = red or f"gf_red_sum<{c}>"
    declare = [f"{c} {name} = {red}::identity();" for name in terms]
    if not rows.serial:
        return declare + row_loop(itype, [*body, *(f"{n} = {red}::combine({n}, {e});"
                                                   for n, e in terms.items())])
    lines = lanes_loop(itype, c, red, "j", "0", "len", body, terms)
    return declare + ["if (active) {", *("  " + line for line in lines), "}"]


def row_kernel(itype: str, rows: Rows, smem_type: str, phases: list, before: list = (),
               after: list = ()) -> str:
    """The loop over this thread's rows running `phases` for row `o`; `before` and `after` the
    loop: lines once per thread."""
    t = itype
    if rows.serial:  # blockDim.y == 1: each block a run of consecutive rows, one thread a row
        loop = [f"const {t} row_first = 0, row_step = 1;  // one thread walks each row",
                f"__shared__ {smem_type} smem[256];",
                *before,
                f"const {t} run = (rows + ({t})gridDim.x - 1) / ({t})gridDim.x;  // rows per block",
                f"const {t} run_start = ({t})blockIdx.x * run;",
                f"const {t} run_end = run_start + run < rows ? run_start + run : rows;",
                f"for ({t} o = run_start + threadIdx.x; o < run_end; o += blockDim.x) {{",
                "  const bool active = true;"]
    else:
        loop = [f"const {t} row_first = threadIdx.y, row_step = blockDim.y;",
                f"__shared__ {smem_type} smem[256];",
                *before,
                f"for ({t} tile = blockIdx.x; tile * ({t})blockDim.x < rows; tile += gridDim.x) {{",
                f"  const {t} o = tile * ({t})blockDim.x + threadIdx.x;  // the row",
                "  const bool active = o < rows;"]
    lines = [
        f"const {t} rows = {rows.rows};",
        f"const {t} len = {rows.len};",
        *loop,
        f"  const {t} base = active ? {rows.base()} : 0;",
        *["  " + line for line in phases],
        "}",
        *after,
    ]
    return indent(lines, 2)


def max_and_sum_exp(itype: str, c: str, x_ptr: str, rows: Rows, keep: str = "") -> list:
    """Lines leaving the row's max in `m` and sum of exp(x - m) in `s` (every thread): a max
    pass, then a pass summing exp(x - m). NaN or +inf in the row gives NaN, like the
    reference's x - max (the max need not propagate NaN for that: gf_red_shift); -inf
    elements add nothing (an all -inf row: NaN, as numpy). Two plain
    passes, not the online (max, sum), whose rescaling branch kept the loop from vectorizing.
    keep: a pointer the sum pass also stores each exp(x - m) in (at the element's place), so a
    softmax's write pass divides instead of computing each exp a second time."""
    at = rows.at("j")
    body = [f"const {c} e = gf_row_exp({x_ptr}[{at}] - m);", f"{keep}[{at}] = e;"] if keep else []
    return [
        *row_reduce(itype, c, rows, [], {"m": f"{x_ptr}[{at}]"}, f"gf_red_shift<{c}>"),
        f"m = gf_red_block<gf_red_shift<{c}> >(m, smem);",
        *row_reduce(itype, c, rows, body, {"s": "e" if keep else f"gf_row_exp({x_ptr}[{at}] - m)"}),
        f"__shared__ {c} smem_exp[256];",
        f"s = gf_red_block<gf_red_sum<{c}> >(s, smem_exp);",
    ]


def _float_rows(ctx: EmitContext, op: Operation, name: str, x: Tensor, axis: int):
    kb = ctx.builder(name, [op])
    x_ptr = kb.input(x, "x")
    serial = block_shape(1, 1 << 20, 1, ctx.device)[1] == 1  # even a long row: one thread
    rows = Rows(kb, x, axis, serial=serial)
    return kb, x_ptr, rows, index_type_for(x), ctype(x.dtype)


def row_values(kb: KernelBuilder, rows: Rows, itype: str, c: str, out: Tensor, value: str,
               epilogue: tuple | None, name: str = "out",
               before: list = (), have_i: bool = False) -> tuple[list, str, list, tuple]:
    """(row-loop lines storing `value` (a C expression of j) as `out`, or applying `epilogue`
    (elementwise ops, inlined ops, stored tensors) to it in registers; kernel-top lines;
    checks; helpers). An epilogue runs only along the last axis, where j is the column.
    `before`: loop-body lines `value` needs (a gradient's loads); `have_i`: they declare the
    flat index `i`."""
    at = rows.at("j")
    if epilogue is None:
        return row_loop(itype, [*before, f"{kb.output(out, name)}[{at}] = {value};"]), "", [], ()
    from .elementwise import HELPERS as SCALAR_HELPERS
    from .fused import FusedCode
    ops, inline, stored = epilogue
    code = FusedCode(kb, ops, inline, stored, prefix="e")
    code.column = "j"  # a row vector operand (gamma, beta) is read by column: it vectorizes
    code.split = ("o", "j", out)  # along the last axis: element i is (row o, column j)
    kb.nodes = [*kb.nodes, *ops, *code.used_inline]
    lines = code.segment(ops, out, bound={out: "row_v"})
    body = [*before, f"const {c} row_v = {value};", *([] if have_i else [f"const {itype} i = {at};"]),
            *lines]
    top = "".join(f"  {line}\n" for line in code.prologue)
    return row_loop(itype, body), top, code.checks, (SCALAR_HELPERS,)


def fused_note(prologue: tuple | None, epilogue: tuple | None) -> str:
    """What a kernel comment adds for the elementwise ops fused before and after a template."""
    note = f"; prologue: {', '.join(e.type for e in prologue[0])}" if prologue else ""
    return note + (f"; epilogue: {', '.join(e.type for e in epilogue[0])}" if epilogue else "")


class RowInput:
    """Loads of a row kernel's input, or the elementwise `prologue` that computes it as it is
    loaded (its values other kernels need are stored by the last pass that loads it only)."""

    def __init__(self, kb: KernelBuilder, t: Tensor, name: str, prologue: tuple | None) -> None:
        self.kb, self.t, self.prologue = kb, t, prologue
        self.codes: list = []
        if prologue is None:
            self.ptr = kb.input(t, name)
        else:
            kb.nodes = [*prologue[0], *kb.nodes]

    def at(self, itype: str, index: str, store: bool) -> tuple[list, str]:
        """(lines, C value) of the input at flat `index`; `store`: this pass stores the
        prologue's outputs."""
        if self.prologue is None:
            return [], f"{self.ptr}[{index}]"
        from .fused import FusedCode
        ops, inline, stored = self.prologue
        code = FusedCode(self.kb, ops, inline, stored if store else set(),
                         prefix=f"p{len(self.codes)}")
        self.codes.append(code)
        self.kb.nodes = [*self.kb.nodes, *(op for op in code.used_inline if op not in self.kb.nodes)]
        lines = [f"const {itype} i = {index};", *code.segment(ops, self.t)]
        return lines, code.value_of(self.t)

    def top(self) -> tuple[str, list, tuple]:
        """(kernel-top lines, checks, helpers) once every pass is written."""
        if not self.codes:
            return "", [], ()
        from .elementwise import HELPERS as SCALAR_HELPERS
        top = "".join(f"  {line}\n" for code in self.codes for line in code.prologue)
        return top, [c for code in self.codes for c in code.checks], (SCALAR_HELPERS,)


@emitter("Softmax", "LogSoftmax")
def emit_softmax(ctx: EmitContext, op: Operation, epilogue: tuple | None = None) -> None:
    """`epilogue` (Softmax along the last axis): elementwise ops applied to each value in
    registers before anything is stored (the cross-entropy gradient's `(p - onehot) * g`)."""
    x = op.inputs[0]
    log = op.type == "LogSoftmax"
    name = "log_softmax" if log else "softmax"
    if epilogue is not None:
        name = "_".join([name, *type_names(epilogue[0])[:4]])
    kb, x_ptr, rows, itype, c = _float_rows(ctx, op, name, x, op.attrs["axis"])
    top, checks, helpers, keep = "", [], (), ""
    if log:
        out = kb.output(op.outputs[0])
        write = [f"const {c} log_s = gf_row_log(s);",
                 *row_loop(itype, [f"{out}[{rows.at('j')}] = ({x_ptr}[{rows.at('j')}] - m) - log_s;"])]
    elif epilogue is None:  # the sum pass leaves each exp in probs
        keep = kb.output(op.outputs[0], "probs")
        write = row_loop(itype, [f"{keep}[{rows.at('j')}] = {keep}[{rows.at('j')}] / s;"])
    else:
        value = f"gf_row_exp({x_ptr}[{rows.at('j')}] - m) / s"
        write, top, checks, helpers = row_values(kb, rows, itype, c, op.outputs[0], value, epilogue,
                                                 "probs")
    body = top + row_kernel(itype, rows, c, max_and_sum_exp(itype, c, x_ptr, rows, keep) + write)
    extra = fused_note(None, epilogue)
    ctx.add(kb.build(
        body, rows.launch(), flops=lambda s: 4 * numel(s[x]),
        comment=f"{op.type} along axis {op.attrs['axis']} of {list(x.shape)}: a row per threadIdx.x; "
                f"the max, then the sum of exp(x - max), then the write pass{extra}",
        helpers=(HELPERS, ROW_HELPERS, *helpers), checks=checks))


@emitter("SparseSoftmaxCrossEntropy")
def emit_sparse_xent(ctx: EmitContext, op: Operation, siblings: tuple = (),
                     epilogue: tuple | None = None, total: Operation | None = None) -> None:
    """loss = log(sum exp(x - m)) - (x[label] - m). A label outside [0, classes) cannot raise
    from a kernel: that row's loss is NaN (the reference raises). `siblings`: a Softmax of the
    same logits (the loss's gradient needs it), written by the same pass over each row, with
    its `epilogue` if it has one. `total`: a ReduceMean or ReduceSum of all the losses, taken
    by the row that finishes last (a ticket counter; no barrier, deterministic order)."""
    logits, labels = op.inputs
    rank = len(logits.shape)
    name = "sparse_softmax_xent" + ("_softmax" if siblings else "")
    if total is not None:
        name += "_" + type_names([total])[0]
    if epilogue is not None:
        name = "_".join([name, *type_names(epilogue[0])[:3]])
    kb, x_ptr, rows, itype, c = _float_rows(ctx, op, name, logits, rank - 1)
    kb.nodes = [op, *siblings]
    label_ptr = kb.input(labels, "labels")
    out = kb.output(op.outputs[0])
    nan = Dialect(logits.dtype).lit(float("nan"))
    before, after = _total_lines(kb, total, out, c) if total is not None else ([], [])
    write = [
        "if (active && threadIdx.y == 0) {",
        f"  const long long label = (long long){label_ptr}[o];",
        f"  {out}[o] = (label >= 0 && label < (long long)len)",
        f"      ? gf_row_log(s) - ({x_ptr}[base + label] - m) : ({c}){nan};",
        *(["  ++my_rows;"] if total is not None else []),
        "}",
    ]
    top, checks, helpers = "", [], ()
    for sib in siblings:
        value = f"gf_row_exp({x_ptr}[{rows.at('j')}] - m) / s"
        lines, top, checks, helpers = row_values(kb, rows, itype, c, sib.outputs[0], value, epilogue,
                                                 "probs")
        write += lines
    body = top + row_kernel(itype, rows, c, max_and_sum_exp(itype, c, x_ptr, rows) + write, before, after)
    also = "; also the softmax of each row" if siblings else ""
    also += f" and its epilogue: {', '.join(e.type for e in epilogue[0])}" if epilogue else ""
    ctx.add(kb.build(
        body, rows.launch(), flops=lambda s: (3 + 2 * len(siblings)) * numel(s[logits]),
        comment=f"sparse softmax cross-entropy over the last axis of {list(logits.shape)}: the max "
                f"and the sum of exp(x - max) per row; an out-of-range label gives NaN{also}",
        helpers=(HELPERS, ROW_HELPERS, *helpers), checks=checks))


def _total_lines(kb: KernelBuilder, total: Operation, losses: str, c: str) -> tuple[list, list]:
    """(Lines before, after the row loop) taking the total of all rows' losses: each thread
    counts the losses it wrote, then publishes them and adds its count to a ticket once; the
    thread whose count completes the rows (every other loss is visible by then) sums all rows
    in order, in double, and resets the counter for the next launch."""
    ticket = kb.scratch("ticket", "unsigned long long", lambda shapes: 1)
    out = kb.output(total.outputs[0], "total")
    scale = "/ (double)rows" if total.type == "ReduceMean" else ""
    before = ["unsigned long long my_rows = 0;  // losses this thread wrote"]
    after = [
        "if (my_rows > 0) {",
        "  __threadfence();  // this thread's losses before its ticket",
        f"  if (atomicAdd({ticket}, my_rows) + my_rows == (unsigned long long)rows) {{",
        "    __threadfence();",
        f"    const volatile {c}* every = {losses};",
        "    double sum = 0.0;",
        "    for (long long r = 0; r < (long long)rows; ++r) sum += (double)every[r];",
        f"    {out}[0] = ({c})(sum {scale});",
        f"    *{ticket} = 0ULL;",
        "  }",
        "}",
        "if (rows == 0 && blockIdx.x == 0 && threadIdx.x == 0 && threadIdx.y == 0) {",
        f"  {out}[0] = ({c})(0.0 {scale});  // no rows: a sum of 0, a mean of NaN (numpy's)",
        "}",
    ]
    return before, after


@emitter("SoftmaxCrossEntropy")
def emit_xent(ctx: EmitContext, op: Operation) -> None:
    """loss = -sum(labels * ((x - m) - log s)), the reference's order per element."""
    logits, labels = op.inputs
    rank = len(logits.shape)
    kb, x_ptr, rows, itype, c = _float_rows(ctx, op, "softmax_xent", logits, rank - 1)
    label_ptr = kb.input(labels, "labels")
    out = kb.output(op.outputs[0])
    at = rows.at("j")
    phases = max_and_sum_exp(itype, c, x_ptr, rows) + [
        f"const {c} log_s = gf_row_log(s);",
        f"{c} t = ({c})0;",
        *row_loop(itype, [f"t += {label_ptr}[{at}] * (({x_ptr}[{at}] - m) - log_s);"]),
        f"__shared__ {c} smem_sum[256];",
        f"t = gf_red_block<gf_red_sum<{c}> >(t, smem_sum);",
        f"if (active && threadIdx.y == 0) {out}[o] = -t;",
    ]
    body = row_kernel(itype, rows, c, phases)
    ctx.add(kb.build(
        body, rows.launch(), flops=lambda s: 6 * numel(s[logits]),
        comment=f"softmax cross-entropy over the last axis of {list(logits.shape)}: the max and the "
                "sum of exp(x - max) per row, then sum(labels * log_softmax)",
        helpers=(HELPERS, ROW_HELPERS)))


def moments(itype: str, c: str, rows: Rows, x_ptr: str, eps: str) -> list:
    """Lines leaving the row's `mean` and `rstd` = 1 / sqrt(biased variance + eps): a pass
    summing x, then one summing (x - mean)^2. The deviations are taken from the mean, so a
    large offset costs no precision (as with Welford's update, which this replaced: its
    division per element serialized the cpu schedule's rows on the divider)."""
    return [
        *row_reduce(itype, c, rows, [], {"sum_x": f"{x_ptr}[{rows.at('j')}]"}),
        f"sum_x = gf_red_block<gf_red_sum<{c}> >(sum_x, smem);",
        f"const {c} mean = sum_x / ({c})len;",
        *row_reduce(itype, c, rows, [f"const {c} d = {x_ptr}[{rows.at('j')}] - mean;"], {"sum_sq": "d * d"}),
        f"__shared__ {c} smem_sq[256];",
        f"sum_sq = gf_red_block<gf_red_sum<{c}> >(sum_sq, smem_sq);",
        f"const {c} rstd = ({c})1 / gf_row_sqrt(sum_sq / ({c})len + {eps});",
    ]


def _row_name(base: str, prologue: tuple | None, epilogue: tuple | None) -> str:
    parts = [*(type_names(prologue[0])[:2] if prologue else []), base,
             *(type_names(epilogue[0])[:3] if epilogue else [])]
    return "_".join(["fused", *parts] if prologue else parts)


@emitter("Standardize")
def emit_standardize(ctx: EmitContext, op: Operation, epilogue: tuple | None = None) -> None:
    """(x - mean) * rstd along the axis; `epilogue` (last axis): layer norm's `* gamma + beta`
    and whatever elementwise follows, on each value in registers."""
    x = op.inputs[0]
    axis = op.attrs["axis"]
    kb, x_ptr, rows, itype, c = _float_rows(ctx, op, _row_name("standardize", None, epilogue), x, axis)
    eps = Dialect(x.dtype).lit(op.attrs["epsilon"])
    value = f"({x_ptr}[{rows.at('j')}] - mean) * rstd"
    write, top, checks, helpers = row_values(kb, rows, itype, c, op.outputs[0], value, epilogue)
    body = top + row_kernel(itype, rows, c, moments(itype, c, rows, x_ptr, eps) + write)
    extra = fused_note(None, epilogue)
    ctx.add(kb.build(
        body, rows.launch(), flops=lambda s: (6 + 2 * bool(epilogue)) * numel(s[x]),
        comment=f"standardize along axis {axis} of {list(x.shape)}: a pass summing x, one summing "
                f"(x - mean)^2, then the write pass{extra}",
        helpers=(HELPERS, ROW_HELPERS, *helpers), checks=checks))


@emitter("StandardizeGrad")
def emit_standardize_grad(ctx: EmitContext, op: Operation, prologue: tuple | None = None,
                          epilogue: tuple | None = None) -> None:
    """dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat)) along the axis: the two passes of
    `moments` over x, a pass summing dy and dy * xhat, and the write pass. `prologue`: the
    elementwise ops that compute dy (layer norm's `dy * gamma`), recomputed as each pass loads
    it; `epilogue` (last axis): elementwise ops on dx in registers (the sum with the residual
    branch's gradient)."""
    x, dy = op.inputs
    axis = op.attrs["axis"]
    name = _row_name("standardize_grad", prologue, epilogue)
    kb, x_ptr, rows, itype, c = _float_rows(ctx, op, name, x, axis)
    grad = RowInput(kb, dy, "dy", prologue)
    eps = Dialect(x.dtype).lit(op.attrs["epsilon"])
    at = rows.at("j")
    load2, dy2 = grad.at(itype, at, store=False)
    load3, dy3 = grad.at(itype, at, store=True)
    value = f"rstd * (row_dy - sum_dy / ({c})len - row_xhat * sum_dy_xhat / ({c})len)"
    before = [*load3, f"const {c} row_dy = {dy3};", f"const {c} row_xhat = ({x_ptr}[{at}] - mean) * rstd;"]
    write, top, checks, helpers = row_values(kb, rows, itype, c, op.outputs[0], value, epilogue, "dx",
                                             before, have_i=prologue is not None)
    phases = moments(itype, c, rows, x_ptr, eps) + [
        *row_reduce(itype, c, rows, [*load2, f"const {c} d = {dy2};"],
                  {"sum_dy": "d", "sum_dy_xhat": f"d * (({x_ptr}[{at}] - mean) * rstd)"}),
        f"__shared__ {c} smem_dy[256];",
        f"__shared__ {c} smem_dy_xhat[256];",
        f"sum_dy = gf_red_block<gf_red_sum<{c}> >(sum_dy, smem_dy);",
        f"sum_dy_xhat = gf_red_block<gf_red_sum<{c}> >(sum_dy_xhat, smem_dy_xhat);",
        *write,
    ]
    pro_top, pro_checks, pro_helpers = grad.top()
    body = pro_top + top + row_kernel(itype, rows, c, phases)
    extra = fused_note(prologue, epilogue)
    ctx.add(kb.build(
        body, rows.launch(), flops=lambda s: 14 * numel(s[x]),
        comment=f"standardize's gradient along axis {axis} of {list(x.shape)}: the mean and variance "
                f"passes, a pass summing dy and dy * xhat, then the write pass{extra}",
        helpers=(HELPERS, ROW_HELPERS, *helpers, *pro_helpers), checks=checks + pro_checks))


@emitter("SoftmaxGrad")
def emit_softmax_grad(ctx: EmitContext, op: Operation, prologue: tuple | None = None,
                      epilogue: tuple | None = None) -> None:
    """dx = y * (g - sum(g * y)) along the axis (y: the softmax's output): a pass summing
    g * y, then the write pass. `prologue`: elementwise ops computing g as it is loaded;
    `epilogue` (last axis): elementwise ops on dx in registers (attention's scale)."""
    y, g = op.inputs
    axis = op.attrs["axis"]
    kb, y_ptr, rows, itype, c = _float_rows(ctx, op, _row_name("softmax_grad", prologue, epilogue),
                                            y, axis)
    grad = RowInput(kb, g, "g", prologue)
    at = rows.at("j")
    load1, g1 = grad.at(itype, at, store=False)
    load2, g2 = grad.at(itype, at, store=True)
    value = f"{y_ptr}[{at}] * (row_g - dot)"
    write, top, checks, helpers = row_values(kb, rows, itype, c, op.outputs[0], value, epilogue, "dx",
                                             [*load2, f"const {c} row_g = {g2};"],
                                             have_i=prologue is not None)
    phases = [
        f"{c} dot = ({c})0;",
        *row_loop(itype, [*load1, f"dot += {g1} * {y_ptr}[{at}];"]),
        f"dot = gf_red_block<gf_red_sum<{c}> >(dot, smem);",
        *write,
    ]
    pro_top, pro_checks, pro_helpers = grad.top()
    body = pro_top + top + row_kernel(itype, rows, c, phases)
    extra = fused_note(prologue, epilogue)
    ctx.add(kb.build(
        body, rows.launch(), flops=lambda s: 4 * numel(s[y]),
        comment=f"softmax's gradient along axis {axis} of {list(y.shape)}: a pass summing g * y, "
                f"then the write pass{extra}",
        helpers=(HELPERS, ROW_HELPERS, *helpers, *pro_helpers), checks=checks + pro_checks))


@emitter("Cumsum")
def emit_cumsum(ctx: EmitContext, op: Operation) -> None:
    x = op.inputs[0]
    axis, exclusive, reverse = op.attrs["axis"], op.attrs["exclusive"], op.attrs["reverse"]
    kb = ctx.builder("cumsum", [op])
    x_ptr = kb.input(x, "x")
    out = kb.output(op.outputs[0])
    rows = Rows(kb, x, axis)
    itype, c = index_type_for(x), ctype(x.dtype)
    n = SCAN_ITEMS
    pos = "(len - 1 - p)" if reverse else "p"
    phases = [
        f"{c} carry = ({c})0;  // sum of the tiles before this one",
        f"for ({itype} start = 0; start < len; start += ({itype})blockDim.y * {n}) {{",
        f"  const {itype} first = start + ({itype})threadIdx.y * {n};  // this thread's {n} positions",
        f"  {c} v[{n}];",
        f"  {c} mine = ({c})0;",
        f"  for (int k = 0; k < {n}; ++k) {{",
        f"    const {itype} p = first + k;  // position in scan order",
        f"    v[k] = (active && p < len) ? {x_ptr}[base + {scaled(pos, rows.inner)}] : ({c})0;",
        "    mine += v[k];",
        "  }",
        f"  {c} tile_total;",
        f"  const {c} before = carry + gf_scan_block<{c}>(mine, smem, &tile_total);",
        f"  {c} run = ({c})0;",
        f"  for (int k = 0; k < {n}; ++k) {{",
        f"    const {itype} p = first + k;",
        *(["    const " + c + " value = before + run;", "    run += v[k];"] if exclusive else
          ["    run += v[k];", "    const " + c + " value = before + run;"]),
        f"    if (active && p < len) {out}[base + {scaled(pos, rows.inner)}] = value;",
        "  }",
        "  carry += tile_total;",
        "}",
    ]
    lines = [
        f"const {itype} rows = {rows.rows};",
        f"const {itype} len = {rows.len};",
        f"__shared__ {c} smem[288];",
        f"for ({itype} tile = blockIdx.x; tile * ({itype})blockDim.x < rows; tile += gridDim.x) {{",
        f"  const {itype} o = tile * ({itype})blockDim.x + threadIdx.x;  // the row",
        "  const bool active = o < rows;",
        f"  const {itype} base = active ? {rows.base()} : 0;",
        *["  " + line for line in phases],
        "}",
    ]
    ctx.add(kb.build(
        indent(lines, 2), rows.launch(items=n), flops=lambda s: numel(s[x]),
        comment=f"cumsum along axis {axis} of {list(x.shape)} (exclusive={exclusive}, reverse={reverse}): "
                f"tiles of blockDim.y*{n}, serial {n}-element scans + a block-wide exclusive scan, "
                "carry across tiles",
        helpers=(HELPERS,)))
