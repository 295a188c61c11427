"""A compiled plan: one CUDA C translation unit for a lowered graph, and how to run it.

Compile (once per plan): fusion groups the lowered ops into kernels (codegen/fusion.py),
emitters write each kernel, the unit is compiled. Per shape signature (once per set of
feed shapes): every tensor's shape, the run-time checks, the memory plan, each launch's
grid and arguments, and the stats. A run then copies the feeds in, launches the table
and copies the fetches out. Host-only ops make no kernel: constants are uploaded once,
placeholders are fed, variables live in the Session (updated in place where the start-of-
run semantics allow), and reshape-like ops alias their input's buffer.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from graphflow.errors import CompileError, GraphflowError, ShapeError
from graphflow.ops.state import ASSIGN_OPS
from graphflow.passes import LGraph, LTensor
from graphflow.reference import infer_at_run_time
from graphflow.variables import uninitialized_error

from .combine import combine_kernels
from .devices import CompileFailed, prelude
from .dump import KernelInfo, dump_program
from .emit import load_all
from .emit import reduce as reduce_emit
from .emit.custom import explain_compile_failure
from .emit.elementwise import SCALAR
from .emit.fused import emit_fused
from .emit.movement import const_copy_pairs, emit_const_copies
from .fusion import ALIAS_OPS, HOST_OPS, alias_root, plan_groups
from .kernel import EmitContext, Kernel, numel
from .launch import HostStep, LaunchTable
from .memory import plan_memory

SCRATCH_DTYPES = {"float": np.float32, "double": np.float64, "int": np.int32,
                  "long long": np.int64, "unsigned int": np.uint32,
                  "unsigned long long": np.uint64, "bool": np.bool_}

__all__ = ["ALIAS_OPS", "HOST_OPS", "DeviceArray", "KernelInfo", "Program", "assemble"]


class DeviceArray:
    """A tensor value in device memory (variables keep theirs across runs)."""

    def __init__(self, driver, shape: tuple, dtype: np.dtype) -> None:
        self.driver, self.shape, self.dtype = driver, tuple(shape), np.dtype(dtype)
        self.nbytes = numel(self.shape) * self.dtype.itemsize
        self.alloc = driver.mem_alloc(max(self.nbytes, 1))

    @classmethod
    def from_numpy(cls, driver, array: np.ndarray) -> DeviceArray:
        out = cls(driver, array.shape, array.dtype)
        if out.nbytes:
            driver.memcpy_htod(out.alloc, np.ascontiguousarray(array))
        return out

    def get(self) -> np.ndarray:
        return read_buffer(self.driver, self.alloc, self.shape, self.dtype)

    def copy(self) -> DeviceArray:
        out = DeviceArray(self.driver, self.shape, self.dtype)
        if self.nbytes:
            self.driver.memcpy_dtod(out.alloc, self.alloc, self.nbytes)
        return out


def read_buffer(driver, alloc, shape, dtype) -> np.ndarray:
    if hasattr(driver, "host_view"):
        return driver.host_view(alloc, shape, dtype).copy()
    out = np.empty(shape, dtype)
    if out.nbytes:
        driver.memcpy_dtoh(out, alloc)
    return out


class RunEnv:
    """What launch-time parameters may read: concrete shapes and random streams."""

    def __init__(self, shapes: dict, session) -> None:
        self.shapes, self._session = shapes, session

    def next_stream(self, op) -> int:
        return self._session.next_stream(getattr(op, "state", None) or op)


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


@dataclass
class Table:
    """Everything about one shape signature that does not change from run to run."""
    shapes: dict
    buffers: dict        # tensor -> allocation (pooled intermediates and feeds)
    sequence: object     # the driver's prepared launch sequence
    variable_args: list  # (launch, argument, Variable LOp): bound when its buffer changes
    scalar_args: list    # (launch, argument, Param): computed each run (random streams)
    infos: list
    stats: dict
    bound: dict = None   # (launch, argument) -> allocation bound now
    feed_views: list = None  # (user tensor, numpy view of its buffer) where the driver has views
    fetch_views: dict = None  # fetched tensor -> numpy view of its (fixed) buffer, likewise
    launches: list = None  # per entry: (kernel index, (function, args, grid, block, shared,
    #                        OS threads) or a HostStep), for run_timed
    fetch_copies: list = None  # (user tensor, view) for every fetch, when all have views


SMALL_WORK = 1 << 20  # flops + bytes under which a launch runs on one OS thread


class Program:
    """The compiled form of one lowered graph on one device."""

    def __init__(self, graph: LGraph, user_fetches: list, device: str, driver,
                 fuse: bool = True) -> None:
        self.device, self.driver, self.graph = device, driver, graph
        self._user_fetches = user_fetches
        self.groups, inline, self.kernels = emit_kernels(graph, device, fuse)
        self.source = assemble(self.kernels)
        self._in_place = self._plan_in_place()
        self._assigns = [(alias_root(op.inputs[0]).op, op.outputs[0])  # (variable, new value)
                         for op in graph.ops if op.type in ASSIGN_OPS]
        self._variables = [op for op in graph.ops if op.type == "Variable"]
        self._readers = {}  # Variable LOp -> the first op reading its start-of-run value
        for op in graph.ops:
            if op.type not in ALIAS_OPS:
                for j, t in enumerate(op.inputs):
                    if self.root(t).op.type == "Variable" and not (op.type == "Assign" and j == 0):
                        self._readers.setdefault(self.root(t).op, op)
        for t in graph.live_outputs():
            if self.root(t).op.type == "Variable":
                self._readers.setdefault(self.root(t).op, self.root(t).op)
        self._consts: dict = {}
        self._tables: dict[tuple, Table] = {}
        self._scratch: dict = {}
        self.last_stats: dict = {}
        self.infos: list[KernelInfo] = []
        parts = compile_parts(self.kernels, getattr(driver, "compile_jobs", lambda: 1)())
        try:
            if not parts[0]:  # host steps only (an initializer of constants): nothing to compile
                modules = []
            elif len(parts) == 1:
                modules = [driver.SourceModule(self.source, no_extern_c=True)]
            else:  # g++ runs in subprocesses: the threads only wait
                with ThreadPoolExecutor(len(parts)) as pool:
                    modules = list(pool.map(
                        lambda part: driver.SourceModule(assemble(part), no_extern_c=True), parts))
        except CompileFailed as e:
            raise CompileError(explain_compile_failure(e)) from None  # custom ops: user's lines
        module_of = {k.name: m for part, m in zip(parts, modules) for k in part}
        self._functions = [None if k.host else module_of[k.name].get_function(k.name)
                           for k in self.kernels]
        # kernels the emulator must run as fibers (a barrier or shuffle it cannot loop around)
        self.fiber_kernels = [k.name for k, fn in zip(self.kernels, self._functions)
                              if getattr(fn, "fibers", False)]
        dump_dir = os.environ.get("GRAPHFLOW_DUMP_DIR")
        if dump_dir:
            self.dump(os.path.join(dump_dir, self.dump_name()))

    @staticmethod
    def root(t: LTensor) -> LTensor:
        """The tensor that owns t's buffer (reshape-like ops alias their input's)."""
        return alias_root(t)

    def dump_name(self) -> str:
        """A folder name for $GRAPHFLOW_DUMP_DIR: the first fetch and a short hash of the code."""
        first = next((t.op.name for t in self.graph.fetches if t is not None),
                     self.graph.targets[0].name if self.graph.targets else "graph")
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", first)[:40]
        return f"{tag}_{hashlib.sha256(self.source.encode()).hexdigest()[:8]}"

    # ---- variables updated in place --------------------------------------------------
    def _plan_in_place(self) -> dict:
        """Assign output -> Variable LOp, where the kernel may write the variable's own buffer:
        one assign for it in the plan, not fetched, and no later kernel reads its old value."""
        assigns: dict = {}
        for op in self.graph.ops:
            if op.type in ASSIGN_OPS:
                assigns.setdefault(alias_root(op.inputs[0]).op, []).append(op)
        fetched = {self.root(t) for t in self.graph.live_outputs()}
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
            later_read = any(self.root(p.tensor) is var.outputs[0]
                             for kernel in self.kernels[k_write + 1:] for p in kernel.params
                             if p.kind == "in")
            if not later_read:
                in_place[out] = var
        return in_place

    # ---- shapes --------------------------------------------------------------------
    def shapes_for(self, feed_shapes: dict) -> dict:
        """Concrete shapes of every tensor for these feed shapes (each op's shape rule)."""
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

    # ---- the launch table ------------------------------------------------------------
    def _table(self, feeds: dict) -> Table:
        key = tuple([feeds[t].shape for t in self.graph.feeds])
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = self._build_table(feeds, key)
        return table

    def _build_table(self, feeds: dict, key: tuple) -> Table:
        shapes = self.shapes_for({t: a.shape for t, a in feeds.items()})
        for kernel in self.kernels:  # every run-time check before the first launch
            for check in kernel.checks:
                problem = check(shapes)
                if problem:
                    raise ShapeError(f"{kernel.nodes[0].describe()}: {problem}")
        host = {t for t in shapes if t.op.type in HOST_OPS}
        pooled = {self.root(p.tensor) for k in self.kernels for p in k.params
                  if p.kind == "out" and p.tensor not in self._in_place} - host
        keep = {self.root(t) for t in self.graph.live_outputs()}
        # an update not done in place is copied into its variable after the last kernel
        keep |= {self.root(out) for _, out in self._assigns if out not in self._in_place}
        memory = plan_memory(self.kernels, shapes, self.root, pooled, keep)
        slots = [self.driver.mem_alloc(n) for n in memory.slot_bytes]
        buffers = {t: slots[s] for t, s in memory.slot_of.items()}
        for user_t, t in self.graph.feeds.items():
            buffers[t] = self.driver.mem_alloc(max(1, feeds[user_t].nbytes))
        entries, infos, variable_args, scalar_args, launches = [], [], [], [], []
        totals = {"flops": 0, "bytes_moved": 0, "launches": 0}
        scratch_bytes = 0
        threads = self.driver.thread_count()
        for kernel, fn in zip(self.kernels, self._functions):
            launch = kernel.launch(shapes, self.device)
            out_sizes = [numel(shapes[p.tensor]) for p in kernel.params if p.kind == "out"]
            read, written = kernel.bytes_moved(shapes)
            flops = int(kernel.flops(shapes))
            infos.append(KernelInfo(kernel.name, [o.name for op in kernel.nodes for o in op.origins],
                                    tuple(launch.grid), tuple(launch.block), launch.shared,
                                    read, written, flops))
            totals["flops"] += flops
            totals["bytes_moved"] += read + written
            if not ((not out_sizes or max(out_sizes) > 0) and kernel.active(shapes)):
                continue
            args = []
            for j, p in enumerate(kernel.params):
                if p.kind == "dim":
                    args.append(np.int64(shapes[p.tensor][p.axis]))
                elif p.kind == "scratch":
                    buf = self._scratch_buffer(p, shapes, key)
                    scratch_bytes += buf.nbytes
                    args.append(buf.alloc)
                elif p.kind == "scalar" and p.per_run:
                    scalar_args.append((len(entries), j, p))
                    args.append(None)
                elif p.kind == "scalar":
                    args.append(_np_scalar(p.ctype, p.value(RunEnv(shapes, None))))
                else:
                    t = self.root(p.tensor)
                    if t in self._in_place or t.op.type == "Variable":
                        variable_args.append((len(entries), j, self._in_place.get(t, t.op)))
                        args.append(None)
                    elif t.op.type == "Const":
                        args.append(self._const(t))
                    else:
                        args.append(buffers[t])
            if kernel.host is not None:
                entries.append(("host", HostStep(kernel.host, args, shapes)))
                launches.append((len(infos) - 1, entries[-1][1]))
                continue
            small = flops + read + written < SMALL_WORK
            entries.append(("kernel", (fn, args, launch.grid, launch.block, launch.shared,
                                       1 if small else threads)))
            launches.append((len(infos) - 1, entries[-1][1]))
            totals["launches"] += 1
        stats = {"kernels": len(self.kernels), "peak_memory_bytes": memory.peak + scratch_bytes,
                 "peak_memory_bound": memory.bound, **totals}
        views, fetch_views = None, {}
        if hasattr(self.driver, "host_view"):
            view = self.driver.host_view
            views = [(user_t, view(buffers[t], feeds[user_t].shape, t.dtype.np))
                     for user_t, t in self.graph.feeds.items()]
            fetch_views = {t: view(buffers[self.root(t)], shapes[t], t.dtype.np)
                           for t in self.graph.live_outputs()
                           if self.root(t) in buffers and self.root(t) not in self._in_place}
        launch_table = LaunchTable(entries, self.driver.prepare, native_calls=self.device == "cpu")
        table = Table(shapes, buffers, launch_table, variable_args, scalar_args, infos, stats, {},
                      views, fetch_views, launches)
        pairs = list(zip(self._user_fetches, self.graph.fetches))
        if all(t is None or t in fetch_views for _, t in pairs):
            table.fetch_copies = [(user_t, fetch_views[t]) for user_t, t in pairs if t is not None]
        return table

    def _scratch_buffer(self, p, shapes: dict, key) -> DeviceArray:
        slot = (key, p.slot or p.name, p.value)
        if slot not in self._scratch:
            if p.ctype not in SCRATCH_DTYPES:
                raise CompileError(f"scratch buffer {p.name} has unsupported type {p.ctype}")
            count = max(1, int(p.value(shapes)))
            buf = DeviceArray(self.driver, (count,), SCRATCH_DTYPES[p.ctype])
            self.driver.memset_d8(buf.alloc, 0, buf.nbytes)  # a ticket counter starts at 0
            self._scratch[slot] = buf
        return self._scratch[slot]

    def _const(self, t: LTensor):
        if t not in self._consts:
            self._consts[t] = DeviceArray.from_numpy(self.driver, t.op.attrs["value"])
        return self._consts[t].alloc

    # ---- running -----------------------------------------------------------------------
    def run(self, feeds: dict, session) -> tuple[dict, dict]:
        """Launch every kernel; return (fetched numpy values, variable updates)."""
        table = self._tables.get(tuple([feeds[t].shape for t in self.graph.feeds]))
        if table is None:
            table = self._table(feeds)
        state = self._variable_buffers(session) if self._variables else {}
        if table.feed_views is not None:
            for user_t, view in table.feed_views:
                view[...] = feeds[user_t]
        else:
            for user_t, t in self.graph.feeds.items():
                value = feeds[user_t]
                if value.nbytes:
                    self.driver.memcpy_htod(table.buffers[t], value)
        sequence = table.sequence
        for k, j, var in table.variable_args:
            alloc = state[var].alloc
            if table.bound.get((k, j)) is not alloc:
                sequence.set_arg(k, j, alloc)
                table.bound[(k, j)] = alloc
        if table.scalar_args:
            env = RunEnv(table.shapes, session)
            for k, j, p in table.scalar_args:
                sequence.set_arg(k, j, _np_scalar(p.ctype, p.value(env)))
        sequence.run()
        self.infos = table.infos
        self.last_stats = table.stats
        if table.fetch_copies is not None:  # every fetch has a view: copy them out
            return {user_t: view.copy() for user_t, view in table.fetch_copies}, \
                (self._updates(table, state) if self._assigns else {})
        return self._fetch(feeds, table, state), self._updates(table, state)

    def run_timed(self, feeds: dict, session) -> tuple[dict, dict, list]:
        """`run`, but each launch on its own and timed (the driver's ``time_kernel``: the
        emulator's clock, CUDA events on the GPU): (values, updates, [(kernel index, seconds,
        bytes moved, flops)]). Slower than `run`'s prepared sequence; for profiling only."""
        table = self._table(feeds)
        state = self._variable_buffers(session)
        for user_t, t in self.graph.feeds.items():
            if feeds[user_t].nbytes:
                self.driver.memcpy_htod(table.buffers[t], feeds[user_t])
        bound = {(k, j): state[var].alloc for k, j, var in table.variable_args}
        if table.scalar_args:
            env = RunEnv(table.shapes, session)
            for k, j, p in table.scalar_args:
                bound[(k, j)] = _np_scalar(p.ctype, p.value(env))
        times = []
        for k, (index, launch) in enumerate(table.launches):
            if isinstance(launch, HostStep):  # a copy: the prepared table keeps its own bindings
                step = HostStep(launch.fn, [bound.get((k, j), a) for j, a in enumerate(launch.args)],
                                launch.shapes)
                start = time.perf_counter()
                step.run()
                seconds = time.perf_counter() - start
            else:
                fn, args, grid, block, shared, threads = launch
                args = [bound.get((k, j), a) for j, a in enumerate(args)]
                # on cpu, the OS threads the step itself gives this launch (one for small work)
                extra = {"threads": threads} if self.device == "cpu" else {}
                seconds = fn(*args, grid=grid, block=block, shared=shared, time_kernel=True, **extra)
            info = table.infos[index]
            times.append((index, float(seconds), info.bytes_read + info.bytes_written, info.flops))
        self.infos = table.infos
        self.last_stats = table.stats
        return self._fetch(feeds, table, state), self._updates(table, state), times

    def _buffer(self, t: LTensor, table: Table, state: dict):
        t = self.root(t)
        if t in self._in_place:
            return state[self._in_place[t]].alloc
        if t in table.buffers:
            return table.buffers[t]
        if t.op.type == "Const":
            return self._const(t)
        if t.op.type == "Variable":
            return state[t.op].alloc
        raise GraphflowError(f"internal error: no buffer for {t.name}")

    def _fetch(self, feeds: dict, table: Table, state: dict) -> dict:
        values = {}
        for user_t, t in zip(self._user_fetches, self.graph.fetches):
            if t is None:
                continue
            if t.op.type == "Placeholder":
                values[user_t] = feeds[t.op.state.outputs[0]]
            elif t.op.type == "Const":
                values[user_t] = np.array(t.op.attrs["value"])
            elif t in table.fetch_views:
                values[user_t] = table.fetch_views[t].copy()
            else:
                values[user_t] = read_buffer(self.driver, self._buffer(t, table, state),
                                             table.shapes[t], t.dtype.np)
        return values

    def _updates(self, table: Table, state: dict) -> dict:
        """Variable op -> its buffer after the run. An assign not done in place is copied into
        the variable's buffer now that every read of the old value is done."""
        updates = {}
        for var, out in self._assigns:
            target = state[var]
            if out not in self._in_place and target.nbytes:
                self.driver.memcpy_dtod(target.alloc, self._buffer(out, table, state), target.nbytes)
            updates[var.state] = target
        return updates

    def _variable_buffers(self, session) -> dict:
        """Variable LOp -> its DeviceArray; an uninitialized one only as a plain Assign's target
        (then it gets a new buffer, kept when the run succeeds)."""
        state = {}
        for op in self._variables:
            value = session._values.get(op.state)
            if value is None:
                if op in self._readers:
                    raise uninitialized_error(op.state, reader=self._readers[op].origins[0])
                value = DeviceArray(self.driver, op.attrs["shape"], op.attrs["dtype"].np)
            state[op] = value
        return state

    # ---- seeing the kernels ----------------------------------------------------------------
    def kernel_infos(self) -> list[KernelInfo]:
        if self.infos:
            return self.infos
        return [KernelInfo(k.name, [o.name for op in k.nodes for o in op.origins], (), (), 0, 0, 0, 0)
                for k in self.kernels]

    def dump(self, directory: str) -> str:
        return dump_program(self, directory)


def _np_scalar(c_type: str, value):
    return {"int": np.int32, "long long": np.int64, "unsigned long long": np.uint64,
            "float": np.float32, "double": np.float64}[c_type](value)
