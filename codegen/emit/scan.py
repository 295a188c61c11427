"""The selective scan (Mamba): SelectiveScan and its gradient, SelectiveScanGrad.

The state recurrence x[t] = a[t] * x[t-1] + b[t] is a linear recurrence, and linear
recurrences compose associatively: applying (a1, b1) then (a2, b2) is
(a1 * a2, a2 * b1 + b2). So the sequence is scanned in parallel, as Cumsum is (rows.py):
u is seen as rows.py's [outer = batch, len = length, inner = d_in], one row per
(batch, channel); threadIdx.x picks a row (consecutive channels: coalesced loads),
the blockDim.y threads of that row take SCAN_ITEMS consecutive positions each, compose
them serially, and a block-wide exclusive scan of the (a, b) pairs (warp
__shfl_up_sync Hillis-Steele, then the warp totals through shared memory) gives each
thread the state before its positions; a carry links tiles of blockDim.y * SCAN_ITEMS
positions. The states of one row are scanned once per state index n (a loop), and y
accumulates over n in the thread that owns the position.

The gradient runs, per n, the forward scan again (its states go to a scratch buffer),
then the adjoint lam[t] = a[t+1] * lam[t+1] + dy[t] * C[t, n] as the same parallel scan
taken from the end. du and ddelta accumulate in the owning thread; dB and dC (sums over
channels) and dA (a sum over batch and positions, first combined across the block) are
atomicAdds into the packed, zeroed output (see graphflow/ops/scan.py for its layout).

When the launch gives a row a single thread (blockDim.y == 1: short sequences on the GPU,
many rows on the emulator, where fiber switches at barriers cost more than they save),
both kernels take their serial schedule instead: one loop over the sequence with all n
states (and adjoints) in registers, no barriers. Where every row gets one thread (the cpu
device), the gradient keeps exp(delta * A) from its forward walk in a scratch buffer for the
adjoint walk, which writes dB's terms over it; a finish kernel (one thread per batch and
position) then sums dB and dC over the channels. The emulator's float atomicAdd is a
compare-and-swap loop, and two per state and position cost more than the scan itself.
"""

from __future__ import annotations

from graphflow.graph import Operation

from ..kernel import EmitContext, Launch, add_zero_kernel, ctype, index_type_for, numel
from . import emitter
from .elementwise import Dialect
from .reduce import HELPERS, block_shape, grid_size, indent, mul, paren, scaled
from .rows import SCAN_ITEMS, Rows

SCAN_HELPERS = r"""
// graphflow linear-recurrence scan: (a, b) pairs, h = a * h_prev + b; (a1, b1) then (a2, b2)
// composes to (a1 * a2, a2 * b1 + b2), identity (1, 0).
// Exclusive scan of each thread's pair over threadIdx.y (separately for each threadIdx.x) into
// (*pa, *pb); the composition of the whole column into (*ta, *tb). Block: blockDim.y == 1, or
// blockDim.x <= 32 dividing 32 and 32 <= blockDim.x * blockDim.y <= 256.
// smem: 576 values (synced on entry, so calls may follow each other).
template <class T>
__device__ __forceinline__ void gf_linrec_scan_block(T a, T b, T* smem, T* pa, T* pb, T* ta,
                                                     T* tb) {
  if (blockDim.y == 1) {
    *pa = (T)1;
    *pb = (T)0;
    *ta = a;
    *tb = b;
    return;
  }
  const unsigned bx = blockDim.x;
  const unsigned tid = threadIdx.y * bx + threadIdx.x;
  const unsigned lane = tid & 31u, warp = tid >> 5, warps = (bx * blockDim.y) >> 5;
  T ia = a, ib = b;  // inclusive scan inside the warp (Hillis-Steele, strides keep threadIdx.x)
  for (unsigned d = bx; d < 32; d <<= 1) {
    const T ua = __shfl_up_sync(0xffffffffu, ia, d);
    const T ub = __shfl_up_sync(0xffffffffu, ib, d);
    if (lane >= d) {
      ib = ia * ub + ib;
      ia = ua * ia;
    }
  }
  T ea = (T)1, eb = (T)0;  // exclusive inside the warp
  if (bx < 32) {
    const T sa = __shfl_up_sync(0xffffffffu, ia, bx);
    const T sb = __shfl_up_sync(0xffffffffu, ib, bx);
    if (lane >= bx) {
      ea = sa;
      eb = sb;
    }
  }
  T* wa = smem;
  T* wb = smem + 288;
  __syncthreads();  // the previous call may still be reading smem
  if (lane >= 32 - bx) {  // warp totals
    wa[warp * bx + lane - (32 - bx)] = ia;
    wb[warp * bx + lane - (32 - bx)] = ib;
  }
  __syncthreads();
  if (tid < bx) {  // exclusive scan of the (at most 8) warp totals
    T ra = (T)1, rb = (T)0;
    for (unsigned w = 0; w < warps; ++w) {
      const T xa = wa[w * bx + tid], xb = wb[w * bx + tid];
      wa[w * bx + tid] = ra;
      wb[w * bx + tid] = rb;
      rb = xa * rb + xb;
      ra = ra * xa;
    }
    wa[warps * bx + tid] = ra;
    wb[warps * bx + tid] = rb;
  }
  __syncthreads();
  *ta = wa[warps * bx + threadIdx.x];
  *tb = wb[warps * bx + threadIdx.x];
  const T xa = wa[warp * bx + threadIdx.x], xb = wb[warp * bx + threadIdx.x];
  *pa = xa * ea;  // the warps before, then the lanes before
  *pb = ea * xb + eb;
}
"""


def _scan_block(rows: int, length: int, inner: int, device: str) -> tuple[int, int]:
    if device == "cpu":  # one thread per row: the serial walk, no barrier (reduce.CPU_HELPERS)
        return 32, 1
    return block_shape(rows, -(-length // SCAN_ITEMS), inner, device)


def _launch(rows: Rows):
    def launch(shapes, device: str) -> Launch:
        n_rows, length, inner = rows.sizes(shapes)
        bx, by = _scan_block(n_rows, length, inner, device)
        return Launch((grid_size(-(-n_rows // bx), device), 1, 1), (bx, by, 1))

    return launch


class _Scan:
    """C text shared by the two kernels: the row prologue and one parallel scan pass."""

    def __init__(self, kb, op: Operation, device: str) -> None:
        self.serial_only = _scan_block(1, 1 << 20, 1, device)[1] == 1  # even long rows: one thread
        u, _, a = op.inputs[:3]
        self.rows = Rows(kb, u, 1)
        self.n = a.shape[1]
        self.c = ctype(u.dtype)
        self.exp = Dialect(u.dtype).fn("exp")
        self.itype = index_type_for(*op.inputs, op.outputs[0])
        self.ptr = {name: kb.input(t, name) for name, t in zip(("u", "delta", "A", "B", "C"),
                                                               op.inputs[:5])}

    def at(self, t: str) -> str:
        """Offset of (batch, t, channel) in u, delta, dy and the states."""
        return f"base + {scaled(paren(t), self.rows.inner)}"

    def bc(self, t: str) -> str:
        """Offset of (batch, t, k) in B and C."""
        return f"bc + {scaled(paren(t), str(self.n))} + k"

    def prologue(self, shared: tuple = ()) -> list:
        r, it = self.rows, self.itype
        return [
            f"const {it} rows = {r.rows};  // (batch, channel) pairs",
            f"const {it} len = {r.len};",
            f"__shared__ {self.c} smem[576];",
            *shared,
            f"for ({it} tile = blockIdx.x; tile * ({it})blockDim.x < rows; tile += gridDim.x) {{",
            f"  const {it} o = tile * ({it})blockDim.x + threadIdx.x;  // the row",
            "  const bool active = o < rows;",
            f"  const {it} base = active ? {r.base()} : 0;  // (batch, 0, channel) in u",
            f"  const {it} bc = active ? (o / {paren(r.inner)}) * {paren(mul(r.len, str(self.n)))}"
            " : 0;  // (batch, 0, 0) in B",
            f"  const {it} chan = active ? o % {paren(r.inner)} : 0;",
        ]

    def scan_pass(self, load: list, use: list, reverse: bool, carry: str) -> list:
        """One pass over the row in tiles: `load` sets la[i], lb[i] for position t (valid
        positions only); the block scan; then `use` runs per valid position with `h` the
        state there. Positions go backwards when `reverse`."""
        c, it, n = self.c, self.itype, SCAN_ITEMS
        t = "len - 1 - p" if reverse else "p"
        return [
            f"{c} {carry} = ({c})0;  // the state before this tile",
            f"for ({it} start = 0; start < len; start += ({it})blockDim.y * {n}) {{",
            f"  const {it} first = start + ({it})threadIdx.y * {n};  // this thread's {n} positions",
            f"  {c} la[{n}], lb[{n}];",
            f"  {c} agg_a = ({c})1, agg_b = ({c})0;",
            f"  for (int i = 0; i < {n}; ++i) {{",
            f"    const {it} p = first + i;",
            f"    la[i] = ({c})1;",
            f"    lb[i] = ({c})0;",
            "    if (active && p < len) {",
            f"      const {it} t = {t};",
            *["      " + line for line in load],
            "    }",
            "    agg_b = la[i] * agg_b + lb[i];",
            "    agg_a = agg_a * la[i];",
            "  }",
            f"  {c} pa, pb, ta, tb;",
            f"  gf_linrec_scan_block<{c}>(agg_a, agg_b, smem, &pa, &pb, &ta, &tb);",
            f"  {c} h = pa * {carry} + pb;",
            f"  for (int i = 0; i < {n}; ++i) {{",
            f"    const {it} p = first + i;",
            "    if (active && p < len) {",
            f"      const {it} t = {t};",
            "      h = la[i] * h + lb[i];",
            *["      " + line for line in use],
            "    }",
            "  }",
            f"  {carry} = ta * {carry} + tb;",
            "}",
        ]

    def split(self, serial: list, parallel: list) -> list:
        """The row's two schedules: blockDim.y == 1 walks it in one thread, else the scan.
        Where the launch always gives a row one thread (the cpu device), only the walk: no
        barrier in the kernel, so the emulator never needs fibers for it."""
        if self.serial_only:
            return ["// one thread per row (blockDim.y == 1): a plain loop over the sequence",
                    "if (active) {", *["  " + line for line in serial], "}"]
        return ["if (blockDim.y == 1) {  // one thread per row: a plain loop over the sequence",
                "  if (active) {", *["    " + line for line in serial], "  }",
                "} else {  // the sequence split over threadIdx.y: parallel scans",
                *["  " + line for line in parallel], "}"]

    def forward_load(self) -> list:
        p = self.ptr
        return [f"const {self.c} dt = {p['delta']}[{self.at('t')}];",
                f"la[i] = {self.exp}(dt * a_k);",
                f"lb[i] = dt * {p['B']}[{self.bc('t')}] * {p['u']}[{self.at('t')}];"]


@emitter("SelectiveScan")
def emit_selective_scan(ctx: EmitContext, op: Operation) -> None:
    kb = ctx.builder("selective_scan", [op])
    s = _Scan(kb, op, ctx.device)
    out = kb.output(op.outputs[0])
    c, n, p = s.c, s.n, s.ptr
    use = [f"const {c} y = h * {p['C']}[{s.bc('t')}];",
           f"{out}[{s.at('t')}] = k == 0 ? y : {out}[{s.at('t')}] + y;"]
    serial = [  # one thread walks the row, every state in registers
        f"{c} a[{n}], x[{n}];",
        f"for (int k = 0; k < {n}; ++k) {{ a[k] = {p['A']}[chan * {n} + k]; x[k] = ({c})0; }}",
        f"for ({s.itype} t = 0; t < len; ++t) {{",
        f"  const {c} dt = {p['delta']}[{s.at('t')}], ut = {p['u']}[{s.at('t')}];",
        f"  {c} y = ({c})0;",
        f"  for (int k = 0; k < {n}; ++k) {{",
        f"    x[k] = {s.exp}(dt * a[k]) * x[k] + dt * {p['B']}[{s.bc('t')}] * ut;",
        f"    y += x[k] * {p['C']}[{s.bc('t')}];",
        "  }",
        f"  {out}[{s.at('t')}] = y;",
        "}",
    ]
    parallel = [
        f"for (int k = 0; k < {n}; ++k) {{  // state index: y sums over it",
        f"  const {c} a_k = {p['A']}[chan * {n} + k];",
        *["  " + line for line in s.scan_pass(s.forward_load(), use, False, "carry")],
        "}",
    ]
    body = s.prologue() + ["  " + line for line in s.split(serial, parallel)] + ["}"]
    u = op.inputs[0]
    ctx.add(kb.build(
        indent(body, 2), _launch(s.rows), flops=lambda sh: 8 * numel(sh[u]) * n,
        comment=f"selective scan {list(u.shape)} with {n} states: a row per (batch, channel), "
                f"threadIdx.y splits the sequence; block-wide scan of (a, b) pairs per state",
        helpers=(HELPERS, SCAN_HELPERS)))


@emitter("SelectiveScanGrad")
def emit_selective_scan_grad(ctx: EmitContext, op: Operation) -> None:
    u = op.inputs[0]
    packed = op.outputs[0]
    if packed.dtype.name not in ("float32", "float64"):
        from graphflow.errors import CompileError
        raise CompileError(f"{op.describe()}: selective scan kernels need float32 or float64")
    add_zero_kernel(ctx, op, "selective_scan_grad_zero",
                    "SelectiveScanGrad, first: zero the packed gradient (atomics add into it)")
    kb = ctx.builder("selective_scan_grad", [op])
    s = _Scan(kb, op, ctx.device)
    dy = kb.input(op.inputs[5], "dy")
    out = kb.output(packed)
    # the states of one state index (parallel schedule) or of all n (serial schedule)
    def state_elements(shapes) -> int:
        return numel(shapes[u]) * s.n

    states = kb.scratch("states", s.c, state_elements)
    # one-thread rows (the cpu schedule): dB's terms per (batch, position, channel, state),
    # summed over the channels by a finish kernel instead of atomics (the emulator's float
    # atomicAdd is a compare-and-swap loop, two per state per position: most of the time)
    terms = kb.scratch("db_terms", s.c, state_elements) if s.serial_only else None

    def all_states(t: str) -> str:
        return f"({s.at(t)}) * {s.n} + k"

    c, n, p = s.c, s.n, s.ptr
    d_in = s.rows.inner
    width = f"(2 * {paren(d_in)} + {2 * n})"
    store = [f"{states}[{s.at('t')}] = h;"]
    adjoint_load = [
        f"la[i] = t + 1 < len ? {s.exp}({p['delta']}[{s.at('t + 1')}] * a_k) : ({c})0;",
        f"lb[i] = {dy}[{s.at('t')}] * {p['C']}[{s.bc('t')}];",
    ]
    adjoint_use = [  # h is lam[t] here
        f"const {c} dt = {p['delta']}[{s.at('t')}], ut = {p['u']}[{s.at('t')}];",
        f"const {c} h_prev = t > 0 ? {states}[{s.at('t - 1')}] : ({c})0;",
        f"const {c} q = h * h_prev * {s.exp}(dt * a_k);  // d/d(deltaA) times deltaA",
        f"const {c} lam_b = h * {p['B']}[{s.bc('t')}];",
        f"{c}* row = {out} + {d_in} * {n} + ((o / {paren(d_in)}) * len + t) * {width};",
        "row[chan] += dt * lam_b;  // du",
        f"row[{d_in} + chan] += ut * lam_b + q * a_k;  // ddelta",
        f"atomicAdd(&row[2 * {paren(d_in)} + k], h * dt * ut);  // dB",
        f"atomicAdd(&row[2 * {paren(d_in)} + {n} + k], {dy}[{s.at('t')}] * {states}[{s.at('t')}]);"
        "  // dC",
        "d_a += q * dt;",
    ]
    if terms:  # exp(delta A) once per state and position, kept in the terms scratch until
        # the adjoint loop reads it there and writes dB's term over it
        walk = [f"const {c} e = {s.exp}(dt * a[k]);",
                f"x[k] = e * x[k] + dt * {p['B']}[{s.bc('t')}] * ut;",
                f"{states}[{all_states('t')}] = x[k];",
                f"{terms}[{all_states('t')}] = e;"]
        a_t = f"{terms}[{all_states('t')}]"
        sums = [f"{terms}[{all_states('t')}] = lam[k] * dt * ut;  // dB's term (finish kernel)"]
    else:
        walk = [f"x[k] = {s.exp}(dt * a[k]) * x[k] + dt * {p['B']}[{s.bc('t')}] * ut;",
                f"{states}[{all_states('t')}] = x[k];"]
        a_t = f"{s.exp}(dt * a[k])"
        sums = [f"atomicAdd(&row[2 * {paren(d_in)} + k], lam[k] * dt * ut);  // dB",
                f"atomicAdd(&row[2 * {paren(d_in)} + {n} + k], g * {states}[{all_states('t')}]);"
                "  // dC"]
    serial = [  # one thread per row: all n states and adjoints in registers
        f"{c} a[{n}], x[{n}], lam[{n}], a_next[{n}], d_a[{n}];",
        f"for (int k = 0; k < {n}; ++k) {{",
        f"  a[k] = {p['A']}[chan * {n} + k];",
        f"  x[k] = lam[k] = a_next[k] = d_a[k] = ({c})0;",
        "}",
        f"for ({s.itype} t = 0; t < len; ++t) {{  // the states, into scratch",
        f"  const {c} dt = {p['delta']}[{s.at('t')}], ut = {p['u']}[{s.at('t')}];",
        f"  for (int k = 0; k < {n}; ++k) {{",
        *["    " + line for line in walk],
        "  }",
        "}",
        f"for ({s.itype} t = len - 1; t >= 0; --t) {{  // the adjoints, from the end",
        f"  const {c} dt = {p['delta']}[{s.at('t')}], ut = {p['u']}[{s.at('t')}];",
        f"  const {c} g = {dy}[{s.at('t')}];",
        f"  {c} lam_b = ({c})0, q_a = ({c})0;",
        f"  {c}* row = {out} + {d_in} * {n} + ((o / {paren(d_in)}) * len + t) * {width};",
        f"  for (int k = 0; k < {n}; ++k) {{",
        f"    lam[k] = a_next[k] * lam[k] + g * {p['C']}[{s.bc('t')}];",
        f"    const {c} a_t = {a_t};",
        f"    const {c} h_prev = t > 0 ? {states}[{all_states('t - 1')}] : ({c})0;",
        f"    const {c} q = lam[k] * h_prev * a_t;",
        f"    lam_b += lam[k] * {p['B']}[{s.bc('t')}];",
        "    q_a += q * a[k];",
        "    d_a[k] += q * dt;",
        "    a_next[k] = a_t;",
        *["    " + line for line in sums],
        "  }",
        "  row[chan] = dt * lam_b;  // du",
        f"  row[{d_in} + chan] = ut * lam_b + q_a;  // ddelta",
        "}",
        f"for (int k = 0; k < {n}; ++k) atomicAdd(&{out}[chan * {n} + k], d_a[k]);  // dA",
    ]
    parallel = [
        f"for (int k = 0; k < {n}; ++k) {{  // state index",
        f"  const {c} a_k = {p['A']}[chan * {n} + k];",
        "  // the forward states of this row, into scratch",
        *["  " + line for line in s.scan_pass(s.forward_load(), store, False, "carry")],
        "  __syncthreads();  // every state of the row is written",
        "  // the adjoint lam[t] = a[t+1] * lam[t+1] + dy[t] * C[t, k], scanned from the end",
        f"  {c} d_a = ({c})0;",
        *["  " + line for line in s.scan_pass(adjoint_load, adjoint_use, True, "lam_carry")],
        f"  d_a = gf_red_block<gf_red_sum<{c}> >(d_a, red);",
        f"  if (active && threadIdx.y == 0) atomicAdd(&{out}[chan * {n} + k], d_a);  // dA",
        "  __syncthreads();  // the next state index rewrites the scratch states",
        "}",
    ]
    body = (s.prologue((f"__shared__ {c} red[256];  // the block's dA combine",))
            + ["  " + line for line in s.split(serial, parallel)] + ["}"])
    ctx.add(kb.build(
        indent(body, 2), _launch(s.rows), flops=lambda sh: 24 * numel(sh[u]) * n,
        comment=f"SelectiveScanGrad for {list(u.shape)} with {n} states: per state, the "
                "forward scan into scratch, then the adjoint scanned from the end (parallel block "
                "scans); dB, dC, dA by atomicAdd"
                + ("" if terms is None else " (one thread per row: dB, dC by the finish kernel)"),
        helpers=(HELPERS, SCAN_HELPERS)))
    if terms is not None:
        _emit_grad_finish(ctx, op, state_elements)


def _emit_grad_finish(ctx: EmitContext, op: Operation, state_elements) -> None:
    """dB[b, t] = sum over channels of the dB terms, dC[b, t] = sum over channels of
    dy[b, t, d] * x[b, t, d]: one thread per (batch, position), the n sums in registers."""
    u, packed = op.inputs[0], op.outputs[0]
    c, (d_in, n) = ctype(u.dtype), op.inputs[2].shape
    itype = index_type_for(*op.inputs, packed)
    kb = ctx.builder("selective_scan_grad_finish", [op])
    out = kb.output(packed)
    dy = kb.input(op.inputs[5], "dy")
    states = kb.scratch("states", c, state_elements)  # the same buffers as the grad kernel's
    terms = kb.scratch("db_terms", c, state_elements)
    positions = mul(kb.dim(u, 0), kb.dim(u, 1))
    body = [
        f"const {itype} positions = {positions};",
        f"for ({itype} bt = ({itype})blockIdx.x * blockDim.x + threadIdx.x; bt < positions;"
        f" bt += ({itype})gridDim.x * blockDim.x) {{",
        f"  {c} db[{n}], dc[{n}];",
        f"  for (int k = 0; k < {n}; ++k) db[k] = dc[k] = ({c})0;",
        f"  for (int d = 0; d < {d_in}; ++d) {{",
        f"    const {itype} at = (bt * {d_in} + d) * {n};",
        f"    const {c} g = {dy}[bt * {d_in} + d];",
        f"    for (int k = 0; k < {n}; ++k) {{",
        f"      db[k] += {terms}[at + k];",
        f"      dc[k] += g * {states}[at + k];",
        "    }",
        "  }",
        f"  {c}* row = {out} + {d_in * n} + bt * {2 * d_in + 2 * n};",
        f"  for (int k = 0; k < {n}; ++k) {{",
        f"    row[{2 * d_in} + k] = db[k];",
        f"    row[{2 * d_in + n} + k] = dc[k];",
        "  }",
        "}",
    ]

    def launch(shapes, device: str) -> Launch:
        count = numel(shapes[u]) // d_in
        if device == "cpu":  # one thread per block, a few blocks per core
            return Launch((max(1, min(count, 64)), 1, 1), (1, 1, 1))
        return Launch((grid_size(-(-count // 128), device), 1, 1), (128, 1, 1))

    ctx.add(kb.build(
        indent(body, 2), launch, flops=lambda sh: 3 * numel(sh[u]) * n,
        comment="SelectiveScanGrad, last (one-thread rows): dB and dC, sums over the "
                "channels of the terms the grad kernel left in scratch"))
