"""Reductions: ReduceSum/Mean/Max/Min/Prod over any set of axes, ArgMax/ArgMin, SumToLike.

Every reduction is lowered to the same picture: output element `o` (one of n_out) combines the
`len` input elements `x[keep_offset(o) + reduce_offset(r)]`, r in [0, len). Adjacent axes of the
same kind are merged first, so the common cases are a few multiplies: reducing trailing axes is
[n_out, len] (row reduction), leading axes is [len, n_out] (column reduction), and a middle block
is [outer, len, inner]. Any other set of axes gets the general strided index (div/mod per group).

Thread layout, shared with rows.py: a block is (blockDim.x, blockDim.y); threadIdx.x picks one of
blockDim.x consecutive outputs (consecutive in memory when the innermost axes are kept, so the
loads coalesce) and the blockDim.y threads with that threadIdx.x split its `len` elements, then
combine with warp shuffles (__shfl_down_sync) and a shared-memory tree across warps
(gf_red_block). The launch picks the shape from the run-time sizes: a row reduction on the GPU
uses blockDim.y up to 256 threads per row; a column reduction uses 32 lanes x 8 splits; short
rows use one thread per output. On the CPU emulator a block is 32 threads and, whenever there are
enough outputs, each thread reduces its own output serially (no barrier is ever reached).

Very long reductions with few outputs run in two passes: pass 1 (grid.y = chunks) writes one
partial accumulator per (chunk, output) to a scratch buffer, pass 2 combines the chunks and
finalizes. The chunk count is a launch-time scalar both kernels receive; with one chunk pass 1
writes the result and pass 2 returns at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from graphflow.graph import Operation, Tensor

from ..kernel import EmitContext, KernelBuilder, Launch, ctype, index_type_for, numel, thread_part
from . import emitter

# ---- launch policy ------------------------------------------------------------------------
GPU_THREADS = 256  # threads per block on the GPU (the shared-memory helpers assume <= 256)
CPU_THREADS = 32  # the emulator runs a block's threads as fibers: keep blocks small
CPU_MAX_BLOCKS = 256
CPU_COLUMNS = 16  # cpu column reductions: consecutive outputs one thread combines side by side
CPU_LANES = 8  # cpu reductions along memory: partial results one thread combines into in turn
GPU_MAX_BLOCKS = 65535
TWO_PASS_MIN_LEN = 65536  # reductions at least this long may be split over several blocks
CHUNK_LEN = 16384  # about this many elements per chunk in the two-pass scheme
TARGET_BLOCKS = 256  # split rows until about this many blocks are busy
MAX_CHUNKS = 256


def pow2_at_least(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def block_shape(n_out: int, length: int, inner: int, device: str) -> tuple[int, int]:
    """(blockDim.x, blockDim.y): outputs per block, threads splitting each output's elements.

    `inner` > 1 means consecutive outputs are consecutive in memory (column reduction)."""
    if device == "cpu":
        return CPU_THREADS, 1  # one thread per output, serial and barrier-free (CPU_HELPERS)
    if length < 32:
        return GPU_THREADS, 1
    if inner > 1:
        bx = min(32, pow2_at_least(inner))
        by = max(min(GPU_THREADS // bx, pow2_at_least(length)), 32 // bx)
        return bx, by
    by = min(GPU_THREADS, pow2_at_least(length))
    return GPU_THREADS // by, by


def grid_size(tiles: int, device: str) -> int:
    return max(1, min(tiles, CPU_MAX_BLOCKS if device == "cpu" else GPU_MAX_BLOCKS))


def chunks_for(n_out: int, length: int) -> int:
    """How many blocks share one output's elements (1: a single pass)."""
    if length < TWO_PASS_MIN_LEN or n_out >= TARGET_BLOCKS:
        return 1
    return max(1, min(MAX_CHUNKS, -(-TARGET_BLOCKS // max(n_out, 1)), -(-length // CHUNK_LEN)))


# ---- C helpers ------------------------------------------------------------------------------
COMBINER_HELPERS = r"""
// graphflow reductions: identities, combiners and the block-wide reduce / scan
template <class T> __device__ __forceinline__ T gf_red_lowest();
template <> __device__ __forceinline__ float gf_red_lowest<float>() { return -INFINITY; }
template <> __device__ __forceinline__ double gf_red_lowest<double>() { return -(double)INFINITY; }
template <> __device__ __forceinline__ int gf_red_lowest<int>() { return -2147483647 - 1; }
template <> __device__ __forceinline__ long long gf_red_lowest<long long>() {
  return -9223372036854775807LL - 1;
}
template <class T> __device__ __forceinline__ T gf_red_highest();
template <> __device__ __forceinline__ float gf_red_highest<float>() { return INFINITY; }
template <> __device__ __forceinline__ double gf_red_highest<double>() { return (double)INFINITY; }
template <> __device__ __forceinline__ int gf_red_highest<int>() { return 2147483647; }
template <> __device__ __forceinline__ long long gf_red_highest<long long>() {
  return 9223372036854775807LL;
}

// A combiner: acc type, identity, associative combine, and a warp shuffle of an acc.
template <class T> struct gf_red_sum {
  typedef T acc;
  static __device__ __forceinline__ T identity() { return (T)0; }
  static __device__ __forceinline__ T combine(T a, T b) { return a + b; }
  static __device__ __forceinline__ T shfl_down(T a, unsigned d) {
    return __shfl_down_sync(0xffffffffu, a, d);
  }
};
template <class T> struct gf_red_prod {
  typedef T acc;
  static __device__ __forceinline__ T identity() { return (T)1; }
  static __device__ __forceinline__ T combine(T a, T b) { return a * b; }
  static __device__ __forceinline__ T shfl_down(T a, unsigned d) {
    return __shfl_down_sync(0xffffffffu, a, d);
  }
};
// max/min propagate NaN, like numpy
template <class T> struct gf_red_max {
  typedef T acc;
  static __device__ __forceinline__ T identity() { return gf_red_lowest<T>(); }
  static __device__ __forceinline__ T combine(T a, T b) { return (a != a || a > b) ? a : b; }
  static __device__ __forceinline__ T shfl_down(T a, unsigned d) {
    return __shfl_down_sync(0xffffffffu, a, d);
  }
};
// the shift of a softmax: whether a NaN wins does not matter (a NaN element makes the row's
// sum of exps, so every result, NaN anyway), and without that test the loop vectorizes
template <class T> struct gf_red_shift {
  typedef T acc;
  static __device__ __forceinline__ T identity() { return gf_red_lowest<T>(); }
  static __device__ __forceinline__ T combine(T a, T b) { return a > b ? a : b; }
  static __device__ __forceinline__ T shfl_down(T a, unsigned d) {
    return __shfl_down_sync(0xffffffffu, a, d);
  }
};
template <class T> struct gf_red_min {
  typedef T acc;
  static __device__ __forceinline__ T identity() { return gf_red_highest<T>(); }
  static __device__ __forceinline__ T combine(T a, T b) { return (a != a || a < b) ? a : b; }
  static __device__ __forceinline__ T shfl_down(T a, unsigned d) {
    return __shfl_down_sync(0xffffffffu, a, d);
  }
};
// argmax/argmin: (value, index); NaN wins (numpy), ties go to the smaller index
template <class T> struct gf_red_argpair { T v; long long i; };
template <class T, bool MAX> struct gf_red_arg {
  typedef gf_red_argpair<T> acc;
  static __device__ __forceinline__ acc make(T v, long long i) {
    acc a;
    a.v = v;
    a.i = i;
    return a;
  }
  static __device__ __forceinline__ acc identity() {
    return make(MAX ? gf_red_lowest<T>() : gf_red_highest<T>(), 9223372036854775807LL);
  }
  static __device__ __forceinline__ acc combine(acc a, acc b) {
    const bool a_nan = a.v != a.v, b_nan = b.v != b.v;
    bool a_wins;
    if (a_nan || b_nan) a_wins = a_nan && (!b_nan || a.i < b.i);
    else a_wins = (MAX ? a.v > b.v : a.v < b.v) || (a.v == b.v && a.i < b.i);
    return a_wins ? a : b;
  }
  static __device__ __forceinline__ acc shfl_down(acc a, unsigned d) {
    return make(__shfl_down_sync(0xffffffffu, a.v, d), __shfl_down_sync(0xffffffffu, a.i, d));
  }
};

"""

# The block-wide reduce and scan the GPU schedules use (warp shuffles, shared memory, barriers).
BLOCK_HELPERS = r"""
// Combines v over threadIdx.y, separately for each threadIdx.x, and returns the result to every
// thread. Block: blockDim.y == 1 (nothing to do), or blockDim.x <= 32 and blockDim.y powers of
// two with 32 <= blockDim.x * blockDim.y <= 256. smem: 256 accs (reused; synced on entry).
template <class R>
__device__ __forceinline__ typename R::acc gf_red_block(typename R::acc v, typename R::acc* smem) {
  if (blockDim.y == 1) return v;
  const unsigned bx = blockDim.x;
  const unsigned tid = threadIdx.y * bx + threadIdx.x;
  const unsigned lane = tid & 31u, warp = tid >> 5;
  // 1) inside a warp: the lanes of one threadIdx.x are bx apart
  for (unsigned off = 16; off >= bx; off >>= 1) v = R::combine(v, R::shfl_down(v, off));
  __syncthreads();  // the previous call may still be reading smem
  if (lane < bx) smem[warp * bx + lane] = v;
  __syncthreads();
  // 2) across warps: a shared-memory tree
  for (unsigned s = (bx * blockDim.y) >> 6; s > 0; s >>= 1) {
    if (warp < s && lane < bx) {
      smem[warp * bx + lane] = R::combine(smem[warp * bx + lane], smem[(warp + s) * bx + lane]);
    }
    __syncthreads();
  }
  return smem[threadIdx.x];
}

// Exclusive prefix sum of v over threadIdx.y (separately for each threadIdx.x); *total gets the
// sum over all threadIdx.y. Same block rules as gf_red_block; smem: 288 values.
template <class T>
__device__ __forceinline__ T gf_scan_block(T v, T* smem, T* total) {
  if (blockDim.y == 1) {
    *total = v;
    return (T)0;
  }
  const unsigned bx = blockDim.x;
  const unsigned tid = threadIdx.y * bx + threadIdx.x;
  const unsigned lane = tid & 31u, warp = tid >> 5, warps = (bx * blockDim.y) >> 5;
  T incl = v;  // Hillis-Steele inside the warp, strides that keep threadIdx.x
  for (unsigned d = bx; d < 32; d <<= 1) {
    const T up = __shfl_up_sync(0xffffffffu, incl, d);
    if (lane >= d) incl += up;
  }
  T excl = (T)0;
  if (bx < 32) {
    excl = __shfl_up_sync(0xffffffffu, incl, bx);
    if (lane < bx) excl = (T)0;
  }
  __syncthreads();  // the previous call may still be reading smem
  if (lane >= 32 - bx) smem[warp * bx + lane - (32 - bx)] = incl;  // warp totals
  __syncthreads();
  if (tid < bx) {  // exclusive scan of the (at most 8) warp totals
    T run = (T)0;
    for (unsigned w = 0; w < warps; ++w) {
      const T t = smem[w * bx + tid];
      smem[w * bx + tid] = run;
      run += t;
    }
    smem[warps * bx + tid] = run;
  }
  __syncthreads();
  *total = smem[warps * bx + threadIdx.x];
  return smem[warp * bx + threadIdx.x] + excl;
}
"""

# The cpu device launches every reduction, row and scan kernel with blockDim.y == 1 (one thread
# per output, serial): there the block-wide steps are the identity, and with no shuffle or
# barrier in the source the emulator runs each block as a plain loop, never as fibers.
CPU_BLOCK_HELPERS = r"""
// cpu schedule: blockDim.y == 1, so combining over threadIdx.y is the identity
template <class R>
__device__ __forceinline__ typename R::acc gf_red_block(typename R::acc v, typename R::acc* smem) {
  return v;
}
template <class T>
__device__ __forceinline__ T gf_scan_block(T v, T* smem, T* total) {
  *total = v;
  return (T)0;
}
"""
HELPERS = COMBINER_HELPERS + BLOCK_HELPERS
CPU_HELPERS = COMBINER_HELPERS + CPU_BLOCK_HELPERS


# ---- C expression helpers -------------------------------------------------------------------
_ATOM = re.compile(r"^[A-Za-z_]\w*$|^\d+(LL)?$")


def paren(e: str) -> str:
    return e if _ATOM.match(e) else f"({e})"


def literal(n: int) -> str:
    return f"{n}LL" if n >= 2**31 else str(n)


def mul(*exprs: str) -> str:
    """Product of C expressions, folding integer literals."""
    known, rest = 1, []
    for e in exprs:
        m = re.fullmatch(r"(\d+)(LL)?", e)
        if m:
            known *= int(m.group(1))
        else:
            rest.append(paren(e))
    if known == 0:
        return "0"
    if known != 1 or not rest:
        rest.insert(0, literal(known))
    return " * ".join(rest)


def scaled(index: str, stride: str) -> str:
    return index if stride == "1" else f"{index} * {paren(stride)}"


def unravel(index: str, groups: list, name: str, itype: str) -> tuple[list, str]:
    """(statements, expression): the offset of flat `index` over (extent, stride) groups."""
    if not groups:
        return [], "0"
    if len(groups) == 1:
        return [], scaled(index, groups[0][1])
    lines = [f"{itype} {name}_q = {index};", f"{itype} {name} = 0;"]
    for extent, stride in reversed(groups[1:]):
        lines.append(f"{name} += {scaled(f'({name}_q % {paren(extent)})', stride)};")
        lines.append(f"{name}_q /= {paren(extent)};")
    lines.append(f"{name} += {scaled(name + '_q', groups[0][1])};")
    return lines, name


def indent(lines: list, n: int) -> str:
    return "".join(" " * n + line + "\n" for line in lines)


# ---- geometry: which axes are kept, which reduced -------------------------------------------
@dataclass
class Geometry:
    keep: list  # (extent, stride) groups of kept axes, outermost first
    red: list  # (extent, stride) groups of reduced axes
    n_out: str  # C expressions
    length: str
    sizes: Callable  # shapes -> (n_out, length, inner) at run time
    inner_kept: bool  # statically: the innermost moving axis is kept (column reduction)


def geometry(kb: KernelBuilder, x: Tensor, kinds: list, reduced_at_run_time: Callable) -> Geometry:
    """kinds[i]: 'keep', 'red', or ('dyn', keep_extent, reduce_extent) for an axis whose role is
    only known at run time (both extents are C expressions, one of them 1).
    reduced_at_run_time(shapes) -> list of bools, the role of each axis for concrete shapes."""
    rank = len(x.shape)
    dims = [kb.dim(x, i) for i in range(rank)]
    strides = [mul(*dims[i + 1 :]) for i in range(rank)]
    keep: list = []
    red: list = []
    prev = None
    for i, kind in enumerate(kinds):
        if x.shape[i] == 1:
            continue  # a size-1 axis moves nothing
        if kind in ("keep", "red"):
            groups = keep if kind == "keep" else red
            if prev == kind:  # adjacent axes of one kind merge into one group
                groups[-1] = (mul(groups[-1][0], dims[i]), strides[i])
            else:
                groups.append((dims[i], strides[i]))
        else:
            keep.append((kind[1], strides[i]))
            red.append((kind[2], strides[i]))
        prev = kind if kind in ("keep", "red") else "dyn"
    n_out = mul(*[e for e, _ in keep])
    length = mul(*[e for e, _ in red])

    def sizes(shapes) -> tuple[int, int, int]:
        shape = shapes[x]
        mask = reduced_at_run_time(shapes)
        n_out = numel([d for d, m in zip(shape, mask) if not m])
        length = numel([d for d, m in zip(shape, mask) if m])
        inner = 1
        for d, m in reversed(list(zip(shape, mask))):
            if d == 1:
                continue
            if m:
                break
            inner *= d
        return n_out, length, inner

    return Geometry(keep, red, n_out, length, sizes, prev == "keep")


# ---- the generic reduction kernel -----------------------------------------------------------
@dataclass
class Combiner:
    struct: str  # C++ combiner type, e.g. gf_red_sum<float>
    acc_ctype: str  # scalar type of the partial buffer (the value part for argmax/argmin)
    load: Callable[[str, str], str]  # (element expression, position r) -> acc expression
    final: Callable[[str], str]  # acc variable -> value stored to the output
    is_arg: bool = False
    uses_count: bool = False  # final() reads `count`, the number of elements reduced

    def store_partial(self, a: str, at: str, parts: list) -> str:
        if self.is_arg:
            return f"{parts[0]}[{at}] = {a}.v; {parts[1]}[{at}] = {a}.i;"
        return f"{parts[0]}[{at}] = {a};"

    def load_partial(self, at: str, parts: list) -> str:
        if self.is_arg:
            return f"{self.struct}::make({parts[0]}[{at}], {parts[1]}[{at}])"
        return f"{parts[0]}[{at}]"


def reduce_body(
    itype: str,
    comb: Combiner,
    n_out: str,
    length: str,
    base_lines: list,
    base: str,
    elem: Callable[[str, str], tuple],
    store: Callable[[str, str], list],
    chunked: bool = False,
    count: str | None = None,
    columns: int = 1,
    lanes: int = 1,
) -> str:
    """Kernel body: blocks take tiles of blockDim.x outputs; threadIdx.y splits each output's
    elements (and blockIdx.y picks a chunk of them when `chunked`); then a block combine.

    columns > 1 (the cpu schedule of a column reduction, blockDim (1, 1)): each thread combines
    that many consecutive outputs side by side, element r of all of them per step, so the
    inner loop reads memory with unit stride and vectorizes. lanes > 1 (the cpu schedule of a
    reduction along memory): each threadIdx.y takes a contiguous part of the elements and
    combines them into that many partial results in turn, so the loop vectorizes (one float
    sum must add in order; a max's NaN test chains each step on the last)."""
    acc = f"{comb.struct}::acc"
    lines = [
        f"const {itype} n_out = {n_out};",
        f"const {itype} len = {length};  // elements combined into each output",
    ]
    if count is not None:
        lines.append(f"const {itype} count = {count};  // elements reduced into each output")
    if chunked:
        lines += [
            f"const {itype} chunk_len = (len + chunks - 1) / chunks;",
            f"const {itype} r_begin = ({itype})blockIdx.y * chunk_len;",
            f"const {itype} r_end = r_begin + chunk_len < len ? r_begin + chunk_len : len;",
        ]
    else:
        lines += [f"const {itype} r_begin = 0, r_end = len;"]
    elem_lines, value = elem("r", base)
    if columns > 1:
        return indent(lines + _columns_loop(itype, comb, columns, base_lines, elem_lines, value,
                                            store), 2)
    if lanes > 1:
        walk = [*thread_part(itype, "r_begin", "r_end", "threadIdx.y", "blockDim.y"),
                *lanes_loop(itype, acc, comb.struct, "r", "lo", "hi", elem_lines,
                            {"a": comb.load(value, "r")}, lanes)]
    else:
        walk = [
            f"for ({itype} r = r_begin + threadIdx.y; r < r_end; r += blockDim.y) {{",
            *["  " + line for line in elem_lines],
            f"  a = {comb.struct}::combine(a, {comb.load(value, 'r')});",
            "}",
        ]
    loop = [
        f"__shared__ {acc} smem[256];",
        f"for ({itype} tile = blockIdx.x; tile * ({itype})blockDim.x < n_out; tile += gridDim.x) {{",
        f"  const {itype} o = tile * ({itype})blockDim.x + threadIdx.x;",
        f"  {acc} a = {comb.struct}::identity();",
        "  if (o < n_out) {",
        *["    " + line for line in base_lines],
        *["    " + line for line in walk],
        "  }",
        f"  a = gf_red_block<{comb.struct} >(a, smem);",
        "  if (threadIdx.y == 0 && o < n_out) {",
        *["    " + line for line in store("a", "o")],
        "  }",
        "}",
    ]
    return indent(lines + loop, 2)


def lanes_loop(itype: str, acc: str, red: str, index: str, begin: str, end: str, body: list,
               terms: dict, lanes: int = CPU_LANES) -> list:
    """Lines combining the elements begin <= `index` < end into each `name` of terms ({name:
    the element's value, after the per-element `body` lines}) with the combiner `red`, through
    `lanes` partial results per name taken in turn, so g++ vectorizes the loop (one float sum
    must add in order). Each name, declared before, is where the partials start and what they
    combine into at the end."""
    def element(at: str, lane: str) -> list:
        return [f"const {itype} {index} = {at};", *body,
                *(f"{n}_part[{lane}] = {red}::combine({n}_part[{lane}], {e});" for n, e in terms.items())]

    first = f"{index}0"
    lines = [*(f"{acc} {n}_part[{lanes}];" for n in terms),
             f"for (int q = 0; q < {lanes}; ++q) {{", *(f"  {n}_part[q] = {n};" for n in terms), "}",
             f"{itype} {first} = {begin};",
             f"for (; {first} + {lanes} <= {end}; {first} += {lanes}) {{",
             f"  for (int q = 0; q < {lanes}; ++q) {{",
             *("    " + line for line in element(f"{first} + q", "q")), "  }", "}",
             f"for (; {first} < {end}; ++{first}) {{", *("  " + line for line in element(first, "0")), "}"]
    for n in terms:
        parts = [f"{n}_part[{q}]" for q in range(lanes)]
        while len(parts) > 1:
            parts = [f"{red}::combine({parts[q]}, {parts[q + 1]})" for q in range(0, len(parts), 2)]
        lines.append(f"{n} = {parts[0]};")
    return lines


def _columns_loop(itype: str, comb: Combiner, columns: int, base_lines: list, elem_lines: list,
                  value: str, store: Callable[[str, str], list]) -> list:
    acc = f"{comb.struct}::acc"
    return [
        f"for ({itype} tile = blockIdx.x; tile * {columns} < n_out; tile += gridDim.x) {{",
        f"  const {itype} o0 = tile * {columns};",
        f"  const int cols = n_out - o0 < {columns} ? (int)(n_out - o0) : {columns};",
        f"  {acc} acc_c[{columns}];",
        f"  for (int c = 0; c < {columns}; ++c) acc_c[c] = {comb.struct}::identity();",
        f"  for ({itype} r = r_begin; r < r_end; ++r) {{",
        "    for (int c = 0; c < cols; ++c) {",
        f"      const {itype} o = o0 + c;",
        *["      " + line for line in base_lines],
        *["      " + line for line in elem_lines],
        f"      acc_c[c] = {comb.struct}::combine(acc_c[c], {comb.load(value, 'r')});",
        "    }",
        "  }",
        "  for (int c = 0; c < cols; ++c) {",
        f"    const {itype} o = o0 + c;",
        f"    const {acc} a = acc_c[c];",
        *["    " + line for line in store("a", "o")],
        "  }",
        "}",
    ]


def reduction_launch(sizes: Callable, chunked: bool, columns: int = 1) -> Callable:
    def launch(shapes, device: str) -> Launch:
        n_out, length, inner = sizes(shapes)
        chunks = chunks_for(n_out, length) if chunked else 1
        if columns > 1:
            return Launch((grid_size(-(-n_out // columns), device), chunks, 1), (1, 1, 1))
        bx, by = block_shape(n_out, length, inner, device)
        return Launch((grid_size(-(-n_out // bx), device), chunks, 1), (bx, by, 1))

    return launch


def emit_reduction(ctx: EmitContext, kb: KernelBuilder, op: Operation, x: Tensor, geo: Geometry,
                   comb: Combiner, prologue: tuple | None = None) -> None:
    """Pass 1 (and, for long reductions, pass 2) of a reduction of x into op.outputs[0].

    kb already holds the dims `geo` names. `prologue` = (elementwise ops, inlined ops, tensors
    to store): x is computed by fused elementwise code as it is loaded, never read."""
    out = op.outputs[0]
    out_ptr = kb.output(out)
    helpers: tuple = (HELPERS,)
    if prologue is None:
        x_ptr = kb.input(x, "x")
        itype = index_type_for(x, out)

        def top() -> str:
            return ""

        def value_at(at: str) -> tuple:
            return [], f"{x_ptr}[{at}]"
    else:
        from .elementwise import HELPERS as SCALAR_HELPERS
        from .fused import FusedCode
        ops, inline, stored = prologue
        code = FusedCode(kb, ops, inline, stored)
        kb.nodes = [*ops, op, *code.used_inline]
        helpers = (HELPERS, SCALAR_HELPERS)
        itype = index_type_for(x, out, *[p.tensor for p in kb.params if p.tensor is not None])

        def top() -> str:  # after the body is written: loads it hoisted are known then
            return "".join(f"  {line}\n" for line in code.prologue)

        def value_at(at: str) -> tuple:
            lines = [f"const {itype} i = {at};", *code.segment(ops, x)]
            return lines, code.value_of(x)
    base_lines, base = unravel("o", geo.keep, "base", itype)
    if base != "0" and not base_lines:
        base_lines, base = [f"const {itype} base = {base};"], "base"

    def elem(r: str, b: str) -> tuple:
        lines, off = unravel(r, geo.red, "off", itype)
        at = off if b == "0" else (b if off == "0" else f"{b} + {off}")
        more, value = value_at(at)
        return lines + more, value

    def store_final(a: str, o: str) -> list:
        return [f"{out_ptr}[{o}] = {comb.final(a)};"]

    def static(e: str):
        m = re.fullmatch(r"(\d+)(LL)?", e)
        return int(m.group(1)) if m else None

    length, n_out = static(geo.length), static(geo.n_out)
    two_pass = not ((length is not None and length < TWO_PASS_MIN_LEN)
                    or (n_out is not None and n_out >= TARGET_BLOCKS))
    flops = lambda s: numel(s[x])  # noqa: E731
    comment = (f"{op.type} of {list(x.shape)} -> {list(out.shape)}: output o combines "
               "x[keep_offset(o) + reduce_offset(r)]; threadIdx.y splits r; warp shuffles + smem tree")
    sizes = geo.sizes
    checks = [] if prologue is None else code.checks
    columns = CPU_COLUMNS if ctx.device == "cpu" and geo.inner_kept else 1
    # not a product (its order decides whether it overflows; the reference multiplies in
    # order), nor an argmax (its (value, index) pairs ran slower in eight lanes)
    lanes = CPU_LANES if (ctx.device == "cpu" and columns == 1 and "prod" not in comb.struct
                          and not comb.is_arg) else 1
    if columns > 1:
        comment = (f"{op.type} of {list(x.shape)} -> {list(out.shape)}: output o combines "
                   f"x[keep_offset(o) + reduce_offset(r)]; cpu schedule: each thread combines "
                   f"{columns} adjacent outputs side by side")
    if not two_pass:
        body = reduce_body(itype, comb, geo.n_out, geo.length, base_lines, base, elem,
                           store_final, count="len" if comb.uses_count else None, columns=columns,
                           lanes=lanes)
        body = top() + body
        ctx.add(kb.build(body, reduction_launch(sizes, False, columns), flops=flops, comment=comment,
                         helpers=helpers, checks=checks))
        return

    def chunk_count(shapes) -> int:
        return chunks_for(*sizes(shapes)[:2])

    def partial_elements(shapes) -> int:
        n_out, length, _ = sizes(shapes)
        chunks = chunks_for(n_out, length)
        return 1 if chunks == 1 else chunks * n_out

    def add_chunk_params(b: KernelBuilder) -> list:
        b.scalar("chunks", "int", chunk_count)
        # the same key and size function in both passes: one shared scratch buffer per run
        parts = [b.scratch("partial", comb.acc_ctype, partial_elements)]
        if comb.is_arg:
            parts.append(b.scratch("partial_index", "long long", partial_elements))
        return parts

    parts = add_chunk_params(kb)

    def store_first(a: str, o: str) -> list:
        return ["if (chunks == 1) {", *["  " + line for line in store_final(a, o)], "} else {",
                "  " + comb.store_partial(a, f"({itype})blockIdx.y * n_out + {o}", parts), "}"]

    body = reduce_body(itype, comb, geo.n_out, geo.length, base_lines, base, elem,
                       store_first, True, count="len" if comb.uses_count else None, columns=columns,
                       lanes=lanes)
    body = top() + body
    ctx.add(kb.build(body, reduction_launch(sizes, True, columns), flops=flops,
                     comment=comment + "; pass 1 of 2 (with chunks > 1: partials to scratch)",
                     helpers=helpers, checks=checks))

    # pass 2: out[o] = combine over c < chunks of partial[c * n_out + o] (a column reduction)
    kb2 = ctx.builder(kb.name.rsplit("_", 1)[0] + "_finish", [op])
    out2 = kb2.output(out)
    add_chunk_params(kb2)
    n_out2 = rebind_dims(geo.n_out, kb, kb2)
    comb2 = Combiner(comb.struct, comb.acc_ctype, lambda v, r: v, comb.final, comb.is_arg, comb.uses_count)
    body2 = "  if (chunks == 1) return;  // pass 1 wrote the result\n" + reduce_body(
        itype, comb2, n_out2, "chunks", [], "0",
        lambda r, b: ([], comb.load_partial(f"{r} * n_out + o", parts)),
        lambda a, o: [f"{out2}[{o}] = {comb.final(a)};"],
        count=rebind_dims(geo.length, kb, kb2) if comb.uses_count else None)

    def launch2(shapes, device: str) -> Launch:
        n_out, length, _ = sizes(shapes)
        chunks = chunks_for(n_out, length)
        if chunks == 1:
            return Launch((1, 1, 1), (32, 1, 1))
        bx, by = block_shape(n_out, chunks, n_out, device)
        return Launch((grid_size(-(-n_out // bx), device), 1, 1), (bx, by, 1))

    ctx.add(kb2.build(body2, launch2, flops=lambda s: numel(s[out]) * chunks_for(*sizes(s)[:2]),
                      comment=f"{op.type} pass 2 of 2: combine the per-chunk partials of each output",
                      helpers=(HELPERS,), active=lambda s: chunks_for(*sizes(s)[:2]) > 1))


def rebind_dims(expr: str, src: KernelBuilder, dst: KernelBuilder) -> str:
    """`expr` (written with src's dim parameters) in terms of dst's parameters."""
    names = {p.name: p for p in src.params if p.kind == "dim"}
    return re.sub(r"\b[A-Za-z_]\w*\b",
                  lambda m: dst.dim(names[m.group()].tensor, names[m.group()].axis)
                  if m.group() in names else m.group(), expr)


# ---- the emitters ---------------------------------------------------------------------------
def _mean_final(dtype) -> Callable[[str], str]:
    c = ctype(dtype)
    if dtype.is_floating:  # 0 elements: 0/0 = NaN, as numpy's mean
        return lambda a: f"{a} / ({c})count"
    # numpy: trunc(sum / max(1, count)) with a 64-bit sum
    return lambda a: f"({c})({a} / (count > 0 ? (long long)count : 1LL))"


def combiner_for(op_type: str, dtype) -> Combiner:
    c = ctype(dtype)
    if op_type in ("ReduceSum", "SumToLike"):
        return Combiner(f"gf_red_sum<{c}>", c, lambda v, r: v, lambda a: a)
    if op_type == "ReduceMean":
        if dtype.is_floating:
            return Combiner(f"gf_red_sum<{c}>", c, lambda v, r: v, _mean_final(dtype), uses_count=True)
        return Combiner("gf_red_sum<long long>", "long long", lambda v, r: f"(long long){v}",
                        _mean_final(dtype), uses_count=True)
    if op_type == "ReduceProd":
        return Combiner(f"gf_red_prod<{c}>", c, lambda v, r: v, lambda a: a)
    if op_type in ("ReduceMax", "ReduceMin"):
        kind = "max" if op_type == "ReduceMax" else "min"
        return Combiner(f"gf_red_{kind}<{c}>", c, lambda v, r: v, lambda a: a)
    raise KeyError(op_type)


def _fused_name(base: str, prologue: tuple | None) -> str:
    """The kernel name: what it reduces, after the op types computed in its loads."""
    if prologue is None:
        return base
    from ..fusion import type_names
    return "_".join(["fused", *type_names(prologue[0])[:3], base])


@emitter("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd")
def emit_reduce(ctx: EmitContext, op: Operation, prologue: tuple | None = None) -> None:
    x = op.inputs[0]
    axes = set(op.attrs["axis"])
    kb = ctx.builder(_fused_name(op.type.replace("Reduce", "reduce_").lower(), prologue), [op])
    if prologue is None:
        kb.input(x, "x")
    kinds = ["red" if i in axes else "keep" for i in range(len(x.shape))]
    geo = geometry(kb, x, kinds, lambda shapes: [i in axes for i in range(len(x.shape))])
    emit_reduction(ctx, kb, op, x, geo, combiner_for(op.type, x.dtype), prologue)


@emitter("ArgMax", "ArgMin")
def emit_arg(ctx: EmitContext, op: Operation) -> None:
    x, out = op.inputs[0], op.outputs[0]
    axis = op.attrs["axis"]
    kb = ctx.builder(op.type.lower(), [op])
    kb.input(x, "x")
    kinds = ["red" if i == axis else "keep" for i in range(len(x.shape))]
    geo = geometry(kb, x, kinds, lambda shapes: [i == axis for i in range(len(x.shape))])
    struct = f"gf_red_arg<{ctype(x.dtype)}, {'true' if op.type == 'ArgMax' else 'false'}>"
    comb = Combiner(struct, ctype(x.dtype), lambda v, r: f"{struct}::make({v}, (long long){r})",
                    lambda a: f"({ctype(out.dtype)}){a}.i", is_arg=True)
    emit_reduction(ctx, kb, op, x, geo, comb)


@emitter("SumToLike")
def emit_sum_to_like(ctx: EmitContext, op: Operation, prologue: tuple | None = None) -> None:
    """Sum x down to ref's shape: over x's leading extra axes and where ref has size 1.

    A None dim of ref decides at run time: size 1 reduces that axis of x, else it is kept."""
    x, ref = op.inputs
    kb = ctx.builder(_fused_name("sum_to_like", prologue), [op])
    if prologue is None:
        kb.input(x, "x")
    lead = len(x.shape) - len(ref.shape)
    kinds: list = []
    for i in range(len(x.shape)):
        if i < lead:
            kinds.append("red")
            continue
        t = ref.shape[i - lead]
        if t is not None:
            kinds.append("red" if t == 1 else "keep")
        elif x.shape[i] == 1:
            kinds.append("keep")
        else:
            ref_d, x_d = kb.dim(ref, i - lead), kb.dim(x, i)
            kinds.append(("dyn", ref_d, f"{ref_d} == 1 ? {x_d} : 1"))

    def reduced(shapes) -> list:
        xs, rs = shapes[x], shapes[ref]
        return [i < lead or (rs[i - lead] == 1 and xs[i] != 1) for i in range(len(xs))]

    geo = geometry(kb, x, kinds, reduced)
    emit_reduction(ctx, kb, op, x, geo, combiner_for("SumToLike", x.dtype), prologue)
