"""The compile-once work for a lowered graph: fusion, kernels, the translation units, and per
shape signature a Record (executable.py) that says how to run them.

Fusion groups the lowered ops into kernels (codegen/fusion.py), emitters write each kernel,
the units compile (several side by side). Per shape signature: every tensor's shape, the
run-time checks, the memory plan, each launch's grid and arguments, and the stats, written
as a Record. Host-only ops make no kernel: constants are uploaded once, placeholders are fed,
variables live in the Session (updated in place where the start-of-run semantics allow), and
reshape-like ops alias their input's buffer.
"""
from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from graphflow.errors import CompileError, ShapeError
from graphflow.ops.state import ASSIGN_OPS
from graphflow.passes import LGraph, LTensor
from graphflow.reference import infer_at_run_time

from .combine import combine_kernels
from .devices import CompileFailed, prelude
from .emit import load_all
from .emit import reduce as reduce_emit
from .emit.custom import explain_compile_failure
from .emit.elementwise import SCALAR
from .emit.fused import emit_fused
from .emit.movement import const_copy_pairs, emit_const_copies
from .executable import KernelInfo, Record, np_scalar
from .fusion import ALIAS_OPS, HOST_OPS, alias_root, plan_groups
from .kernel import EmitContext, Kernel, Shapes, numel
from .memory import plan_memory

__all__ = ["ALIAS_OPS", "HOST_OPS", "Build", "assemble", "compile_parts", "emit_kernels"]

SCRATCH_DTYPES = {"float": np.float32, "double": np.float64, "int": np.int32,
                  "long long": np.int64, "unsigned int": np.uint32,
                  "unsigned long long": np.uint64, "bool": np.bool_}

def assemble(kernels: list[Kernel]) -> str:
    """The translation unit: the CUDA prelude, then every kernel with its helpers once."""
    parts = [f"// graphflow translation unit: {len(kernels)} kernels\n", prelude("cuda")]
    seen = set()
    for k in kernels:
        if k.host is not None:  # runs on the host between kernels; named here for the reader
            parts.append(f"// host step {k.name}: {k.comment}\n")
            continue
        for snippet in k.helpers:
            if snippet.strip() and snippet not in seen:
                seen.add(snippet)
                parts.append(snippet.strip() + "\n")
        parts.append(Kernel(k.name, k.nodes, k.params, k.body, k.launch, k.flops, k.comment).source)
    return "\n".join(parts)


PART_MIN_BYTES = 6_000  # a translation unit of less kernel text is not worth its own compiler


def compile_parts(kernels: list[Kernel], jobs: int) -> list[list[Kernel]]:
    """The device kernels split into at most `jobs` translation units of similar size, compiled
    side by side (a cold compile of a training step is mostly g++ optimizing the GEMMs)."""
    device = [k for k in kernels if k.host is None]
    total = sum(len(k.body) for k in device)
    count = max(1, min(jobs, len(device), total // PART_MIN_BYTES))
    if count == 1:
        return [device]
    parts: list[list[Kernel]] = [[] for _ in range(count)]
    sizes = [0] * count
    for k in sorted(device, key=lambda k: -len(k.body)):  # largest first, onto the smallest part
        i = sizes.index(min(sizes))
        parts[i].append(k)
        sizes[i] += len(k.body)
    order = {k.name: n for n, k in enumerate(device)}
    return [sorted(p, key=lambda k: order[k.name]) for p in parts]


# Ops whose kernels take float16 (__half in memory, computed on floats, rounded per op):
# elementwise math and data movement; reductions, GEMM, rows and the rest refuse it.
FLOAT16_OPS = frozenset(SCALAR) - {"AddN"} | {"Cast", "FillLike", "OneHot", "Transpose",
                                             "StridedSlice", "Concat", "ConcatSlice", "Gather",
                                             "Tile", "Pad"}


def emit_kernels(graph: LGraph, device: str, fuse: bool = True) -> tuple[list, set, list[Kernel]]:
    """Fusion groups, the inlined one-element ops, and the kernels for `device` ('cpu' picks
    the cpu schedules; any other name the GPU's). Nothing is compiled."""
    groups, inline, views = plan_groups(graph, fuse)
    emitters = load_all()
    ctx = EmitContext(device=device, views=views)
    fetched = graph.live_outputs()
    users = graph.consumers()
    for group in groups:
        for op in group.ops:
            if op.type not in FLOAT16_OPS and any(
                    t.dtype.name == "float16" for t in list(op.inputs) + op.outputs):
                raise CompileError(f"{op.describe()}: float16 {op.type} kernels are not "
                                   "supported yet")
        if group.fused:
            pairs = const_copy_pairs(group.ops)
            if pairs and not (set(stored_outputs(group, fetched, users)) - {o for _, o in pairs}):
                emit_const_copies(ctx, group.ops, pairs)
            else:
                emit_fused(ctx, group, inline, stored_outputs(group, fetched, users))
            continue
        op = group.segments[0][0]  # the template op (prologue and epilogue ops around it)
        emit = emitters.get(op.type)
        if emit is None:
            raise CompileError(f"no CUDA emitter for {op.describe()}")
        stored = stored_outputs(group, fetched, users)
        extra: dict = {"siblings": group.siblings} if group.siblings else {}
        if group.total:
            extra["total"] = group.total[0]
        if group.store:
            extra["store_into"] = group.store
        if group.recompute:
            extra["recompute"] = {i: (g.ops[0], g.epilogue, inline)
                                  for i, g in group.recompute.items()}
        if group.sibling_epilogue:
            extra["sibling_epilogue"] = (group.sibling_epilogue, inline, stored)
        if group.epilogue:
            extra["epilogue"] = (group.epilogue, inline, stored)
        if group.prologue:
            extra["prologue"] = (group.prologue, inline, stored)
        emit(ctx, op, **extra)
    if fuse:
        ctx.kernels = combine_kernels(ctx.kernels, device)
    if device == "cpu":  # the cpu schedules' block-wide steps (see reduce.CPU_HELPERS)
        gpu, cpu = reduce_emit.HELPERS, reduce_emit.CPU_HELPERS
        for kernel in ctx.kernels:
            kernel.helpers = tuple(cpu if h is gpu else h for h in kernel.helpers)
    return groups, inline, ctx.kernels


def stored_outputs(group, fetched: set, users: dict) -> set:
    """Outputs of a group's ops that must reach memory: effects, fetches, and values any op
    outside the group reads."""
    members = set(group.ops)

    def leaves(t):  # the value is read outside, or fetched, also through a reshape of it
        for u in users.get(t, []):
            if u.type in ALIAS_OPS and u.outputs:
                if u.outputs[0] in fetched or leaves(u.outputs[0]):
                    return True
            elif u not in members:
                return True
        return False

    return {op.outputs[0] for op in group.ops
            if op.type in ASSIGN_OPS or op.outputs[0] in fetched or leaves(op.outputs[0])}


SMALL_WORK = 1 << 20  # flops + bytes under which a launch runs on one OS thread


class Build:
    """A lowered graph compiled for one device: its kernels, loaded, and the facts about the
    graph that every shape signature's Record needs."""

    def __init__(self, graph: LGraph, device: str, driver, fuse: bool = True) -> None:
        self.device, self.driver, self.graph = device, driver, graph
        self.groups, inline, self.kernels = emit_kernels(graph, device, fuse)
        self.source = assemble(self.kernels)
        self.in_place = self._plan_in_place()
        self.assigns = [(alias_root(op.inputs[0]).op, op.outputs[0])  # (variable, new value)
                        for op in graph.ops if op.type in ASSIGN_OPS]
        self.variables = [op for op in graph.ops if op.type == "Variable"]
        self.readers = {}  # Variable LOp -> the first op reading its start-of-run value
        for op in graph.ops:
            if op.type not in ALIAS_OPS:
                for j, t in enumerate(op.inputs):
                    if alias_root(t).op.type == "Variable" and not (op.type == "Assign" and j == 0):
                        self.readers.setdefault(alias_root(t).op, op)
        for t in graph.live_outputs():
            if alias_root(t).op.type == "Variable":
                self.readers.setdefault(alias_root(t).op, alias_root(t).op)
        parts = compile_parts(self.kernels, getattr(driver, "compile_jobs", lambda: 1)())
        if not parts[0]:  # host steps only (an initializer of constants): nothing to compile
            parts = []
        sources = [self.source] if len(parts) == 1 else [assemble(part) for part in parts]
        # what a Record keeps to load the same modules again: (source, kernel names) per unit
        self.parts = [(source, [k.name for k in part]) for source, part in zip(sources, parts)]
        # the units compile in the background (g++ or nvcc in subprocesses: the threads only
        # wait) while the caller plans the launches; `functions` waits for them
        self._functions: dict | None = None
        self._pending = []
        if parts:
            pool = ThreadPoolExecutor(len(parts))
            self._pending = [pool.submit(driver.SourceModule, source, no_extern_c=True)
                             for source in sources]
            pool.shutdown(wait=False)
        dump_dir = os.environ.get("GRAPHFLOW_DUMP_DIR")
        if dump_dir:
            from .dump import dump_program
            dump_program(self, os.path.join(dump_dir, self.dump_name()))

    @property
    def functions(self) -> dict:
        """Kernel name -> loaded function, once every unit has compiled (CompileError if one
        does not: custom ops' errors name the user's lines)."""
        if self._functions is None:
            try:
                modules = [future.result() for future in self._pending]
            except CompileFailed as e:
                raise CompileError(explain_compile_failure(e)) from None
            self._functions = {name: module.get_function(name)
                               for (_, names), module in zip(self.parts, modules) for name in names}
        return self._functions

    def dump_name(self) -> str:
        """A folder name for $GRAPHFLOW_DUMP_DIR: the first fetch and a short hash of the code."""
        first = next((t.op.name for t in self.graph.fetches if t is not None),
                     self.graph.targets[0].name if self.graph.targets else "graph")
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", first)[:40]
        return f"{tag}_{hashlib.sha256(self.source.encode()).hexdigest()[:8]}"

    def kernel_infos(self) -> list[KernelInfo]:
        """Names and graph nodes per kernel, before any shape signature is known."""
        return [KernelInfo(k.name, [o.name for op in k.nodes for o in op.origins], (), (), 0, 0, 0, 0)
                for k in self.kernels]

    # ---- variables updated in place --------------------------------------------------
    def _plan_in_place(self) -> dict:
        """Assign output -> Variable LOp, where the kernel may write the variable's own buffer:
        one assign for it in the plan, not fetched, and no later kernel reads its old value."""
        assigns: dict = {}
        for op in self.graph.ops:
            if op.type in ASSIGN_OPS:
                assigns.setdefault(alias_root(op.inputs[0]).op, []).append(op)
        fetched = {alias_root(t) for t in self.graph.live_outputs()}
        writer_kernel = {}
        for k, kernel in enumerate(self.kernels):
            for p in kernel.params:
                if p.kind == "out":
                    writer_kernel[p.tensor] = k
        in_place = {}
        for var, ops in assigns.items():
            out = ops[0].outputs[0]
            if len(ops) != 1 or var.outputs[0] in fetched or out not in writer_kernel:
                continue
            k_write = writer_kernel[out]
            later_read = any(alias_root(p.tensor) is var.outputs[0]
                             for kernel in self.kernels[k_write + 1:] for p in kernel.params
                             if p.kind == "in")
            if not later_read:
                in_place[out] = var
        return in_place

    # ---- shapes --------------------------------------------------------------------
    def shapes_for(self, feed_shapes: dict) -> dict:
        """Concrete shapes of every tensor for these feed shapes (user tensor -> shape)."""
        shapes = {}
        for op in self.graph.ops:
            if not op.outputs:
                continue
            out = op.outputs[0]
            if op.type == "Placeholder":
                shapes[out] = feed_shapes[op.state.outputs[0]]
            elif op.type in ("Const", "Variable"):
                shapes[out] = tuple(out.shape)
            else:
                shapes[out] = tuple(infer_at_run_time(op, [shapes[t] for t in op.inputs]).shape)
        return shapes

    # ---- one shape signature as a Record -------------------------------------------
    def freeze(self, feed_shapes: dict, feeds: list, threads: int) -> Record:
        """The Record for these feed shapes (user tensor -> shape); `feeds` are the user's fed
        tensors in the program's order, `threads` the most OS threads a launch may use. Every
        run-time check runs here."""
        graph = self.graph
        shapes = Shapes(self.shapes_for(feed_shapes))
        for kernel in self.kernels:  # every run-time check before the first launch
            for check in kernel.checks:
                problem = check(shapes)
                if problem:
                    raise ShapeError(f"{kernel.nodes[0].describe()}: {problem}")
        host = {t for t in shapes if t.op.type in HOST_OPS}
        pooled = {alias_root(p.tensor) for k in self.kernels for p in k.params
                  if p.kind == "out" and p.tensor not in self.in_place} - host
        keep = {alias_root(t) for t in graph.live_outputs()}
        # an update not done in place is copied into its variable after the last kernel
        keep |= {alias_root(out) for _, out in self.assigns if out not in self.in_place}
        memory = plan_memory(self.kernels, shapes, alias_root, pooled, keep)
        where: dict = {t: ("slot", s) for t, s in memory.slot_of.items()}
        feed_index = {graph.feeds[u]: i for i, u in enumerate(feeds)}
        where.update({t: ("feed", i) for t, i in feed_index.items()})
        consts: list = []
        const_index: dict = {}

        def const(t: LTensor) -> int:
            if t not in const_index:
                const_index[t] = len(consts)
                consts.append(np.asarray(t.op.attrs["value"]))
            return const_index[t]

        def ref(t: LTensor) -> tuple:
            t = alias_root(t)
            if t in self.in_place:
                return ("var", self.in_place[t].state)
            if t.op.type == "Variable":
                return ("var", t.op.state)
            if t.op.type == "Const":
                return ("const", const(t))
            return where[t]

        scratch: list = []
        scratch_index: dict = {}
        launches, infos, host_steps = [], [], []
        totals = {"flops": 0, "bytes_moved": 0, "launches": 0}
        scratch_bytes = 0
        for k, kernel in enumerate(self.kernels):
            out_sizes = [numel(shapes[p.tensor]) for p in kernel.params if p.kind == "out"]
            read, written = kernel.bytes_moved(shapes)
            flops = int(kernel.flops(shapes))
            small = flops + read + written < SMALL_WORK
            shapes.threads = 1 if small else threads  # what the launch and its scalars see
            launch = kernel.launch(shapes, self.device)
            infos.append(KernelInfo(kernel.name, [o.name for op in kernel.nodes for o in op.origins],
                                    tuple(launch.grid), tuple(launch.block), launch.shared,
                                    read, written, flops))
            totals["flops"] += flops
            totals["bytes_moved"] += read + written
            if not ((not out_sizes or max(out_sizes) > 0) and kernel.active(shapes)):
                continue
            args: list = []
            for p in kernel.params:
                if p.kind == "dim":
                    args.append(np.int64(shapes[p.tensor][p.axis]))
                elif p.kind == "scratch":
                    slot = (p.slot or p.name, p.value)
                    if slot not in scratch_index:
                        if p.ctype not in SCRATCH_DTYPES:
                            raise CompileError(f"scratch buffer {p.name} has unsupported type {p.ctype}")
                        count = max(1, int(p.value(shapes)))
                        scratch_index[slot] = len(scratch)
                        scratch.append((count, np.dtype(SCRATCH_DTYPES[p.ctype]).str))
                        scratch_bytes += count * np.dtype(SCRATCH_DTYPES[p.ctype]).itemsize
                    args.append(("scratch", scratch_index[slot]))
                elif p.kind == "scalar" and p.stream is not None:
                    args.append(("stream", p.ctype, p.stream.state or p.stream))
                elif p.kind == "scalar":
                    args.append(np_scalar(p.ctype, p.value(shapes)))
                else:
                    args.append(ref(p.tensor))
            if kernel.host is not None:  # grid None: a host step, `block` its index
                launches.append((k, None, len(host_steps), 0, 1, args))
                host_steps.append((kernel.host, [shapes[p.tensor] if p.tensor is not None else None
                                                 for p in kernel.params]))
                continue
            launches.append((k, tuple(launch.grid), tuple(launch.block), launch.shared,
                             shapes.threads, args))
            totals["launches"] += 1
        stats = {"kernels": len(self.kernels), "peak_memory_bytes": memory.peak + scratch_bytes,
                 "peak_memory_bound": memory.bound, **totals}
        fetch_refs: list = []
        for t in graph.fetches:
            if t is None:
                fetch_refs.append(None)
                continue
            if t.op.type == "Placeholder":
                r = ("feed_value", feed_index[t])
            elif t.op.type == "Const":
                r = ("const_value", const(t))
            else:
                r = ref(t)
            fetch_refs.append((r, tuple(shapes[t]), t.dtype.np.str))
        variables = [(op.state, self.readers[op].origins[0] if op in self.readers else None,
                      tuple(op.attrs["shape"]), np.dtype(op.attrs["dtype"].np).str)
                     for op in self.variables]
        copies = [(var.state, ref(out), numel(var.outputs[0].shape) * var.outputs[0].dtype.size)
                  for var, out in self.assigns if out not in self.in_place]
        updated = list(dict.fromkeys(var.state for var, _ in self.assigns))
        return Record(self.parts, infos, stats, memory.slot_bytes,
                      [(tuple(feed_shapes[u]), graph.feeds[u].dtype.np.str) for u in feeds],
                      consts, scratch, launches, variables, fetch_refs, copies, updated, host_steps)

