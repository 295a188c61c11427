"""Kernels as data: a Kernel is CUDA C text plus how to bind and launch it.

Emitters build kernels with a KernelBuilder. Static dims are baked into the
source as literals; dims unknown at build time (None, e.g. the batch size)
become `long long` kernel parameters, so one compiled module serves every
batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from graphflow.dtypes import DType
from graphflow.graph import Operation, Tensor

CTYPES = {
    "float16": "__half",
    "float32": "float",
    "float64": "double",
    "int8": "signed char",
    "int16": "short",
    "int32": "int",
    "int64": "long long",
    "uint8": "unsigned char",
    "uint16": "unsigned short",
    "uint32": "unsigned int",
    "uint64": "unsigned long long",
    "bool": "bool",
}

# One block handles a contiguous tile of this many elements; on the GPU its threads
# stride through the tile (coalesced), on the CPU one thread walks it (vectorizable).
TILE = 4096
GPU_BLOCK = 256


def ctype(dtype: DType) -> str:
    """The C type a dtype's elements have in memory. bool tensors are gf_bool (unsigned char,
    0 or 1, the same bytes as numpy's bool_): g++ vectorizes byte loads but not loads of C++
    bool, so a relu gradient's select over a saved mask ran one element per branch."""
    return "gf_bool" if dtype.name == "bool" else CTYPES[dtype.name]


def compute_ctype(dtype: DType) -> str:
    """The C type a kernel holds a dtype's values in: float16 (__half in memory) computes on
    floats, every other dtype on its own type."""
    return "float" if dtype.name == "float16" else CTYPES[dtype.name]


def rounded(dtype: DType, expr: str) -> str:
    """expr converted to dtype's compute type, rounded as dtype stores it (float16 goes
    through __half, so each op rounds as numpy's float16 loops do)."""
    if dtype.name == "float16":
        return f"(float)(__half)({expr})"
    return f"({CTYPES[dtype.name]})({expr})"


class Shapes(dict):
    """Tensor -> concrete shape tuple, for one shape signature; `threads`: the most OS threads
    the launch being planned may use (a cpu GEMM sizes its tiles so each gets work)."""
    threads = 1


@dataclass
class Param:
    """One kernel parameter: a buffer, a run-time dim, or a scalar computed at launch."""

    name: str
    kind: str  # 'in' | 'out' | 'scratch' | 'dim' | 'scalar'
    ctype: str
    tensor: Tensor | None = None  # for buffers and dims
    axis: int = 0  # for dims
    value: Callable | None = None  # scalars: (shapes) -> value; scratch: (shapes) -> count
    stream: object = None  # a scalar set before every run: how often this op ran in the Session
    slot: str = ""  # scratch: the buffer's name when the C name differs (a combined kernel's)
    extents: tuple = ()  # buffers: the tensors whose elements are read or written, when not all
    #                      of the buffer's (views a GEMM reads, its part of a concatenation)

    def declaration(self) -> str:
        if self.kind == "in":
            return f"const {self.ctype}* __restrict__ {self.name}"
        if self.kind in ("out", "scratch"):
            return f"{self.ctype}* __restrict__ {self.name}"
        return f"const {self.ctype} {self.name}"


@dataclass
class Launch:
    grid: tuple
    block: tuple
    shared: int = 0


@dataclass
class Kernel:
    name: str
    nodes: list[Operation]
    params: list[Param]
    body: str
    launch: Callable[[Shapes, str], Launch]  # (shapes, device name) -> launch shape
    flops: Callable[[Shapes], int] = lambda shapes: 0
    comment: str = ""
    helpers: tuple = ()  # __device__ snippets this kernel needs, each emitted once per unit
    checks: list = field(default_factory=list)  # (shapes) -> error text or None, before launch
    active: Callable[[Shapes], bool] = lambda shapes: True  # False: nothing to do, not launched
    host: Callable | None = None  # a host step instead of a CUDA kernel: host(args, shapes)
    map: bool = False  # right for any grid and block (a tile loop, or work owned by thread)

    @property
    def source(self) -> str:
        """The kernel's CUDA C: leading comment, helpers, then the __global__ function."""
        lines = [f"// {self.name}: {self.comment}".rstrip(": ")] if self.comment else []
        seen = set()
        for node in self.nodes:  # lowered nodes name the user's ops they stand for
            for op in getattr(node, "origins", [node]):
                if op not in seen:
                    seen.add(op)
                    lines.append(f"//   computes {op.name} ({op.type}) defined at {op.site}")
        params = ",\n    ".join(p.declaration() for p in self.params)
        helpers = self.helper_text()
        return (
            "\n".join(lines)
            + "\n"
            + helpers
            + f'extern "C" __global__ void {self.name}(\n    {params}) {{\n'
            + self.body.rstrip()
            + "\n}\n"
        )

    def helper_text(self) -> str:
        return "".join(h.strip() + "\n" for h in self.helpers if h.strip())

    @property
    def static_shared_bytes(self) -> int | None:
        """Bytes of the static __shared__ arrays the kernel declares (ptxas's smem figure;
        the launch's dynamic shared bytes come on top); None if they cannot be worked out."""
        from .ctext import static_shared_bytes
        return static_shared_bytes(self.body, self.helper_text())

    def bytes_moved(self, shapes: Shapes) -> tuple[int, int]:
        """(bytes read, bytes written), counting each buffer once."""
        read = written = 0
        for p in self.params:
            if p.tensor is None or p.kind not in ("in", "out"):
                continue
            n = sum(numel(shapes[t]) for t in p.extents) if p.extents else numel(shapes[p.tensor])
            if p.kind == "in":
                read += n * p.tensor.dtype.size
            else:
                written += n * p.tensor.dtype.size
        return read, written


class KernelBuilder:
    """Collects the parameters one kernel needs while an emitter writes its body."""

    def __init__(self, name: str, nodes: list[Operation]) -> None:
        self.name = name
        self.nodes = nodes
        self.params: list[Param] = []
        self._by_key: dict = {}

    def _param(self, key, make: Callable[[], Param]) -> str:
        if key not in self._by_key:
            self.params.append(make())
            self._by_key[key] = self.params[-1].name
        return self._by_key[key]

    def input(self, t: Tensor, name: str | None = None) -> str:
        """Pointer parameter for reading tensor t."""
        return self._param(
            ("in", t), lambda: Param(name or f"in{self._count('in')}", "in", ctype(t.dtype), t)
        )

    def output(self, t: Tensor, name: str = "out") -> str:
        return self._param(("out", t), lambda: Param(name, "out", ctype(t.dtype), t))

    def covers(self, kind: str, t: Tensor, part: Tensor) -> None:
        """The kernel touches only `part`'s elements of buffer t (for bytes_moved); parts add up."""
        for p in self.params:
            if p.kind == kind and p.tensor is t:
                p.extents = (*p.extents, part)

    def scratch(self, key: str, c_type: str, elements: Callable[[Shapes], int]) -> str:
        """A temporary device buffer of `elements` items, private to this launch."""
        return self._param(("scratch", key), lambda: Param(key, "scratch", c_type, value=elements))

    def dim(self, t: Tensor, axis: int) -> str:
        """A C expression for dim `axis` of t: a literal when known, else a parameter."""
        d = t.shape[axis]
        if d is not None:
            return str(d)
        return self._param(
            ("dim", t, axis), lambda: Param(f"{self.input_name(t)}_d{axis}", "dim", "long long", t, axis)
        )

    def scalar(self, name: str, c_type: str, value: Callable) -> str:
        """A value computed from the concrete shapes, once per shape signature."""
        return self._param(("scalar", name), lambda: Param(name, "scalar", c_type, value=value))

    def stream(self, name: str, op: Operation) -> str:
        """A random stream counter: how often `op` ran before in the Session, set each run."""
        return self._param(("scalar", name), lambda: Param(name, "scalar", "unsigned long long",
                                                           stream=op))

    def input_name(self, t: Tensor) -> str:
        for p in self.params:
            if p.tensor is t and p.kind in ("in", "out"):
                return p.name
        return f"t{t.op.id}"

    def numel(self, t: Tensor) -> str:
        """C expression for the element count of t."""
        dims = [self.dim(t, i) for i in range(len(t.shape))]
        known = 1
        symbolic = []
        for d in dims:
            if d.isdigit():
                known *= int(d)
            else:
                symbolic.append(d)
        return " * ".join([f"{known}LL"] + symbolic) if symbolic or known >= 2**31 else str(known)

    def _count(self, kind: str) -> int:
        return sum(1 for p in self.params if p.kind == kind)

    def build(
        self,
        body: str,
        launch,
        flops=lambda shapes: 0,
        comment: str = "",
        helpers: tuple = (),
        checks: list | None = None,
        active: Callable[[Shapes], bool] | None = None,
    ) -> Kernel:
        """The kernel; `helpers` are __device__ snippets, each emitted once per unit."""
        kernel = Kernel(self.name, self.nodes, list(self.params), body, launch, flops, comment,
                        tuple(helpers), checks or [])
        if active is not None:
            kernel.active = active
        return kernel


def numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def tiled_launch(count: Callable[[Shapes], int]) -> Callable[[Shapes, str], Launch]:
    """Launch shape for a tile loop over `count` elements (see TILE)."""

    def launch(shapes: Shapes, device: str) -> Launch:
        tiles = max(1, -(-count(shapes) // TILE))
        if device == "cpu":  # one thread walks each tile; a few blocks per core
            return Launch((min(tiles, 64), 1, 1), (1, 1, 1))
        return Launch((min(tiles, 65535), 1, 1), (GPU_BLOCK, 1, 1))

    return launch


def thread_part(t: str, begin: str, end: str, thread: str = "threadIdx.x",
                threads: str = "blockDim.x") -> list[str]:
    """C lines setting [lo, hi), this thread's contiguous part of [begin, end): how the cpu
    schedules split a block's work (unit stride; right for any block size)."""
    return [f"const {t} part = ({end} - {begin} + ({t}){threads} - 1) / ({t}){threads};",
            f"const {t} lo = {begin} + ({t}){thread} * part;",
            f"const {t} hi = lo + part < {end} ? lo + part : {end};"]


def tile_loop(count: str, index_type: str, inner: str, device: str = "cuda") -> str:
    """The loop every elementwise-style kernel uses: blocks take tiles of TILE elements. On the
    GPU the threads of a block stride through a tile (neighbours load neighbours: coalesced);
    on the cpu each thread walks a contiguous part of it (one thread per block there: the whole
    tile) with unit stride, which g++ vectorizes. Either is right for any grid and block."""
    t = index_type
    if device == "cpu":
        walk = "".join(f"    {line}\n" for line in thread_part(t, "base", "end")) + \
            f"    for ({t} i = lo; i < hi; ++i) {{\n"
    else:
        walk = f"    for ({t} i = base + threadIdx.x; i < end; i += blockDim.x) {{\n"
    return (
        f"  const {t} n = {count};\n"
        f"  for ({t} base = ({t})blockIdx.x * {TILE}; base < n; "
        f"base += ({t})gridDim.x * {TILE}) {{\n"
        f"    const {t} end = base + {TILE} < n ? base + {TILE} : n;\n"
        + walk
        + "\n".join("      " + line for line in inner.strip().splitlines())
        + "\n"
        "    }\n  }\n"
    )


def row_loop(rows: str, length: str, index_type: str, inner: str, last: str = "last",
             per_row: str = "") -> str:
    """The cpu's loop for kernels that index by coordinates: blocks take tiles of whole rows of
    the innermost dim (about TILE elements), the threads of a block each a contiguous part of
    them (one thread per block on the cpu). `per_row` runs once per row, `inner` at each
    (row, `last`), with the flat index i = row * len + last: loads that broadcast compute their
    row's offset once, and walk the row with unit stride. Right for any grid and block."""
    t = index_type
    return (
        f"  const {t} len = {length}, rows = {rows};\n"
        f"  const {t} per = len >= {TILE} || len == 0 ? 1 : {TILE} / len;  // rows per tile\n"
        f"  for ({t} r0 = ({t})blockIdx.x * per; r0 < rows; r0 += ({t})gridDim.x * per) {{\n"
        f"    const {t} r_end = r0 + per < rows ? r0 + per : rows;\n"
        + "".join(f"    {line}\n" for line in thread_part(t, "r0", "r_end"))
        + f"    for ({t} row = lo; row < hi; ++row) {{\n"
        + "".join("      " + line + "\n" for line in per_row.strip().splitlines())
        + f"      for ({t} {last} = 0; {last} < len; ++{last}) {{\n"
        f"        const {t} i = row * len + {last};\n"
        + "".join("        " + line + "\n" for line in inner.strip().splitlines())
        + "      }\n    }\n  }\n"
    )


def index_type_for(*tensors: Tensor) -> str:
    """int when every tensor is statically known to hold < 2^31 elements, else long long."""
    for t in tensors:
        n = 1
        for d in t.shape:
            if d is None:
                return "long long"
            n *= d
        if n >= 2**31:
            return "long long"
    return "int"


def add_map_kernel(ctx: EmitContext, kb: KernelBuilder, over: Tensor, inner: str, itype: str,
                   comment: str, flops=lambda shapes: 0, checks=None, helpers=(), top: str = "") -> Kernel:
    """Finish a one-thread-per-element kernel: `inner` runs for each flat index i of `over`
    (`top`: lines before the loop)."""
    kernel = kb.build(top + tile_loop(kb.numel(over), itype, inner, ctx.device),
                      tiled_launch(lambda shapes: numel(shapes[over])), flops=flops,
                      comment=comment, helpers=helpers, checks=checks or [])
    kernel.map = True
    return ctx.add(kernel)


def add_zero_kernel(ctx: EmitContext, op: Operation, base: str, comment: str) -> Kernel:
    """Zero op's output (before a later kernel of the op accumulates into it)."""
    out = op.outputs[0]
    kb = ctx.builder(base, [op])
    o = kb.output(out)
    return add_map_kernel(ctx, kb, out, f"{o}[i] = ({ctype(out.dtype)})0;", index_type_for(out),
                          comment)


@dataclass
class EmitContext:
    """What an emitter may ask while lowering one op."""

    kernels: list[Kernel] = field(default_factory=list)
    counter: dict = field(default_factory=dict)
    device: str = "cuda"  # the device the kernels are for: emitters may pick a schedule by it
    views: set = field(default_factory=set)  # ops GEMMs read in place (codegen/views.py)

    def builder(self, base: str, nodes: list[Operation]) -> KernelBuilder:
        n = self.counter.get(base, 0)
        self.counter[base] = n + 1
        return KernelBuilder(f"{base}_{n}", nodes)

    def add(self, kernel: Kernel) -> Kernel:
        self.kernels.append(kernel)
        return kernel
