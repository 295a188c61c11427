"""A compiled plan and how to run it.

A Program is built with a way to lower its graph, not the lowered graph: when the plan cache
(plan_cache.py) holds this plan's Records, a run needs only them, and the passes, fusion and
codegen (compile.py) never run in this process. Otherwise, or for a shape signature the cache
does not hold, or when someone asks for the kernels or their source, it compiles (a Build)
and keeps the new Records. Each shape signature's Record is loaded onto the driver once (an
Executable: buffers allocated, launches prepared); a run copies the feeds in, makes one
native call (on the cpu device) and copies the fetches out.
"""
from __future__ import annotations

from collections.abc import Callable

from . import plan_cache
from .executable import DeviceArray, Executable, KernelInfo, Record

__all__ = ["DeviceArray", "KernelInfo", "Program"]


class Program:
    """The compiled form of one Session plan on one device. `lower()` gives its lowered graph;
    `fetches` and `feeds` are the user's, feeds in the plan's order; `key` is its plan-cache
    key (None: not kept)."""

    def __init__(self, lower: Callable, fetches: list, feeds: tuple, device: str, driver,
                 fuse: bool = True, key: str | None = None, order: list | None = None) -> None:
        self.device, self.driver = device, driver
        self._lower, self._fuse, self._key, self._order = lower, fuse, key, order or []
        self._fetches, self._feeds = list(fetches), list(feeds)
        self._records: dict[tuple, Record] = plan_cache.load(key, self._order) if key else {}
        self._build = None
        self._functions: dict = {}  # kernel name -> loaded function
        self._loaded: set = set()   # translation units loaded (their source)
        self._executables: dict[tuple, Executable] = {}
        self._last: Executable | None = None  # the one whose infos and stats are shown
        self.infos: list[KernelInfo] = []
        self.last_stats: dict = {}
        if not self._records:
            self.build()  # compile errors surface where the plan is made, as without a cache

    # ---- compiling -------------------------------------------------------------------
    def build(self):
        """The compiled graph (compile.Build): lowered, fused, emitted and compiled once."""
        if self._build is None:
            from .compile import Build  # the whole compiler: imported only when it runs
            self._build = Build(self._lower(), self.device, self.driver, self._fuse)
        return self._build

    def _load(self, parts: list) -> None:
        """Every kernel of these translation units, loaded: from the Build (waiting for its
        compile) or from the compile cache."""
        build = self._build
        if build is not None and not all(source in self._loaded for source, _ in build.parts):
            self._functions.update(build.functions)
            self._loaded.update(source for source, _ in build.parts)
        for source, names in parts:
            if source not in self._loaded:  # a kept plan's unit: a compile-cache hit
                module = self.driver.SourceModule(source, no_extern_c=True)
                self._functions.update({name: module.get_function(name) for name in names})
                self._loaded.add(source)

    @property
    def graph(self):
        """The lowered graph after the passes."""
        return self.build().graph

    @property
    def groups(self) -> list:
        return self.build().groups

    @property
    def kernels(self) -> list:
        return self.build().kernels

    @property
    def source(self) -> str:
        return self.build().source

    @property
    def fiber_kernels(self) -> list[str]:
        """Kernels the emulator runs as fibers (a barrier or shuffle it cannot loop around)."""
        self._load([])
        return [name for name, fn in self._functions.items() if getattr(fn, "fibers", False)]

    def shapes_for(self, feed_shapes: dict) -> dict:
        """Concrete shapes of every lowered tensor for these feed shapes (user tensor -> shape)."""
        return self.build().shapes_for(feed_shapes)

    def dump_name(self) -> str:
        return self.build().dump_name()

    # ---- one shape signature ----------------------------------------------------------
    def _executable(self, feeds: dict) -> Executable:
        signature = tuple([feeds[t].shape for t in self._feeds])
        executable = self._executables.get(signature)
        if executable is not None:
            return executable
        record = self._records.get(signature)
        if record is None:  # planned while build()'s units compile; kept once they have
            record = self.build().freeze({t: feeds[t].shape for t in self._feeds}, self._feeds,
                                         self.driver.thread_count())
            self._load(record.parts)
            self._records[signature] = record
            if self._key:  # a Record with a Python host step (a collective) is not kept
                plan_cache.store(self._key, self._order, self._records)
        else:
            self._load(record.parts)
        executable = Executable(record, self.driver, self._functions, self.device, self._feeds,
                                self._fetches)
        self._executables[signature] = executable
        return executable

    # ---- running -----------------------------------------------------------------------
    def run(self, feeds: dict, session) -> tuple[dict, dict]:
        """Launch every kernel; return (fetched numpy values, variable updates)."""
        executable = self._executables.get(tuple([feeds[t].shape for t in self._feeds]))
        if executable is None:
            executable = self._executable(feeds)
        if executable is not self._last:
            self._last = executable
            self.infos, self.last_stats = executable.record.infos, executable.record.stats
        return executable.run(feeds, session)

    def run_timed(self, feeds: dict, session) -> tuple[dict, dict, list]:
        """`run` with each launch on its own and timed (see Executable.run_timed)."""
        executable = self._executable(feeds)
        self.infos, self.last_stats = executable.record.infos, executable.record.stats
        return executable.run_timed(feeds, session)

    # ---- seeing the kernels ----------------------------------------------------------------
    def kernel_infos(self) -> list[KernelInfo]:
        return self.infos or self.build().kernel_infos()

    def kernel_names(self) -> list[str]:
        """Names of the kernels in launch order (without compiling when a Record has them)."""
        if self._records and self._build is None:
            return [info.name for info in next(iter(self._records.values())).infos]
        return [k.name for k in self.kernels]

    def dump(self, directory: str) -> str:
        from .dump import dump_program
        return dump_program(self, directory)
