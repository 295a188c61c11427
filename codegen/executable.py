"""One shape signature of a compiled program, as data (a Record) and ready to run (an Executable).

A Record says everything a run needs, with no closure and no lowered-graph object in it:
the translation units' sources, each launch's kernel, grid, block and arguments, the memory
plan's slot sizes, the constants, which user variables, feeds and fetches each argument and
result is, and the stats. program.py writes one per shape signature; plan_cache.py keeps it
on disk, so a new process with a warm cache skips passes, fusion and codegen. A kernel
argument is a numpy scalar, passed as it is, or a reference:

    ("slot", i)   pooled intermediate i of the memory plan      ("feed", i)  the i-th feed's buffer
    ("const", i)  constant i (uploaded once)                    ("var", op)  a user Variable
    ("scratch", i) zeroed scratch buffer i (ticket counters)    ("stream", ctype, op) op's run count

A fetch is one of those buffers, or ("feed_value", i) (the i-th fed array itself) or
("const_value", i) (constant i, not uploaded). A launch whose grid is None is a host step:
its block is the index of (function, shapes) in the Record's `host`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from graphflow.errors import GraphflowError
from graphflow.variables import uninitialized_error

from .launch import HostStep, LaunchTable


class DeviceArray:
    """A tensor value in device memory (variables keep theirs across runs)."""

    def __init__(self, driver, shape: tuple, dtype: np.dtype) -> None:
        self.driver, self.shape, self.dtype = driver, tuple(shape), np.dtype(dtype)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
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


@dataclass
class KernelInfo:
    """What one kernel does and what its launch costs (for the last shape signature run)."""
    name: str
    nodes: list
    grid: tuple
    block: tuple
    shared_bytes: int
    bytes_read: int
    bytes_written: int
    flops: int


@dataclass
class Record:
    """One shape signature of a program (see the module docstring)."""
    parts: list          # (translation unit source, [kernel names]) as compiled
    infos: list          # KernelInfo per kernel, in program order
    stats: dict
    slot_bytes: list     # the memory plan: bytes per pooled slot
    feeds: list          # per feed (the program's feed order): (shape, numpy dtype name)
    consts: list         # numpy values of the constants kernels read or fetches return
    scratch: list        # (elements, numpy dtype name) per scratch buffer, zeroed once
    launches: list       # (kernel index, grid, block, shared bytes, OS threads, [argument])
    variables: list      # (Variable op, its first reader op or None, shape, numpy dtype name)
    fetches: list        # per user fetch: None (an Operation), or (reference, shape, dtype name)
    copies: list         # (Variable op, reference, bytes): updates not done in place, after the run
    updated: list        # Variable ops a run assigns
    host: list = field(default_factory=list)  # (function, shapes per argument) per host step


def np_scalar(c_type: str, value):  # a kernel's scalar parameter, by its C type
    return {"int": np.int32, "long long": np.int64, "unsigned long long": np.uint64,
            "float": np.float32, "double": np.float64}[c_type](value)


class Executable:
    """A Record with its buffers allocated and its launches prepared on one driver.
    `feeds` and `fetches` are the user's tensors in the record's order."""

    def __init__(self, record: Record, driver, functions: dict, device: str,
                 feeds: list, fetches: list) -> None:
        self.record, self.driver, self.device = record, driver, device
        self._feed_tensors, self._fetch_tensors = feeds, fetches
        self._slots = [driver.mem_alloc(n) for n in record.slot_bytes]
        self._feeds = [DeviceArray(driver, shape, np.dtype(dtype)).alloc
                       for shape, dtype in record.feeds]
        self._consts: dict[int, DeviceArray] = {}
        self._scratch = []
        for count, dtype in record.scratch:
            buf = DeviceArray(driver, (count,), np.dtype(dtype))
            driver.memset_d8(buf.alloc, 0, buf.nbytes)  # a ticket counter starts at 0
            self._scratch.append(buf)
        self.variable_args: list = []  # (launch, argument, Variable op): bound when its buffer changes
        self.stream_args: list = []    # (launch, argument, C type, op): its run count, each run
        self.launches: list = []       # (kernel index, (fn, args, grid, ...) or a HostStep)
        entries = []
        for n, (k, grid, block, shared, threads, refs) in enumerate(record.launches):
            args = []
            for j, ref in enumerate(refs):
                kind = ref[0] if isinstance(ref, tuple) else None
                if kind == "var":
                    self.variable_args.append((n, j, ref[1]))
                elif kind == "stream":
                    self.stream_args.append((n, j, ref[1], ref[2]))
                args.append(None if kind in ("var", "stream") else self._alloc(ref))
            if grid is None:  # a host step: `block` is its index in record.host
                fn, shapes = record.host[block]
                entry = ("host", HostStep(fn, args, shapes))
            else:
                name = record.infos[k].name
                entry = ("kernel", (functions[name], args, grid, block, shared, threads))
            entries.append(entry)
            self.launches.append((k, entry[1]))
        self.sequence = LaunchTable(entries, driver.prepare, native_calls=device == "cpu")
        self._bound: dict = {}
        self.feed_views = self.fetch_copies = None
        self._fetch_views: dict[int, np.ndarray] = {}
        if hasattr(driver, "host_view"):
            view = driver.host_view
            self.feed_views = [(t, view(a, shape, np.dtype(dtype)))
                               for t, a, (shape, dtype) in zip(feeds, self._feeds, record.feeds)]
            self._fetch_views = {n: view(self._alloc(f[0]), f[1], np.dtype(f[2]))
                                 for n, f in enumerate(record.fetches)
                                 if f is not None and f[0][0] in ("slot", "feed")}
            if all(f is None or n in self._fetch_views for n, f in enumerate(record.fetches)):
                self.fetch_copies = [(fetches[n], v) for n, v in self._fetch_views.items()]

    def _alloc(self, ref, state: dict | None = None):
        """The device memory a reference names (a numpy scalar is passed as it is)."""
        if not isinstance(ref, tuple):
            return ref
        kind, i = ref[0], ref[1]
        if kind == "slot":
            return self._slots[i]
        if kind == "feed":
            return self._feeds[i]
        if kind == "scratch":
            return self._scratch[i].alloc
        if kind == "const":
            if i not in self._consts:
                self._consts[i] = DeviceArray.from_numpy(self.driver, self.record.consts[i])
            return self._consts[i].alloc
        if kind == "var" and state is not None:
            return state[i].alloc
        raise GraphflowError(f"internal error: no buffer for reference {ref!r}")

    # ---- running -----------------------------------------------------------------------
    def run(self, feeds: dict, session) -> tuple[dict, dict]:
        """Launch every kernel; return (fetched numpy values, variable updates)."""
        record, sequence = self.record, self.sequence
        state = self._variable_buffers(session) if record.variables else {}
        if self.feed_views is not None:  # the per-call floor: keep this path short
            for t, view in self.feed_views:
                view[...] = feeds[t]
        else:
            self._copy_feeds(feeds)
        for k, j, var in self.variable_args:
            alloc = state[var].alloc
            if self._bound.get((k, j)) is not alloc:
                sequence.set_arg(k, j, alloc)
                self._bound[(k, j)] = alloc
        for k, j, c_type, op in self.stream_args:
            sequence.set_arg(k, j, np_scalar(c_type, session.next_stream(op)))
        sequence.run()
        if self.fetch_copies is not None:  # every fetch has a view: copy them out
            values = {t: view.copy() for t, view in self.fetch_copies}
        else:
            values = self._fetch(feeds, state)
        return values, (self._updates(state) if record.updated else {})

    def run_timed(self, feeds: dict, session) -> tuple[dict, dict, list]:
        """`run`, but each launch on its own and timed (the driver's ``time_kernel``: the
        emulator's clock, CUDA events on the GPU): (values, updates, [(kernel index, seconds,
        bytes moved, flops)]). Slower than the prepared sequence; for profiling only."""
        state = self._variable_buffers(session)
        self._copy_feeds(feeds)
        bound = {(k, j): state[var].alloc for k, j, var in self.variable_args}
        for k, j, c_type, op in self.stream_args:
            bound[(k, j)] = np_scalar(c_type, session.next_stream(op))
        times = []
        for n, (index, launch) in enumerate(self.launches):
            if isinstance(launch, HostStep):  # a copy: the prepared table keeps its own bindings
                step = HostStep(launch.fn, [bound.get((n, j), a) for j, a in enumerate(launch.args)],
                                launch.shapes)
                start = time.perf_counter()
                step.run()
                seconds = time.perf_counter() - start
            else:
                fn, args, grid, block, shared, threads = launch
                args = [bound.get((n, j), a) for j, a in enumerate(args)]
                # on cpu, the OS threads the step itself gives this launch (one for small work)
                extra = {"threads": threads} if self.device == "cpu" else {}
                seconds = fn(*args, grid=grid, block=block, shared=shared, time_kernel=True, **extra)
            info = self.record.infos[index]
            times.append((index, float(seconds), info.bytes_read + info.bytes_written, info.flops))
        return self._fetch(feeds, state), self._updates(state), times

    def _copy_feeds(self, feeds: dict) -> None:
        if self.feed_views is not None:
            for t, view in self.feed_views:
                view[...] = feeds[t]
            return
        for t, alloc in zip(self._feed_tensors, self._feeds):
            value = feeds[t]
            if value.nbytes:
                self.driver.memcpy_htod(alloc, value)

    def _fetch(self, feeds: dict, state: dict) -> dict:
        values = {}
        for n, (t, fetch) in enumerate(zip(self._fetch_tensors, self.record.fetches)):
            if fetch is None:
                continue
            ref, shape, dtype = fetch
            if ref[0] == "feed_value":  # a fed tensor fetched as it is
                values[t] = feeds[self._feed_tensors[ref[1]]]
            elif ref[0] == "const_value":
                values[t] = np.array(self.record.consts[ref[1]]).reshape(shape)
            elif n in self._fetch_views:
                values[t] = self._fetch_views[n].copy()
            else:
                values[t] = read_buffer(self.driver, self._alloc(ref, state), shape, np.dtype(dtype))
        return values

    def _updates(self, state: dict) -> dict:
        """Variable op -> its buffer after the run. An assign not done in place is copied into
        the variable's buffer now that every read of the old value is done."""
        for var, ref, nbytes in self.record.copies:
            if nbytes:
                self.driver.memcpy_dtod(state[var].alloc, self._alloc(ref, state), nbytes)
        return {var: state[var] for var in self.record.updated}

    def _variable_buffers(self, session) -> dict:
        """Variable op -> its DeviceArray; an uninitialized one only as a plain Assign's target
        (then it gets a new buffer, kept when the run succeeds)."""
        state = {}
        for op, reader, shape, dtype in self.record.variables:
            value = session._values.get(op)
            if value is None:
                if reader is not None:
                    raise uninitialized_error(op, reader=reader)
                value = DeviceArray(self.driver, shape, np.dtype(dtype))
            state[op] = value
        return state
