"""Session: validates feeds, prunes the graph to what the fetches need, runs it.

A plan (the ops a set of fetches needs, given a set of feeds) is built once
per (fetches, feeds) and reused, so a training loop compiles once. Variable
values live in the Session: two Sessions on one graph never share state.
"""
from __future__ import annotations

import contextlib
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import profiling, reference
from .errors import DeviceError, FeedError, GraphflowError, NotSupportedError
from .graph import Graph, Operation, Tensor, get_default_graph
from .variables import uninitialized_error

DEVICES = ("cuda", "cpu", "reference")
GROWTH_WARNING_RUNS = 5  # consecutive runs that each added ops before we warn


class GraphGrowthWarning(UserWarning):
    """The graph grew between Session.run calls: ops are being built inside a loop."""


def resolve_device(device: str | None) -> str:
    """The device name: the argument, else $GRAPHFLOW_DEVICE, else 'cuda' when a GPU and
    PyCUDA are usable, else 'cpu' (the same CUDA C, run by the emulator)."""
    name = device or os.environ.get("GRAPHFLOW_DEVICE")
    if name is None:
        try:
            _driver("cuda")
            return "cuda"
        except DeviceError:
            return "cpu"
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name != "reference":
        _driver(name)
    return name


def _driver(name: str):
    """The codegen driver for a device; DeviceError says what is missing."""
    from graphflow.codegen.devices import DeviceUnavailable, get_driver
    try:
        return get_driver(name)
    except DeviceUnavailable as e:
        raise DeviceError(f"device {name!r} is unavailable: {e}") from None


# ---- fetch structures ----------------------------------------------------------
def _flatten(fetches, graph: Graph, out: list) -> Any:
    """Collect leaf fetches into `out`; return a template to rebuild the structure."""
    if isinstance(fetches, dict):
        return type(fetches), [(k, _flatten(v, graph, out)) for k, v in fetches.items()]
    if isinstance(fetches, list | tuple):
        return type(fetches), [_flatten(v, graph, out) for v in fetches]
    out.append(_resolve_fetch(fetches, graph))
    return len(out) - 1


def _rebuild(template, values: list) -> Any:
    if isinstance(template, int):
        return values[template]
    kind, items = template
    if kind is dict or issubclass(kind, dict):
        return kind((k, _rebuild(v, values)) for k, v in items)
    built = [_rebuild(v, values) for v in items]
    if hasattr(kind, "_fields"):  # namedtuple
        return kind(*built)
    return kind(built)


def _resolve_fetch(item, graph: Graph) -> Tensor | Operation:
    if isinstance(item, str):
        try:
            return graph.get_tensor_by_name(item) if ":" in item else \
                graph.get_operation_by_name(item)
        except KeyError as e:
            raise GraphflowError(f"cannot fetch {item!r}: {e.args[0]}") from None
    if isinstance(item, Tensor | Operation):
        if item.graph is not graph:
            raise GraphflowError(f"cannot fetch {item.name}: it belongs to another graph than "
                                 "this Session's")
        return item
    raise TypeError(f"cannot fetch {item!r}: fetches are Tensors, Operations, their names, "
                    "or lists/tuples/dicts of them")


def _check_run_arguments(options, run_metadata) -> None:
    """TF1's run(options=, run_metadata=): gf.RunOptions / gf.RunMetadata or None; anything else
    is refused rather than silently ignored."""
    if options is not None and not isinstance(options, profiling.RunOptions):
        raise NotSupportedError(f"Session.run(options={options!r}): graphflow takes "
                                "gf.RunOptions(trace_level=...) or None here")
    if run_metadata is not None and not isinstance(run_metadata, profiling.RunMetadata):
        raise NotSupportedError(f"Session.run(run_metadata={run_metadata!r}): pass a "
                                "gf.RunMetadata() (it receives the run's per-kernel profile) or None")


# ---- feeds ------------------------------------------------------------------------
def _resolve_feed_key(key, graph: Graph) -> Tensor:
    if isinstance(key, str):
        try:
            return graph.get_tensor_by_name(key if ":" in key else key + ":0")
        except KeyError:
            raise FeedError(f"feed_dict key {key!r} names no tensor in this graph") from None
    if not isinstance(key, Tensor):
        raise FeedError(f"feed_dict key {key!r} is not a tensor (feed placeholders, e.g. "
                        "{x: batch})")
    if key.graph is not graph:
        raise FeedError(f"feed_dict key {key.name} (defined at {key.op.site}) belongs to another "
                        "graph than this Session's")
    return key


def _what(t: Tensor) -> str:
    kind = "placeholder" if t.op.type == "Placeholder" else "tensor"
    return f"{kind} '{t.op.name}' (defined at {t.op.site})"


def convert_feed(t: Tensor, value) -> np.ndarray:
    """Check a fed value against its tensor's dtype and static shape; numpy 'same_kind'."""
    if type(value) is np.ndarray and value.dtype is t.dtype.np and value.flags.c_contiguous \
            and value.ndim == len(t.shape) \
            and all(d is None or d == n for d, n in zip(t.shape, value.shape)):
        return value  # the common case, already right: no copy, no further checks
    if isinstance(value, Tensor):
        raise FeedError(f"feed for {_what(t)} is the symbolic tensor {value.name}; feed numpy "
                        "values (run the tensor first if you need its value)")
    try:
        arr = np.asarray(value)
    except ValueError as e:
        raise FeedError(f"feed for {_what(t)} is not a rectangular array: {e}") from None
    target = t.dtype.np
    if arr.dtype.kind not in "biuf" or not (
            arr.dtype == target or np.can_cast(arr.dtype, target, "same_kind")):
        raise FeedError(f"feed for {_what(t)} has dtype {arr.dtype} but it expects "
                        f"{t.dtype.name} (conversions must keep the kind: float64 -> float32 and "
                        "int -> float are fine, float -> int is not)")
    shape = tuple(t.shape)
    if arr.ndim != len(shape) or any(d is not None and d != n for d, n in zip(shape, arr.shape)):
        expected = "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"
        raise FeedError(f"feed for {_what(t)} has shape {list(arr.shape)} but it expects "
                        f"{expected}")
    converted = np.asarray(arr, dtype=target, order="C")
    if arr.dtype.kind in "iu" and t.dtype.is_integer and not np.array_equal(converted, arr):
        raise FeedError(f"feed for {_what(t)} has values that do not fit in {t.dtype.name}")
    return converted


@dataclass
class Plan:
    """The compiled form of one (fetches, feeds) pair."""
    fetches: list
    feeds: tuple
    order: list
    stats: dict = field(default_factory=dict)
    program: Any = None  # codegen.program.Program on 'cpu' and 'cuda'
    recorder: Any = None  # profiling.Recorder of every call, with $GRAPHFLOW_PROFILE


class Session:
    """Runs graphs. `device`: 'cuda' | 'cpu' | 'reference' (see resolve_device)."""

    def __init__(self, graph: Graph | None = None, device: str | None = None,
                 optimize: bool = True) -> None:
        self.graph = graph or get_default_graph()
        self.device = resolve_device(device)
        from .passes import selected_passes
        selected_passes(optimize)  # an unknown pass name fails here, where it was given
        self.optimize = optimize
        self._values: dict[Operation, np.ndarray] = {}
        self._streams: dict[Operation, int] = {}
        self._plans: dict[tuple, Plan] = {}
        self.compile_count = 0
        self._closed = False
        self._last_version: int | None = None
        self._growth_streak = 0
        self._warned_growth = False

    # ---- running ----------------------------------------------------------------
    def run(self, fetches, feed_dict: dict | None = None, options=None, run_metadata=None):
        """Evaluate fetches (nested lists/tuples/dicts of Tensors/Operations) and apply updates.
        `run_metadata` (a gf.RunMetadata) receives this run's per-kernel profile; `options` is
        None or a gf.RunOptions (TF1's; its trace level changes nothing)."""
        self._check_open()
        _check_run_arguments(options, run_metadata)
        self._watch_growth()
        leaves: list = []
        template = _flatten(fetches, self.graph, leaves)
        feeds = {}
        for key, value in (feed_dict or {}).items():
            t = _resolve_feed_key(key, self.graph)
            feeds[t] = convert_feed(t, value)
        plan = self._plan(leaves, tuple(sorted(feeds, key=lambda t: t.op.id)))
        if run_metadata is None:
            return _rebuild(template, self._execute(plan, feeds))
        recorder = plan.program and _recorder(plan, self.device)
        result = _rebuild(template, self._execute(plan, feeds, recorder))
        run_metadata.profile = recorder.profile() if recorder else None
        return result

    def make_callable(self, fetches, feed_list=None) -> Compiled:
        """Compile once; call the result with feed values in `feed_list` order."""
        self._check_open()
        leaves: list = []
        template = _flatten(fetches, self.graph, leaves)
        feed_list = [_resolve_feed_key(k, self.graph) for k in (feed_list or [])]
        if len(set(feed_list)) != len(feed_list):
            raise FeedError("feed_list names the same tensor twice")
        plan = self._plan(leaves, tuple(sorted(feed_list, key=lambda t: t.op.id)), "feed_list")
        return Compiled(self, plan, template, feed_list)

    def _plan(self, leaves: list, feeds: tuple, feed_arg: str = "feed_dict") -> Plan:
        key = (tuple(id(x) for x in leaves), tuple(id(t) for t in feeds))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._build_plan(leaves, feeds, feed_arg)
            self._plans[key] = plan
            self.compile_count += 1
        return plan

    def _build_plan(self, leaves: list, feeds: tuple, feed_arg: str = "feed_dict") -> Plan:
        targets = [x.op if isinstance(x, Tensor) else x for x in leaves]
        order = self.graph.subgraph_order(targets, set(feeds))
        for op in order:
            if op.type == "Placeholder" and op.outputs[0] not in feeds:
                users = [x.name for x in leaves]
                raise FeedError(f"placeholder '{op.name}' (defined at {op.site}) must be fed: "
                                f"fetching {', '.join(users)} needs it; add it to {feed_arg} "
                                f"with shape {list(op.outputs[0].shape)} and dtype "
                                f"{op.outputs[0].dtype.name}")
        plan = Plan(list(leaves), feeds, order)
        if self.device != "reference":
            from .codegen import plan_cache
            from .codegen.program import Program
            from .passes import lower, run_passes, selected_passes
            names, fuse = selected_passes(self.optimize)
            driver = _driver(self.device)
            key = plan_cache.plan_key(order, leaves, feeds, (names, fuse, self.device,
                                                             driver.thread_count()))
            plan.program = Program(lambda: run_passes(lower(order, list(leaves), feeds), names),
                                   list(leaves), feeds, self.device, driver, fuse, key, order)
            if os.environ.get("GRAPHFLOW_PROFILE", "").strip() not in ("", "0"):
                plan.recorder = _recorder(plan, self.device)
                profiling.watch(plan.recorder)
        return plan

    def _execute(self, plan: Plan, feeds: dict, recorder=None) -> list:
        if plan.program is not None:
            if recorder is None and plan.recorder is None:
                values, updates = plan.program.run(feeds, self)
            else:
                values, updates, times = plan.program.run_timed(feeds, self)
                for r in (recorder, plan.recorder):
                    if r is not None:
                        r.add(times)
            plan.stats = plan.program.last_stats
        else:
            fetch_ops = {x.op if isinstance(x, Tensor) else x for x in plan.fetches}
            values, updates, plan.stats = reference.execute(self, plan.order, feeds, fetch_ops)
        if updates:
            self._values.update(updates)
        out = []
        for x in plan.fetches:
            value = values[x] if isinstance(x, Tensor) else None  # an Operation: for its effect
            # a 0-d result is a numpy scalar (np.float32), as in TF1
            out.append(value[()] if type(value) is np.ndarray and value.ndim == 0 else value)
        return out

    def _watch_growth(self) -> None:
        version = self.graph.version
        if self._last_version is not None and version > self._last_version:
            self._growth_streak += 1
            if self._growth_streak >= GROWTH_WARNING_RUNS and not self._warned_growth:
                self._warned_growth = True
                warnings.warn(
                    f"the graph grew between each of the last {self._growth_streak} Session.run "
                    f"calls (now {version} ops): ops are probably being created inside the "
                    "training loop. Build every op once before the loop, and call "
                    "graph.finalize() to make this an error.", GraphGrowthWarning, stacklevel=3)
        else:
            self._growth_streak = 0
        self._last_version = version

    # ---- variable state -----------------------------------------------------------
    def _read_variable_op(self, op: Operation) -> np.ndarray:
        value = self._values.get(op)
        if value is None:
            raise uninitialized_error(op)
        return value

    def next_stream(self, op: Operation) -> int:
        """How many times a stateful random op ran before in this Session (fresh numbers each run)."""
        count = self._streams.get(op, 0)
        self._streams[op] = count + 1
        return count

    def variable_value(self, var: Tensor) -> np.ndarray:
        """A copy of `var`'s current value in this Session (numpy)."""
        value = self._read_variable_op(var.op)
        return value.get() if hasattr(value, "get") else value.copy()

    def set_variable(self, var: Tensor, value) -> None:
        """Set `var`'s value in this Session directly (no graph op)."""
        self.set_variables({var: value})

    def set_variables(self, assignments: dict) -> None:
        """Set several variables at once: all are checked before any changes."""
        converted = {v: convert_feed(v, value).copy() for v, value in assignments.items()}
        for v, arr in converted.items():
            if self.device != "reference":
                from graphflow.codegen.executable import DeviceArray
                arr = DeviceArray.from_numpy(_driver(self.device), arr)
            self._values[v.op] = arr

    # ---- lifecycle -----------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise GraphflowError("this Session is closed")

    def close(self) -> None:
        """Free this Session's values and compiled plans; it cannot run afterwards."""
        self._closed = True
        self._values.clear()
        self._plans.clear()

    @contextlib.contextmanager
    def as_default(self):
        """Make this the default session inside the block (for Tensor.eval)."""
        _session_stack().append(self)
        try:
            yield self
        finally:
            _session_stack().pop()

    def __enter__(self) -> Session:
        _session_stack().append(self)
        return self

    def __exit__(self, *exc) -> None:
        _session_stack().pop()
        self.close()


class Compiled:
    """A callable compiled plan: `compiled(*feed_values)` returns the fetches."""

    def __init__(self, session: Session, plan: Plan, template, feed_list: list[Tensor]) -> None:
        self._session, self._plan, self._template = session, plan, template
        self.feed_list = feed_list
        # per feed: what a value needs to be used as it is (see convert_feed's first test)
        self._ready = [(t, t.dtype.np, len(t.shape), [(k, d) for k, d in enumerate(t.shape)
                                                      if d is not None]) for t in feed_list]

    def __call__(self, *feed_values):
        if len(feed_values) != len(self._ready):
            raise FeedError(f"this callable takes {len(self.feed_list)} feed values "
                            f"({', '.join(t.name for t in self.feed_list)}), got {len(feed_values)}")
        self._session._check_open()
        feeds = {}
        for (t, dtype, ndim, static), v in zip(self._ready, feed_values):
            if type(v) is np.ndarray and v.dtype is dtype and v.ndim == ndim \
                    and v.flags.c_contiguous and (not static or all(v.shape[k] == d for k, d in static)):
                feeds[t] = v
            else:
                feeds[t] = convert_feed(t, v)
        values = self._session._execute(self._plan, feeds)
        template = self._template
        return values[template] if type(template) is int else _rebuild(template, values)

    @property
    def source(self) -> str | None:
        """The generated CUDA C; None on the 'reference' device, which generates none."""
        program = self._plan.program
        return None if program is None else program.source

    @property
    def kernels(self) -> list:
        """KernelInfo per kernel (grid, block and byte counts from the last call)."""
        program = self._plan.program
        return [] if program is None else program.kernel_infos()

    def dump(self, directory: str) -> str:
        """Write the translation unit, each kernel as its own .cu, and manifest.json."""
        if self._plan.program is None:
            raise DeviceError("the 'reference' device generates no kernels to dump; use "
                              "device='cpu' or 'cuda'")
        return self._plan.program.dump(directory)

    def profile(self, *feed_values, repeat: int = 10, warmup: int = 1,
                show: bool = True) -> profiling.Profile:
        """Call `warmup + repeat` times (real calls: a training step updates the variables each
        time), timing each kernel launch; print the table (unless `show=False`) and return the
        Profile: per kernel, slowest first, its median time, share, bytes, GB/s and GFLOP/s."""
        if self._plan.program is None:
            raise DeviceError("the 'reference' device runs no kernels to profile; use device='cpu' "
                              "or 'cuda'")
        if repeat < 1:
            raise ValueError(f"profile(repeat={repeat}): repeat at least once")
        for _ in range(warmup):
            self(*feed_values)
        recorder = _recorder(self._plan, self._session.device)
        session = self._session
        for _ in range(repeat):
            feeds = {t: convert_feed(t, v) for t, v in zip(self.feed_list, feed_values)}
            session._execute(self._plan, feeds, recorder)
        result = recorder.profile()
        if show:
            print(result)
        return result

    @property
    def stats(self) -> dict:
        """Counts from the last call: kernels, launches, bytes_moved, flops, peak_memory_bytes."""
        last = self._plan.stats
        return {"kernels": last.get("kernels", 0), "launches": last.get("launches", 0),
                "ops": last.get("ops", len(self._plan.order)),
                "bytes_moved": last.get("bytes_moved", 0), "flops": last.get("flops", 0),
                "peak_memory_bytes": last.get("peak_memory_bytes", 0),
                "peak_memory_bound": last.get("peak_memory_bound", 0)}


def _recorder(plan: Plan, device: str) -> profiling.Recorder:
    title = ", ".join(x.name for x in plan.fetches)
    title = title if len(title) <= 60 else title[:57] + "..."
    return profiling.Recorder(title, device, plan.program.kernel_names())


_sessions = threading.local()


def _session_stack() -> list:
    if not hasattr(_sessions, "stack"):
        _sessions.stack = []
    return _sessions.stack


def get_default_session() -> Session:
    """The innermost Session entered with `with`; GraphflowError if none."""
    stack = _session_stack()
    if not stack:
        raise GraphflowError("no default session: use `with gf.Session() as sess:` or pass "
                             "session=")
    return stack[-1]
