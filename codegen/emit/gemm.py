"""GEMM: a shared-memory tiled, register-blocked matrix multiply, reused by convolution.

One block computes a BM x BN tile of C = A @ B (A is M x K, B is K x N, all row-major views).
Each K step stages a BM x BK slice of A and a BK x BN slice of B in shared memory; each
thread accumulates a TM x TN sub-tile of C in registers. Shared memory is double buffered
and the next slices are fetched into registers while the current ones are multiplied, so a
K step costs one __syncthreads. Loads and stores are bounds-checked: any M, N, K works.

The body is written by `gemm_body`, which takes the operands as *loaders*: C code that
produces element (row, col) of A or B. MatMul's loaders read plain (possibly transposed)
matrices at a per-batch offset; the convolution emitters (conv.py) plug in implicit-im2col
loaders instead, so no column buffer is ever materialized.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graphflow.errors import CompileError
from graphflow.graph import Operation, Tensor

from ..kernel import EmitContext, KernelBuilder, Launch, ctype, index_type_for, numel
from ..views import element_offset, is_view, stored_offset, strides
from . import emitter


@dataclass(frozen=True)
class Tiling:
    """Block tile BM x BN, K step BK, TM x TN outputs per thread."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def name(self) -> str:
        return f"{self.bm}x{self.bn}"

    def describe(self) -> str:
        return (
            f"{self.bm}x{self.bn}x{self.bk} block tiles, {self.tm}x{self.tn} outputs per thread, "
            f"{self.threads} threads, double-buffered shared memory"
        )


def tiling_for(dtype) -> Tiling:
    """4-byte types take a 16-deep K step; 8-byte types 8 (same shared bytes per stage)."""
    return Tiling(64, 64, 16 if dtype.size <= 4 else 8, 8, 4)


# Shared rows are padded by 16 bytes: keeps 16-byte alignment of every row (vector reads of a
# thread's TM / TN run) while breaking the bank conflicts of the transposing tile stores.
def _pad(c_type: str) -> int:
    return 2 if c_type in ("double", "long long") else 4


@dataclass
class Operand:
    """How the tile loads read one GEMM operand (A: coordinates m, k; B: k, n).

    fast: the coordinate that is contiguous in memory ('m' or 'k' for A, 'k' or 'n' for B);
          consecutive threads walk it, so global loads coalesce.
    Either a strided matrix: element (fast f, slow s) is ptr[s * ld + f] (ptr and ld are C
    expressions; ptr includes any batch offset), or a gather:
    load: (m or k, k or n) C expressions -> (C statements, C value expression), called only
          inside the bounds check (the convolutions' implicit im2col uses this).
    """

    fast: str
    ptr: str = ""
    ld: str = ""
    load: Callable[[str, str], tuple[str, str]] | None = None
    # run(row, first column, count, most, store, pad) -> C lines for `count` consecutive elements
    # along `fast` at once (a recomputed thin GEMM: its K loop outermost, so the cpu packing
    # loops vectorize); store(t) is where element t goes
    run: Callable[..., str] | None = None


def _operand_code(
    which: str, op: Operand, t: Tiling, c_type: str, itype: str
) -> tuple[str, Callable[[str], str], str]:
    """(per-tile setup, slice k origin -> global loads into registers, registers -> shared)."""
    coords = ("m", "k") if which == "a" else ("k", "n")
    extent = {"m": t.bm, "k": t.bk, "n": t.bn}
    total = {"m": "M", "k": "k_end", "n": "N"}  # this block's K range is [k_begin, k_end)
    origin = {"m": "m0", "n": "n0"}
    fast = op.fast
    slow = coords[1] if fast == coords[0] else coords[0]
    f_ext, s_ext = extent[fast], extent[slow]
    assert t.threads % f_ext == 0 and s_ext % (t.threads // f_ext) == 0
    step = t.threads // f_ext
    per_thread = s_ext // step
    reg, smem, px = f"{which}_next", "As" if which == "a" else "Bs", f"{which}_"
    # shared tiles are k-major: As[k][m], Bs[k][n]; this thread owns (f_t, s_t + r * step)
    if fast == "k":
        cell = f"[{px}f][{px}s + r * {step}]"
    else:
        cell = f"[{px}s + r * {step}][{px}f]"
    setup = f"const int {px}f = tid % {f_ext}, {px}s = tid / {f_ext};\n"
    store = (
        f"#pragma unroll\n"
        f"for (int r = 0; r < {per_thread}; ++r) {smem}[nbuf]{cell} = {reg}[r];\n"
    )
    if op.load is None:  # strided matrix: a running pointer to this thread's first element
        f0 = "k_begin" if fast == "k" else origin[fast]
        s0 = "k_begin" if slow == "k" else origin[slow]
        setup += (
            f"const {c_type}* {px}src = {op.ptr} + ({s0} + {px}s) * ({itype})({op.ld}) + {f0} + {px}f;\n"
        )
        if fast == "k":
            setup += f"const {itype} {px}rows = {total[slow]} - ({s0} + {px}s);\n"
            advance = f"{t.bk}"
        else:
            setup += f"const bool {px}in = {f0} + {px}f < {total[fast]};\n"
            advance = f"{t.bk} * ({itype})({op.ld})"

        def load(kk: str) -> str:
            if fast == "k":
                ok, left = f"{kk} + {px}f < k_end", f"{px}rows"
            else:
                ok, left = f"{px}in", f"k_end - ({kk} + {px}s)"
            return (
                f"{{\n"
                f"  const bool ok = {ok};\n"
                f"  const {itype} left = {left};\n"
                f"  const {c_type}* p = {px}src;\n"
                f"  #pragma unroll\n"
                f"  for (int r = 0; r < {per_thread}; ++r, p += {step} * ({itype})({op.ld}))\n"
                f"    {reg}[r] = (ok && r * {step} < left) ? *p : ({c_type})0;\n"
                f"  {px}src += {advance};\n"
                f"}}\n"
            )

        return setup, load, store

    def gather(kk: str) -> str:
        orig = {**origin, "k": kk}
        pos = {fast: f"{px}f", slow: f"{px}s + r * {step}"}
        g = {c: f"{orig[c]} + ({pos[c]})" for c in coords}
        stmts, value = op.load("g0", "g1")
        body = "".join(f"    {line}\n" for line in stmts.strip().splitlines() if line.strip())
        return (
            f"#pragma unroll\n"
            f"for (int r = 0; r < {per_thread}; ++r) {{\n"
            f"  const {itype} g0 = {g[coords[0]]}, g1 = {g[coords[1]]};\n"
            f"  {c_type} v = ({c_type})0;\n"
            f"  if (g0 < {total[coords[0]]} && g1 < {total[coords[1]]}) {{\n"
            f"{body}"
            f"    v = {value};\n"
            f"  }}\n"
            f"  {reg}[r] = v;\n"
            f"}}\n"
        )

    return setup, gather, store


def gemm_body(
    c_type: str,
    itype: str,
    t: Tiling,
    m: str,
    n: str,
    k: str,
    a: Operand,
    b: Operand,
    store: Callable[[str, str, str], str],
    batch: str = "1",
    batch_setup: str = "",
    split_k: bool = False,
    col_sums: Callable[[str, str], str] | None = None,
) -> str:
    """Kernel body computing C[z] = A[z] @ B[z] for z < batch.

    m, n, k, batch: C expressions (the body names them M, N, K). `batch_setup` runs once per
    batch entry `z` (a long long) and may define offsets that the operands and
    `store(row, col, value)` use.
    Launch with blockDim.x == t.threads, any gridDim.x (tiles are grid-strided) and gridDim.z
    up to the batch (also strided); see `gemm_launch`.
    split_k (batch must be 1): blockIdx.z picks a K range instead of a batch entry, so a
    small C with a long K still fills the GPU; `store` must then accumulate (atomicAdd into
    a zeroed C).
    col_sums (batch 1, no split K): (column, value) -> the statement storing B's column sum
    there; the first row block's threads of row ty == 0 add the sums up from the B fragments
    they multiply anyway.
    """
    assert col_sums is None or (batch == "1" and not split_k)
    if split_k:
        assert batch == "1" and not batch_setup
        batch = "gridDim.z"
        k_range = (
            f"// split K: this block sums K range [k_begin, k_end) of its tiles\n"
            f"const {itype} k_begin = z * k_chunk;\n"
            f"const {itype} k_end = k_begin + k_chunk < K ? k_begin + k_chunk : K;\n"
        )
        chunk = (f"  const {itype} k_chunk = ((K + {t.bk - 1}) / {t.bk} + gridDim.z - 1) / gridDim.z"
                 f" * {t.bk};\n")
    else:
        k_range, chunk = f"const {itype} k_begin = 0, k_end = K;\n", ""
    a_setup, a_load, a_store = _operand_code("a", a, t, c_type, itype)
    b_setup, b_load, b_store = _operand_code("b", b, t, c_type, itype)
    a_regs, b_regs = t.bm * t.bk // t.threads, t.bk * t.bn // t.threads
    pad = _pad(c_type)
    tx_count = t.bn // t.tn
    sums = gpu_column_sums(col_sums, c_type, t.tn)
    return f"""\
  // double-buffered operand tiles, k-major: As[buf][k][m], Bs[buf][k][n]
  __shared__ __align__(16) {c_type} As[2][{t.bk}][{t.bm} + {pad}];
  __shared__ __align__(16) {c_type} Bs[2][{t.bk}][{t.bn} + {pad}];
  const int tid = threadIdx.x;
  const int tx = tid % {tx_count}, ty = tid / {tx_count};  // this thread's {t.tm}x{t.tn} sub-tile of C
  const {itype} M = {m}, N = {n}, K = {k};
  const {itype} tiles_n = (N + {t.bn - 1}) / {t.bn};
  const {itype} tiles = ((M + {t.bm - 1}) / {t.bm}) * tiles_n;
{chunk}  const long long batch = {batch};
  for (long long z = blockIdx.z; z < batch; z += gridDim.z) {{
{_indent(batch_setup + k_range, 4)}    // grid-stride over the tiles of C
    for ({itype} tile = blockIdx.x; tile < tiles; tile += gridDim.x) {{
      const {itype} m0 = (tile / tiles_n) * {t.bm}, n0 = (tile % tiles_n) * {t.bn};
{_indent(a_setup + b_setup, 6)}      {c_type} acc[{t.tm}][{t.tn}];
      #pragma unroll
      for (int i = 0; i < {t.tm}; ++i) {{
        #pragma unroll
        for (int j = 0; j < {t.tn}; ++j) acc[i][j] = ({c_type})0;
      }}
      {c_type} a_next[{a_regs}], b_next[{b_regs}];
{sums.init}      int nbuf = 0;
      // prologue: stage the first K slice
{_indent(a_load("k_begin") + b_load("k_begin") + a_store + b_store, 6)}      __syncthreads();
      for ({itype} k0 = k_begin; k0 < k_end; k0 += {t.bk}) {{
        const int buf = nbuf;
        nbuf ^= 1;
        const bool more = k0 + {t.bk} < k_end;
        if (more) {{  // fetch the next slice into registers while this one is multiplied
{_indent(a_load(f"(k0 + {t.bk})") + b_load(f"(k0 + {t.bk})"), 10)}        }}
        #pragma unroll
        for (int k = 0; k < {t.bk}; ++k) {{
          {c_type} a_frag[{t.tm}], b_frag[{t.tn}];
          #pragma unroll
          for (int i = 0; i < {t.tm}; ++i) a_frag[i] = As[buf][k][ty * {t.tm} + i];
          #pragma unroll
          for (int j = 0; j < {t.tn}; ++j) b_frag[j] = Bs[buf][k][tx * {t.tn} + j];
{sums.add}          #pragma unroll
          for (int i = 0; i < {t.tm}; ++i) {{
            #pragma unroll
            for (int j = 0; j < {t.tn}; ++j) acc[i][j] += a_frag[i] * b_frag[j];
          }}
        }}
        if (more) {{
{_indent(a_store + b_store, 10)}        }}
        __syncthreads();  // one barrier per K step: the other buffer is now complete
      }}
      #pragma unroll
      for (int i = 0; i < {t.tm}; ++i) {{
        const {itype} row = m0 + ty * {t.tm} + i;
        if (row >= M) break;
        #pragma unroll
        for (int j = 0; j < {t.tn}; ++j) {{
          const {itype} col = n0 + tx * {t.tn} + j;
          if (col < N) {store("row", "col", "acc[i][j]")};
        }}
      }}
{sums.store}    }}
  }}
"""


@dataclass(frozen=True)
class CpuTiling:
    """The cpu schedule: one thread per block computes a BM x BN tile. For each KC-deep slice of
    K it packs B into NR-wide column strips ([KC][NR] each, zero-padded), then walks the tile's
    rows MR at a time: packs an MR x KC micro-panel of A ([KC][MR]) and runs the MR x NR register
    tile over every strip. The register tile is MR x (NR / LANES) gf_simd vectors (32 bytes
    each): 6 x 2 for floats, twelve AVX2 registers beside B's two and A's broadcast, as BLIS's
    Haswell kernel; per step of K it loads two vectors and six scalars for twelve FMAs.
    Trip counts are compile-time constants and the packed panels stream with unit stride. No
    shared memory, no barrier: the emulator runs it as a plain loop. Valid CUDA too (nvcc
    compiles it)."""

    bm: int = 132
    bn: int = 192
    kc: int = 256
    mr: int = 6
    nr: int = 16
    lanes: int = 8

    @property
    def name(self) -> str:
        return f"cpu{self.mr}x{self.nr}"

    def describe(self) -> str:
        return (f"cpu schedule: tiles of up to {self.bm}x{self.bn} (cut smaller for idle threads), "
                f"{self.kc}-deep packed panels, {self.mr}x{self.nr} register tile, one thread per block")


def cpu_tiling_for(dtype) -> CpuTiling:
    """Two 32-byte vectors per accumulator row: 16 floats or int32s, 8 doubles or int64s."""
    if dtype.size <= 4:
        return CpuTiling()
    return CpuTiling(bm=66, bn=96, kc=128, mr=6, nr=8, lanes=4)


CPU_TILE_MIN_FLOPS = 4 << 20  # a tile cut smaller keeps this much work (a thread's hand-off
# costs microseconds: W1's 1 MFLOP GEMMs ran slower cut in two on two threads)


def cpu_tile(t: CpuTiling, m: int, n: int, k: int, batch: int, threads: int) -> tuple[int, int]:
    """(rows, columns) of the tiles a cpu GEMM of C = m x n (batch of them, depth k) is cut
    into: the schedule's BM x BN, made smaller while there are fewer tiles than OS threads and
    each still holds CPU_TILE_MIN_FLOPS, so every thread gets work (a GEMM of one tile ran on
    one core). Each cut halves the side whose cut repacks less: a tile packs its own B panel
    (k x columns) and A rows (rows x k), so cutting rows repacks B, cutting columns A."""
    bm, bn = min(t.bm, max(m, 1)), min(t.bn, max(n, 1))
    bm, bn = -(-bm // t.mr) * t.mr, -(-bn // t.nr) * t.nr

    def count(bm: int, bn: int) -> int:
        return -(-m // bm) * -(-n // bn) * batch

    def worth_it(bm: int, bn: int) -> bool:
        return 2 * m * n * k * batch >= CPU_TILE_MIN_FLOPS * count(bm, bn)

    while count(bm, bn) < threads:
        rows = max(t.mr, -(-(bm // 2) // t.mr) * t.mr)
        cols = max(t.nr, -(-(bn // 2) // t.nr) * t.nr)
        cuts = [c for c in ((rows, bn), (bm, cols)) if count(*c) > count(bm, bn) and worth_it(*c)]
        if not cuts:
            break
        bm, bn = min(cuts, key=lambda c: c[1] if c[0] < bm else c[0])  # the smaller repack
    return bm, bn


def _element(op: Operand, which: str, row: str, col: str) -> tuple[str, str]:
    """(statements, value) of element (row, col) of operand A (m, k) or B (k, n)."""
    if op.load is not None:
        return op.load(row, col)
    coords = ("m", "k") if which == "a" else ("k", "n")
    fast, slow = (col, row) if op.fast == coords[1] else (row, col)
    return "", f"({op.ptr})[{slow} * ({op.ld}) + {fast}]"


def _block(stmts: str, value: str, dst: str, pad: int) -> str:
    """`dst = value;` after the element's statements, indented by `pad`."""
    lines = [line.strip() for line in stmts.strip().splitlines() if line.strip()]
    return "".join(" " * pad + line + "\n" for line in [*lines, f"{dst} = {value};"])


def _pack_b(b: Operand, stmts: str, value: str, c_type: str, itype: str, nr: int, kc: int) -> str:
    """Copy B[k0 + kk][nb + j] into the strip dst[kk][j], zero past N; the loop over B's
    contiguous coordinate innermost, so reads have unit stride."""
    store = f"dst[kk * {nr} + j]"
    if b.fast == "k":  # B is transposed in memory: walk each column's k run
        return _pack_k_runs(b, stmts, value, lambda kk: f"dst[{kk} * {nr} + j]", c_type, itype,
                            ("j", nr, "gn", "nb + j", "N"), kc)
    full = (b.run("gk", "nb", str(nr), nr, lambda t: f"dst[kk * {nr} + {t}]", 14) if b.run else
            f"""\
              for (int j = 0; j < {nr}; ++j) {{
                const {itype} gn = nb + j;
{_block(stmts, value, store, 16)}              }}
""")
    return f"""\
          for (int kk = 0; kk < kc; ++kk) {{
            const {itype} gk = k0 + kk;
            if (nb + {nr} <= N) {{
{full}            }} else {{
              for (int j = 0; j < {nr}; ++j) {{
                const {itype} gn = nb + j;
                {store} = ({c_type})0;
                if (gn < N) {{
{_block(stmts, value, store, 18)}                }}
              }}
            }}
          }}
"""


def _pack_a(a: Operand, stmts: str, value: str, c_type: str, itype: str, mr: int, kc: int) -> str:
    """Copy A[m0 + i0 + i][k0 + kk] into the micro-panel Ap[kk][i], zero past M; unit-stride
    reads as in _pack_b."""
    store = f"Ap[kk * {mr} + i]"
    if a.fast == "m":  # A is transposed in memory: walk each k's run of rows
        return f"""\
          for (int kk = 0; kk < kc; ++kk) {{
            const {itype} gk = k0 + kk;
            for (int i = 0; i < {mr}; ++i) {{
              const {itype} gm = m0 + i0 + i;
              {store} = ({c_type})0;
              if (gm < M) {{
{_block(stmts, value, store, 16)}              }}
            }}
          }}
"""
    return _pack_k_runs(a, stmts, value, lambda kk: f"Ap[{kk} * {mr} + i]", c_type, itype,
                        ("i", mr, "gm", "m0 + i0 + i", "M"), kc)


def _pack_k_runs(op: Operand, stmts: str, value: str, store: Callable[[str], str], c_type: str,
                 itype: str, lane: tuple, kc: int) -> str:
    """Pack an operand whose k runs are contiguous: for each lane (row of A, column of B:
    `lane` = (index, width, global name, global expression, bound)) walk its k run, zero past
    the bound."""
    index, width, g, expr, bound = lane
    inside = (op.run(g, "k0", "kc", kc, store, 14) if op.run else f"""\
              for (int kk = 0; kk < kc; ++kk) {{
                const {itype} gk = k0 + kk;
{_block(stmts, value, store("kk"), 16)}              }}
""")
    return f"""\
          for (int {index} = 0; {index} < {width}; ++{index}) {{
            const {itype} {g} = {expr};
            if ({g} < {bound}) {{
{inside}            }} else {{
              for (int kk = 0; kk < kc; ++kk) {store("kk")} = ({c_type})0;
            }}
          }}
"""


@dataclass(frozen=True)
class ColumnSums:
    """The C snippets that add up B's column sums in a GEMM body (a bias gradient), spliced in
    at fixed places; all empty when the GEMM stores none."""

    decl: str = ""  # kernel scope
    init: str = ""  # per tile
    add: str = ""  # per K slice
    store: str = ""  # per tile, after C's epilogue


def gpu_column_sums(col_sums: Callable[[str, str], str] | None, c_type: str, tn: int) -> ColumnSums:
    """The GPU schedule: the first row block's threads of row ty == 0 add the B fragments they
    multiply anyway, one thread per column."""
    if col_sums is None:
        return ColumnSums()
    return ColumnSums(
        init=(f"      const bool sums = m0 == 0 && ty == 0;  // B's column sums: one thread per column\n"
              f"      {c_type} bsum[{tn}];\n"
              f"      #pragma unroll\n"
              f"      for (int j = 0; j < {tn}; ++j) bsum[j] = ({c_type})0;\n"),
        add=(f"          if (sums) {{\n"
             f"            #pragma unroll\n"
             f"            for (int j = 0; j < {tn}; ++j) bsum[j] += b_frag[j];\n"
             f"          }}\n"),
        store=(f"      if (sums) {{\n"
               f"        #pragma unroll\n"
               f"        for (int j = 0; j < {tn}; ++j)\n"
               f"          if (n0 + tx * {tn} + j < N) {col_sums(f'n0 + tx * {tn} + j', 'bsum[j]')};\n"
               f"      }}\n"))


def cpu_column_sums(col_sums: Callable[[str, str], str] | None, c_type: str, bn: int,
                    nr: int) -> ColumnSums:
    """The cpu schedule: the tiles of the first row block add each packed B strip."""
    if col_sums is None:
        return ColumnSums()
    return ColumnSums(
        decl=f"  {c_type} bsum[{bn}];  // B's column sums (first row block)\n",
        init=(f"      const bool sums = m0 == 0;\n"
              f"      for (int q = 0; q < {bn}; ++q) bsum[q] = ({c_type})0;\n"),
        add=(f"          if (sums)\n"
             f"            for (int kk = 0; kk < kc; ++kk)\n"
             f"              for (int j = 0; j < {nr}; ++j) bsum[jp * {nr} + j] += dst[kk * {nr} + j];\n"),
        store=(f"      if (sums)\n"
               f"        for (int j = 0; j < cols; ++j) {col_sums('n0 + j', 'bsum[j]')};\n"))


def _strided(op: Operand) -> bool:
    """A plain strided matrix (no gather, no recomputed run): the runtime's packing fits it."""
    return op.load is None and op.run is None


def _pack_b_call(b: Operand, strip: int, col_sums: str) -> str:
    """gf_gemm_pack_b (cuda_shim.h) for a strided B: element (k, n) at ptr[k * ks + n * ns]."""
    ks, ns = ("1", f"(long long)({b.ld})") if b.fast == "k" else (f"(long long)({b.ld})", "1")
    return f"        gf_gemm_pack_b(Bp, {strip}, {b.ptr}, {ks}, {ns}, k0, kc, n0, cols, {col_sums});\n"


def _pack_a_call(a: Operand) -> str:
    """gf_gemm_pack_a (cuda_shim.h) for a strided A: element (m, k) at ptr[m * ms + k * ks]."""
    ms, ks = ("1", f"(long long)({a.ld})") if a.fast == "m" else (f"(long long)({a.ld})", "1")
    return f"          gf_gemm_pack_a(Ap, {a.ptr}, {ms}, {ks}, m0 + i0, M, k0, kc);\n"


def gemm_body_cpu(c_type: str, itype: str, t: CpuTiling, m: str, n: str, k: str, a: Operand,
                  b: Operand, store: Callable[[str, str, str], str], batch: str = "1",
                  batch_setup: str = "", col_sums: Callable[[str, str], str] | None = None, *,
                  tile: tuple[str, str]) -> str:
    """Kernel body of the cpu schedule (see CpuTiling): launch with blockDim (1, 1, 1), one
    block per tile on x, batch entries on z. `tile`: C expressions of the tiles' rows and
    columns (at most BM x BN: cpu_tile's, set per launch). col_sums (batch 1,
    B not transposed): (column, value) -> the statement storing B's column sum, which the
    tiles of the first row block add up as they pack B.

    The register tile and the packing of strided operands are cuda_shim.h's gf_gemm_* blocks
    (compiled once into the cpu device's runtime); operands read through a gather or a
    recomputed GEMM pack here, inline."""
    assert t.mr == 6 and t.nr == 2 * t.lanes, "cuda_shim.h's gf_gemm_panel is 6 x 2 vectors"
    mr, nr, kc = t.mr, t.nr, t.kc
    strip = kc * nr
    sums = cpu_column_sums(col_sums, c_type, t.bn, nr)
    if _strided(b):  # B's column sums, if any, added up as each strip is packed
        pack_b = _pack_b_call(b, strip, f"sums ? bsum : ({c_type}*)0" if sums.add else f"({c_type}*)0")
    else:
        b_stmts, b_value = _element(b, "b", "gk", "gn")
        pack_b = f"""\
        for (int jp = 0; jp * {nr} < cols; ++jp) {{  // pack B[k0 + kk][n0 + jp * NR + j]
          {c_type}* __restrict__ dst = Bp + jp * {strip};
          const {itype} nb = n0 + jp * {nr};
{_pack_b(b, b_stmts, b_value, c_type, itype, nr, kc)}{sums.add}        }}
"""
    if _strided(a):
        pack_a = _pack_a_call(a)
    else:
        a_stmts, a_value = _element(a, "a", "gm", "gk")
        pack_a = _pack_a(a, a_stmts, a_value, c_type, itype, mr, kc)
    return f"""\
  // {t.describe()}
  {c_type} Ap[{kc} * {mr}];  // A micro-panel [KC][MR], zero-padded
  {c_type} Bp[{kc} * {t.bn}];  // B panel: NR-wide strips, each [KC][NR], zero-padded
  {c_type} Ct[{t.bm} * {t.bn}];  // the tile's accumulators
{sums.decl}  const {itype} M = {m}, N = {n}, K = {k};
  const int bm = {tile[0]}, bn = {tile[1]};  // this launch's tiles
  const {itype} tiles_n = (N + bn - 1) / bn;
  const {itype} tiles = ((M + bm - 1) / bm) * tiles_n;
  const long long batch = {batch};
  for (long long z = blockIdx.z; z < batch; z += gridDim.z) {{
{_indent(batch_setup, 4)}    for ({itype} tile = blockIdx.x; tile < tiles; tile += gridDim.x) {{
      const {itype} m0 = (tile / tiles_n) * bm, n0 = (tile % tiles_n) * bn;
      const int rows = M - m0 < bm ? (int)(M - m0) : bm;
      const int cols = N - n0 < bn ? (int)(N - n0) : bn;
      // zero only what the register tiles accumulate into (rows and strips in use): a small
      // GEMM (attention's 32x32 heads) must not pay for clearing the whole {t.bm}x{t.bn} tile
      for (int i = 0; i < (rows + {t.mr - 1}) / {t.mr} * {t.mr}; ++i)
        for (int j = 0; j < (cols + {t.nr - 1}) / {t.nr} * {t.nr}; ++j) Ct[i * {t.bn} + j] = ({c_type})0;
{sums.init}      for ({itype} k0 = 0; k0 < K; k0 += {kc}) {{
        const int kc = K - k0 < {kc} ? (int)(K - k0) : {kc};
{pack_b}        for (int i0 = 0; i0 < rows; i0 += {mr}) {{  // pack A[m0 + i0 + i][k0 + kk]
{pack_a}          // the {mr}x{nr} register tile over each strip
          gf_gemm_panel(Ap, Bp, {strip}, Ct + i0 * {t.bn}, {t.bn}, kc, cols);
        }}
      }}
      for (int i = 0; i < rows; ++i) {{
        const {itype} row = m0 + i;
        for (int j = 0; j < cols; ++j) {{
          const {itype} col = n0 + j;
          {store("row", "col", f"Ct[i * {t.bn} + j]")};
        }}
      }}
{sums.store}    }}
  }}
"""


def gemm_launch_cpu(t: CpuTiling, mnkb: Callable[[dict], tuple[int, int, int, int]]) -> Callable:
    """One block per tile of cpu_tile's size (x), batch entries on z; mnkb(shapes) is
    (M, N, K, batch)."""
    def launch(shapes: dict, device: str) -> Launch:
        mm, nn, kk, b = mnkb(shapes)
        bm, bn = cpu_tile(t, mm, nn, kk, b, getattr(shapes, "threads", 1))
        tiles = max(1, -(-mm // bm) * -(-nn // bn))
        return Launch((min(tiles, 2**31 - 1), 1, max(1, min(b, 65535))), (1, 1, 1))
    return launch


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "".join(pad + line + "\n" if line.strip() else "\n" for line in text.splitlines())


def gemm_launch(
    t: Tiling, mnb: Callable[[dict], tuple[int, int, int]], split_k: Callable[[dict], int] | None = None
) -> Callable[[dict, str], Launch]:
    """Grid for gemm_body: one block per output tile (x), batch entries (or K splits) on z.

    With split_k(shapes) -> K, z splits K until there are about two blocks per SM (a few per
    core on the cpu), each split keeping at least 32 K steps.
    """

    def launch(shapes: dict, device: str) -> Launch:
        m, n, b = mnb(shapes)
        tiles = max(1, -(-m // t.bm) * -(-n // t.bn))
        if split_k is not None:
            want = (8 if device == "cpu" else 2 * 132) // tiles
            b = max(1, min(want, split_k(shapes) // (32 * t.bk)))
        return Launch((min(tiles, 2**31 - 1), 1, max(1, min(b, 65535))), (t.threads, 1, 1))

    return launch


def check_gemm_dtype(op: Operation) -> None:
    dt = op.outputs[0].dtype
    if dt.name not in ("float32", "float64", "int32", "int64"):
        raise CompileError(f"{op.describe()}: no GEMM kernel for dtype {dt.name}")


# ---- MatMul ----------------------------------------------------------------------------------
def view_operand(kb: KernelBuilder, t: Tensor, coords: tuple, transposed: bool, out_batch: int,
                 views: set) -> Operand:
    """An operand read in place from the source of a view (codegen/views.py): element (row,
    col) of batch entry (zc0, zc1, ...) by the view's index math; walked along the coordinate
    that is contiguous in the source."""
    rank = len(t.shape)
    batch = ["0" if t.shape[i] == 1 else f"zc{i + out_batch - (rank - 2)}" for i in range(rank - 2)]
    mine = ["GF_C1", "GF_C0"] if transposed else ["GF_C0", "GF_C1"]  # the operand's own order
    root, expr = element_offset(t, batch + mine, views)
    ptr = kb.input(root)
    kb.covers("in", root, t)
    names = [f"zc{i}" for i in range(out_batch)] + ["GF_C0", "GF_C1"]
    step0, step1 = strides(root.shape, expr, names)[-2:]
    fast = coords[1] if step1 <= step0 else coords[0]

    def load(first: str, second: str) -> tuple[str, str]:
        text = expr.replace("GF_C0", f"({first})").replace("GF_C1", f"({second})")
        return "", f"{ptr}[{text}]"

    return Operand(fast, load=load)


STAGE_MAX = 8192  # elements of a thin GEMM's transposed B that the cpu schedule copies untransposed


def thin_operand(kb: KernelBuilder, thin: Operation, epilogue: list, inline: set, coords: tuple,
                 transposed: bool, prefix: str, cpu: bool = False) -> tuple[Operand, str, list]:
    """(operand, kernel-top lines, run-time checks): each element is computed where it is
    loaded, as the thin GEMM `thin` (K multiply-adds) and its elementwise epilogue would
    compute and store it. On the cpu schedule (`cpu`) the packing loops compute a run of
    elements of one result row at once, the K loop outermost, so they vectorize; a transposed
    B of the thin GEMM (the classifier's W^T) is first copied untransposed to the stack."""
    from .elementwise import Dialect
    from .fused import FusedCode
    a2, b2 = thin.inputs
    out2 = thin.outputs[0]
    ta2, tb2 = thin.attrs["transpose_a"], thin.attrs["transpose_b"]
    m2, n2 = out2.shape
    k2 = a2.shape[0] if ta2 else a2.shape[1]
    pa2, pb2 = kb.input(a2), kb.input(b2)
    c = ctype(out2.dtype)
    code = FusedCode(kb, epilogue, inline, set(), prefix=prefix) if epilogue else None
    if code is not None:
        code.column = f"{prefix}_col"
        lines = code.segment(epilogue, out2, bound={out2: f"{prefix}_acc"})
        final = code.value_of(epilogue[-1].outputs[0])
        kb.nodes = [*kb.nodes, thin, *epilogue, *code.used_inline]
    else:
        lines, final = [], f"{prefix}_acc"
        kb.nodes = [*kb.nodes, thin]
    zero = Dialect(out2.dtype).lit(0.0)
    a_at = f"q * {m2} + {prefix}_row" if ta2 else f"{prefix}_row * {k2} + q"
    b_at = f"{prefix}_col * {k2} + q" if tb2 else f"q * {n2} + {prefix}_col"
    # one element's epilogue, its row, column and sum bound: the value in {prefix}_v
    finish = [f"const long long i = {prefix}_row * {n2} + {prefix}_col;", *lines, f"{prefix}_v = {final};"]

    def load(first: str, second: str) -> tuple[str, str]:
        # the operand's element (first, second) is element (row, col) of the thin GEMM's result
        row, col = (second, first) if transposed else (first, second)
        body = "\n".join([
            f"{c} {prefix}_v;",
            "{",
            f"  const long long {prefix}_row = {row}, {prefix}_col = {col};",
            f"  {c} {prefix}_acc = {zero};",
            "  #pragma unroll 1",  # nvcc: one rolled loop per packed element, few registers
            f"  for (int q = 0; q < {k2}; ++q) {prefix}_acc += {pa2}[{a_at}] * {pb2}[{b_at}];",
            *["  " + line for line in finish],
            "}",
        ])
        return body, f"{prefix}_v"

    # walk the operand along its contiguous coordinate in the thin GEMM's B (its result's row)
    fast = coords[0] if transposed else coords[1]
    top = "".join(f"  {line}\n" for line in code.prologue) if code is not None else ""
    # the cpu schedule packs runs: B's rows contiguous, a transposed B first copied untransposed
    use_run = cpu and (not tb2 or k2 * n2 <= STAGE_MAX)
    if use_run and tb2:
        top += (f"  {c} {prefix}_b[{k2} * {n2}];  // the thin GEMM's B untransposed: [K][N]\n"
                f"  for (int q = 0; q < {k2}; ++q)\n"
                f"    for (int n = 0; n < {n2}; ++n) {prefix}_b[q * {n2} + n] = {pb2}[n * {k2} + q];\n")
    b_rows = f"{prefix}_b" if tb2 else pb2  # row q of B at b_rows + q * n2

    def run(row: str, col0: str, count: str, most: int, store: Callable[[str], str], pad: int) -> str:
        # elements (row, col0 + t) of the result, t < count: the same sums in the same order as
        # `load` (each element's K terms one after another), the K loop outermost
        text = [
            "{",
            f"  const long long {prefix}_row = {row};",
            f"  {c} {prefix}_run[{most}];",
            "  #pragma unroll 1",  # nvcc (which compiles this schedule too): rolled, no spills
            f"  for (int t = 0; t < {count}; ++t) {prefix}_run[t] = {zero};",
            "  #pragma unroll 1",
            f"  for (int q = 0; q < {k2}; ++q) {{",
            f"    const {c} {prefix}_a = {pa2}[{a_at}];",
            f"    const {c}* __restrict__ {prefix}_bq = {b_rows} + q * {n2} + ({col0});",
            "    #pragma unroll 1",
            f"    for (int t = 0; t < {count}; ++t) {prefix}_run[t] += {prefix}_a * {prefix}_bq[t];",
            "  }",
            "  #pragma unroll 1",
            f"  for (int t = 0; t < {count}; ++t) {{",
            f"    {c} {prefix}_v;",
            "    {",
            f"      const long long {prefix}_col = ({col0}) + t;",
            f"      const {c} {prefix}_acc = {prefix}_run[t];",
            *["      " + line for line in finish],
            "    }",
            f"    {store('t')} = {prefix}_v;",
            "  }",
            "}",
        ]
        return "".join(" " * pad + line + "\n" for line in text)

    return (Operand(fast, load=load, run=run if use_run else None), top,
            (code.checks if code is not None else []))


def _batch_setup(kb: KernelBuilder, a: Tensor, b: Tensor, out: Tensor, m: str, n: str, k: str,
                 ta: bool, tb: bool) -> tuple[str, str]:
    """(batch count expression, per-batch offsets a_off/b_off/c_off for batch entry z)."""
    out_rank = len(out.shape) - 2
    count = " * ".join(f"(long long){kb.dim(out, i)}" for i in range(out_rank)) or "1"
    lines = ["long long a_off = 0, b_off = 0;"] + (["long long rest = z;"] if out_rank else [])
    strides = {"a": f"(long long){m} * {k}", "b": f"(long long){k} * {n}"}
    for axis in reversed(range(out_rank)):  # innermost batch dim first
        size = kb.dim(out, axis)
        lines.append(f"const long long zc{axis} = rest % {size}; rest /= {size};")
        lines.append(f"{{ const long long c = zc{axis};")
        for name, t in (("a", a), ("b", b)):
            t_axis = axis - (out_rank - (len(t.shape) - 2))
            if t_axis < 0:  # t has no such batch dim: broadcast
                continue
            d, dim = t.shape[t_axis], kb.dim(t, t_axis)
            if d != 1:  # a None dim may still be 1 at run time: then it broadcasts
                coord = "c" if d is not None else f"({dim} == 1 ? 0 : c)"
                lines.append(f"  {name}_off += {coord} * ({strides[name]});")
                strides[name] = f"{strides[name]} * {dim}"
        lines.append("}")
    lines.append(f"const long long c_off = z * ((long long){m} * {n});")
    return count, "\n".join(lines) + "\n"


@emitter("MatMul")
def emit_matmul(ctx: EmitContext, op: Operation, epilogue: tuple | None = None,
                siblings: tuple = (), sibling_epilogue: tuple | None = None,
                store_into: tuple | None = None, recompute: dict | None = None) -> None:
    """C = A @ B (batched, broadcasting batch dims). `epilogue` = (elementwise ops, inlined
    ops, tensors to store): fused elementwise code applied to each C element in registers
    (bias, activation, residual add, the activation's derivative) before it is stored.
    `siblings`: a reduction of B over its rows (a bias gradient, 2-D only), summed as the
    tiles of the first row block load B; `sibling_epilogue` (like `epilogue`): elementwise ops
    applied to each of those sums before it is stored (the bias's update). `store_into` =
    (Concat, reshapes and transposes from C to it): C is stored where the concatenation holds
    its elements (codegen/views.py: concat_stores), never as a tensor of its own. `recompute`
    = {operand index: (MatMul, its epilogue ops, inlined ops)}: a thin GEMM (short K) whose
    result that operand is, computed element by element as the operand is packed."""
    check_gemm_dtype(op)
    a, b = op.inputs
    out = op.outputs[0]
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    cpu = ctx.device == "cpu"
    t = cpu_tiling_for(out.dtype) if cpu else tiling_for(out.dtype)
    fused_names = []
    if epilogue is not None:
        from graphflow.ops.state import ASSIGN_OPS

        from ..fusion import type_names
        updates = [e for e in epilogue[0] if e.type in ASSIGN_OPS]
        if updates:  # the update of the variable whose gradient this GEMM computes
            fused_names = [updates[0].origins[0].name.split("/")[0].lower() + "_update"]
        else:
            fused_names = type_names(epilogue[0])
    kb = ctx.builder("_".join([f"gemm_{t.name}", *fused_names[:4],
                               *(["sum_to_like"] if siblings else [])]), [op, *siblings])
    recompute = recompute or {}
    pa = None if is_view(a, ctx.views) or 0 in recompute else kb.input(a)
    pb = None if is_view(b, ctx.views) or 1 in recompute else kb.input(b)
    ra, rb = len(a.shape), len(b.shape)
    # M, N, K from the operands' own dims (a None dim becomes a run-time parameter)
    m = kb.dim(a, ra - 1 if ta else ra - 2)
    k = kb.dim(a, ra - 2 if ta else ra - 1)
    if k.isdigit() is False and b.shape[rb - 1 if tb else rb - 2] is not None:
        k = kb.dim(b, rb - 1 if tb else rb - 2)
    n = kb.dim(b, rb - 2 if tb else rb - 1)
    count, setup = _batch_setup(kb, a, b, out, m, n, k, ta, tb)
    # A is M x K (or K x M when transposed), B is K x N (or N x K); the last dim is contiguous
    a_op = Operand("m", f"{pa} + a_off", "M") if ta else Operand("k", f"{pa} + a_off", "K")
    b_op = Operand("k", f"{pb} + b_off", "K") if tb else Operand("n", f"{pb} + b_off", "N")
    if is_view(a, ctx.views):
        a_op = view_operand(kb, a, ("m", "k"), ta, len(out.shape) - 2, ctx.views)
    if is_view(b, ctx.views):
        b_op = view_operand(kb, b, ("k", "n"), tb, len(out.shape) - 2, ctx.views)
    recomputed, thin_checks = "", []  # the recomputed operands' kernel-top lines and checks
    for index, (thin, thin_epilogue, inline) in sorted(recompute.items()):
        which = (("m", "k"), ta) if index == 0 else (("k", "n"), tb)
        operand, top, more = thin_operand(kb, thin, thin_epilogue, inline, *which, f"r{index}", cpu)
        recomputed += top
        thin_checks += more
        if index == 0:
            a_op = operand
        else:
            b_op = operand
    prologue, checks, helpers = "", [], ()
    if store_into is not None:
        concat, chain = store_into
        kb.nodes = [op, *chain, concat]
        c = kb.output(concat.outputs[0])
        kb.covers("out", concat.outputs[0], out)  # its own part of the concatenation
        itype = index_type_for(a, b, concat.outputs[0],
                               *[p.tensor for p in kb.params if p.tensor is not None])
        nb = len(out.shape) - 2
        where = stored_offset(out, [f"zc{i}" for i in range(nb)] + ["GF_ROW", "GF_COL"], chain, concat)

        def store(row, col, v):
            return f"{c}[{where.replace('GF_ROW', f'({row})').replace('GF_COL', f'({col})')}] = {v}"
    elif epilogue is None:
        c = kb.output(out)
        itype = index_type_for(a, b, out, *[p.tensor for p in kb.params if p.tensor is not None])

        def store(row, col, v):
            return f"{c}[c_off + {row} * N + {col}] = {v}"
    else:
        from .elementwise import HELPERS
        from .fused import FusedCode
        ops, inline, stored = epilogue
        code = FusedCode(kb, ops, inline, stored)
        code.column = "col"
        kb.nodes = [op, *ops, *code.used_inline, *siblings]
        lines = code.segment(ops, out, bound={out: "acc_v"})
        itype = index_type_for(a, b, out, *[p.tensor for p in kb.params if p.tensor is not None])
        prologue = "".join(f"  {line}\n" for line in code.prologue)
        checks, helpers = code.checks, (HELPERS,)
        c_type = ctype(out.dtype)

        def store(row, col, v):
            return (f"{{\n            const {c_type} acc_v = {v};  // before i shadows the loop's\n"
                    f"            const {itype} i = ({itype})(c_off + {row} * N) + {col};\n"
                    + "".join(f"            {line}\n" for line in lines) + "          }")
    col_sums = None
    if siblings and sibling_epilogue is None:
        sums_ptr = kb.output(siblings[0].outputs[0], "col_sums")

        def col_sums(col, v):
            return f"{sums_ptr}[{col}] = {v}"
    elif siblings:
        from .elementwise import HELPERS as SCALAR_HELPERS
        from .fused import FusedCode
        s_ops, s_inline, s_stored = sibling_epilogue
        s_code = FusedCode(kb, s_ops, s_inline, s_stored, prefix="b")
        kb.nodes = [*kb.nodes, *s_ops, *s_code.used_inline]
        total = siblings[0].outputs[0]
        s_lines = s_code.segment(s_ops, total, bound={total: "sum_v"})
        prologue += "".join(f"  {line}\n" for line in s_code.prologue)
        checks, helpers = [*checks, *s_code.checks], (*helpers, SCALAR_HELPERS)
        s_type = ctype(total.dtype)

        def col_sums(col, v):
            return (f"{{\n            const {s_type} sum_v = {v};\n"
                    f"            const {itype} i = {col};\n"
                    + "".join(f"            {line}\n" for line in s_lines) + "          }")
    if recompute:
        from .elementwise import HELPERS as SCALAR_HELPERS
        checks, helpers = [*checks, *thin_checks], (*helpers, SCALAR_HELPERS)
    def mnkb(shapes):
        sa, sb = shapes[a], shapes[b]
        mm = sa[-1] if ta else sa[-2]
        kk = sa[-2] if ta else sa[-1]
        nn = sb[-2] if tb else sb[-1]
        return mm, nn, kk, numel(shapes[out][:-2])

    if cpu:
        def tile_side(i: int) -> Callable[[dict], int]:
            return lambda s: cpu_tile(t, *mnkb(s), getattr(s, "threads", 1))[i]
        tile = (kb.scalar("tile_rows", "int", tile_side(0)), kb.scalar("tile_cols", "int", tile_side(1)))
        body = recomputed + prologue + gemm_body_cpu(
            ctype(out.dtype), itype, t, m, n, k, a_op, b_op, store, batch=count, batch_setup=setup,
            col_sums=col_sums, tile=tile)
    else:
        body = recomputed + prologue + gemm_body(
            ctype(out.dtype), itype, t, m, n, k, a_op, b_op, store, batch=count, batch_setup=setup,
            col_sums=col_sums)

    shape_text = (f"{list(a.shape)}{'^T' if ta else ''} @ {list(b.shape)}{'^T' if tb else ''}"
                  f" -> {list(out.shape)}")
    extra = f"; epilogue: {', '.join(e.type for e in epilogue[0])}" if epilogue else ""
    extra += "; also the column sums of B (a bias gradient)" if siblings else ""
    ctx.add(
        kb.build(
            body,
            gemm_launch_cpu(t, mnkb) if cpu
            else gemm_launch(t, lambda s: (mnkb(s)[0], mnkb(s)[1], mnkb(s)[3])),
            flops=lambda s: 2 * mnkb(s)[0] * mnkb(s)[1] * mnkb(s)[2] * mnkb(s)[3],
            comment=f"batched GEMM {shape_text}; {t.describe()}{extra}",
            checks=checks, helpers=helpers,
        )
    )
