"""A compiled plan: one CUDA C translation unit for the whole graph, and how to run it.

Lowering walks the plan's ops in order. Host-only ops make no kernel: constants
are uploaded once, placeholders are fed, variables live in the Session, and
reshape-like ops alias their input's buffer. Every other op asks its emitter
for kernels. At run time the concrete shapes (from the feeds) fill in the
kernels' dim parameters, so a new batch size reuses the compiled module.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

import numpy as np

from graphflow.errors import CompileError, GraphflowError, ShapeError
from graphflow.graph import Operation, Tensor
from graphflow.ops.state import ASSIGN_OPS
from graphflow.reference import infer_at_run_time

from .devices import CompileFailed, prelude
from .emit import load_all
from .kernel import EmitContext, Kernel, numel

SCRATCH_DTYPES = {"float": np.float32, "double": np.float64, "int": np.int32,
                  "long long": np.int64, "unsigned int": np.uint32,
                  "unsigned long long": np.uint64, "bool": np.bool_}
ALIAS_OPS = ("Identity", "StopGradient", "Reshape", "ReshapeLike", "ExpandDims", "Squeeze")
HOST_OPS = ("Const", "Placeholder", "Variable", "NoOp")


@dataclass
class KernelInfo:
    """What one kernel does and what its last launch cost."""
    name: str
    nodes: list
    grid: tuple
    block: tuple
    shared_bytes: int
    bytes_read: int
    bytes_written: int
    flops: int


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
        out = np.empty(self.shape, self.dtype)
        if self.nbytes:
            self.driver.memcpy_dtoh(out, self.alloc)
        return out

    def copy(self) -> DeviceArray:
        out = DeviceArray(self.driver, self.shape, self.dtype)
        if self.nbytes:
            self.driver.memcpy_dtod(out.alloc, self.alloc, self.nbytes)
        return out


class RunEnv:
    """What launch-time parameters may read: concrete shapes and random streams."""

    def __init__(self, shapes: dict, session) -> None:
        self.shapes, self._session = shapes, session

    def next_stream(self, op: Operation) -> int:
        return self._session.next_stream(op)


def assemble(kernels: list[Kernel]) -> str:
    """The translation unit: the CUDA prelude, then every kernel with its helpers once."""
    parts = [f"// graphflow translation unit: {len(kernels)} kernels\n", prelude("cuda")]
    seen = set()
    for k in kernels:
        for snippet in k.helpers:
            if snippet.strip() and snippet not in seen:
                seen.add(snippet)
                parts.append(snippet.strip() + "\n")
        parts.append(Kernel(k.name, k.nodes, k.params, k.body, k.launch, k.flops, k.comment)
                     .source)
    return "\n".join(parts)


def standalone_source(kernel: Kernel) -> str:
    """One kernel as a .cu file that compiles by itself."""
    return prelude("cuda") + "\n" + kernel.source


class Program:
    """The compiled form of one plan on one device."""

    def __init__(self, order: list[Operation], feeds: tuple, fetches: list, device: str,
                 driver) -> None:
        self.device, self.driver = device, driver
        self.order, self.feeds, self.fetches = order, feeds, fetches
        self._fed = set(feeds)
        emitters = load_all()
        ctx = EmitContext()
        self._alias: dict[Tensor, Tensor] = {}
        for op in order:
            if op.outputs and op.outputs[0] in self._fed:
                continue
            if op.type in HOST_OPS:
                continue
            if op.type in ALIAS_OPS:
                self._alias[op.outputs[0]] = self._root(op.inputs[0])
                continue
            for t in list(op.inputs) + op.outputs:
                if t.dtype.name == "float16":
                    raise CompileError(f"{op.describe()}: float16 kernels are not supported yet")
            emit = emitters.get(op.type)
            if emit is None:
                raise CompileError(f"no CUDA emitter for {op.describe()}")
            emit(ctx, op)
        self.kernels = ctx.kernels
        self.source = assemble(self.kernels)
        self._consts: dict[Tensor, DeviceArray] = {}
        self._buffers: dict[tuple, dict] = {}
        self._scratch_buffers: dict[tuple, DeviceArray] = {}
        self._shape_cache: dict[tuple, dict] = {}
        self.infos: list[KernelInfo] = []
        self.last_stats: dict = {}
        try:
            self.module = driver.SourceModule(self.source, no_extern_c=True)
        except CompileFailed as e:
            raise CompileError(f"{e}\n(full source: {e.source_path})") from None
        self._functions = [self.module.get_function(k.name) for k in self.kernels]
        dump_dir = os.environ.get("GRAPHFLOW_DUMP_DIR")
        if dump_dir:
            self.dump(dump_dir)

    def _root(self, t: Tensor) -> Tensor:
        while t in self._alias:
            t = self._alias[t]
        return t

    # ---- shapes --------------------------------------------------------------------
    def shapes_for(self, feed_shapes: dict) -> dict:
        """Concrete shapes of every tensor for these feed shapes (each op's shape rule)."""
        key = tuple(feed_shapes[t] for t in self.feeds)
        cached = self._shape_cache.get(key)
        if cached is not None:
            return cached
        shapes = dict(feed_shapes)
        for op in self.order:
            if not op.outputs or op.outputs[0] in shapes:
                continue
            out = op.outputs[0]
            if op.type in ("Const", "Variable", "Placeholder"):
                shapes[out] = tuple(out.shape)
                continue
            shapes[out] = tuple(infer_at_run_time(op, [shapes[t] for t in op.inputs]).shape)
        self._shape_cache[key] = shapes
        return shapes

    # ---- memory ------------------------------------------------------------------------
    def _buffers_for(self, shapes: dict, key: tuple) -> dict:
        """Device buffers for every kernel output and feed, one set per shape signature."""
        if key not in self._buffers:
            bufs = {}
            for t in self.feeds:
                bufs[t] = DeviceArray(self.driver, shapes[t], t.dtype.np)
            for k in self.kernels:
                for p in k.params:
                    if p.kind == "out" and p.tensor not in bufs:
                        bufs[p.tensor] = DeviceArray(self.driver, shapes[p.tensor],
                                                     p.tensor.dtype.np)
            self._buffers = {key: bufs}  # keep one shape signature's buffers alive
            self._scratch_buffers = {}
        return self._buffers[key]

    def _scratch(self, p, shapes: dict, key: tuple) -> DeviceArray:
        """A temporary buffer, kept per shape signature. Kernels of one op share it by naming
        the same key with the same `elements` function (a two-pass reduction's partials)."""
        slot = (key, p.name, p.value)
        if slot not in self._scratch_buffers:
            if p.ctype not in SCRATCH_DTYPES:
                raise CompileError(f"scratch buffer {p.name} has unsupported type {p.ctype}")
            count = max(1, int(p.value(shapes)))
            self._scratch_buffers[slot] = DeviceArray(self.driver, (count,),
                                                      SCRATCH_DTYPES[p.ctype])
        return self._scratch_buffers[slot]

    def _const(self, t: Tensor) -> DeviceArray:
        if t not in self._consts:
            self._consts[t] = DeviceArray.from_numpy(self.driver, t.op.attrs["value"])
        return self._consts[t]

    # ---- running -----------------------------------------------------------------------
    def run(self, feeds: dict, session) -> tuple[dict, dict]:
        """Launch every kernel; return (fetched numpy values, variable updates)."""
        shapes = self.shapes_for({t: a.shape for t, a in feeds.items()})
        key = tuple(shapes[t] for t in self.feeds)
        bufs = self._buffers_for(shapes, key)
        for t, value in feeds.items():
            if bufs[t].nbytes:
                self.driver.memcpy_htod(bufs[t].alloc, value)

        def buffer(t: Tensor) -> DeviceArray:
            t = self._root(t)
            if t in bufs:
                return bufs[t]
            if t.op.type == "Const":
                return self._const(t)
            if t.op.type == "Variable":
                return session._read_variable_op(t.op)
            raise GraphflowError(f"internal error: no buffer for {t.name}")

        env = RunEnv(shapes, session)
        infos, totals = [], {"flops": 0, "bytes_moved": 0}
        for kernel, fn in zip(self.kernels, self._functions):
            for check in kernel.checks:
                problem = check(shapes)
                if problem:
                    raise ShapeError(f"{kernel.nodes[0].describe()}: {problem}")
            launch = kernel.launch(shapes, self.device)
            out_sizes = [numel(shapes[p.tensor]) for p in kernel.params if p.kind == "out"]
            args = []
            for p in kernel.params:
                if p.kind in ("in", "out"):
                    args.append(buffer(p.tensor).alloc)
                elif p.kind == "dim":
                    args.append(np.int64(shapes[p.tensor][p.axis]))
                elif p.kind == "scalar":
                    args.append(_np_scalar(p.ctype, p.value(env)))
                else:
                    args.append(self._scratch(p, shapes, key).alloc)
            if not out_sizes or max(out_sizes) > 0:
                fn(*args, grid=launch.grid, block=launch.block, shared=launch.shared)
            read, written = kernel.bytes_moved(shapes)
            flops = int(kernel.flops(shapes))
            infos.append(KernelInfo(kernel.name, [op.name for op in kernel.nodes],
                                    tuple(launch.grid), tuple(launch.block), launch.shared,
                                    read, written, flops))
            totals["flops"] += flops
            totals["bytes_moved"] += read + written
        self.infos = infos
        values = {}
        for x in self.fetches:
            if isinstance(x, Tensor):
                values[x] = feeds[x] if x in feeds else buffer(x).get().reshape(shapes[x])
        updates = {op.inputs[0].op: buffer(op.outputs[0]).copy()
                   for op in self.order if op.type in ASSIGN_OPS}
        peak = sum(b.nbytes for b in list(bufs.values()) + list(self._scratch_buffers.values()))
        self.last_stats = {"kernels": len(self.kernels), "launches": len(self.kernels),
                           "peak_memory_bytes": peak, **totals}
        return values, updates

    # ---- seeing the kernels ----------------------------------------------------------------
    def kernel_infos(self) -> list[KernelInfo]:
        if self.infos:
            return self.infos
        return [KernelInfo(k.name, [op.name for op in k.nodes], (), (), 0, 0, 0, 0)
                for k in self.kernels]

    def dump(self, directory: str) -> str:
        """Write the translation unit, one standalone .cu per kernel, and manifest.json."""
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "graph.cu"), "w") as f:
            f.write(self.source)
        entries = []
        for kernel, info in zip(self.kernels, self.kernel_infos()):
            path = os.path.join(directory, f"{kernel.name}.cu")
            with open(path, "w") as f:
                f.write(standalone_source(kernel))
            entry = asdict(info)
            entry["file"] = os.path.basename(path)
            entries.append(entry)
        usage = ptxas_usage(os.path.join(directory, "graph.cu"))
        for entry in entries:
            if entry["name"] in usage:
                entry["ptxas"] = usage[entry["name"]]
        manifest = {"device": self.device, "translation_unit": "graph.cu", "kernels": entries}
        with open(os.path.join(directory, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2, default=list)
        return directory


def _np_scalar(c_type: str, value):
    return {"int": np.int32, "long long": np.int64, "unsigned long long": np.uint64,
            "float": np.float32, "double": np.float64}[c_type](value)


def ptxas_usage(cu_path: str, arch: str = "sm_80") -> dict:
    """Registers, spills and shared memory per kernel from ptxas, when nvcc is on PATH."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return {}
    result = subprocess.run([nvcc, f"-arch={arch}", "-c", "-o", os.devnull, "--resource-usage",
                             cu_path], capture_output=True, text=True)
    return parse_ptxas(result.stderr + result.stdout)


def parse_ptxas(text: str) -> dict:
    import re
    usage, current = {}, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'|Function properties for (\w+)", line)
        if m:
            current = m.group(1) or m.group(2)
            usage.setdefault(current, {})
            continue
        if current is None:
            continue
        spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if spill:
            usage[current]["spill_stores"] = int(spill.group(1))
            usage[current]["spill_loads"] = int(spill.group(2))
        regs = re.search(r"Used (\d+) registers", line)
        if regs:
            usage[current]["registers"] = int(regs.group(1))
            smem = re.search(r"(\d+) bytes smem", line)
            usage[current]["shared_bytes"] = int(smem.group(1)) if smem else 0
    return usage
