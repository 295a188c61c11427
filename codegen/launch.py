"""The launch table of one shape signature: kernels in order, prepared once.

Native kernels go to the driver's prepared sequence (on the cpu device: one native call runs
them all). A host step (a Kernel with `host` set, e.g. a collective over MPI) splits the table:
the kernels before it run, then the step, then the rest; unless its function offers a native
form (`host.native(args, shapes)` -> NativeCall, only on the cpu device), which joins the
sequence as one more entry. Arguments are addressed by the table-wide launch index, whichever
part holds the launch.
"""
from __future__ import annotations

import ctypes


class HostStep:
    """A host function run between kernels: host(args, shapes), args bound like a kernel's,
    shapes per argument (its tensor's shape, None for a scalar)."""

    def __init__(self, fn, args: list, shapes: list) -> None:
        self.fn, self.args, self.shapes = fn, list(args), shapes

    def set_arg(self, i: int, value) -> None:
        self.args[i] = value

    def run(self) -> None:
        self.fn(self.args, self.shapes)


class DeviceCopies:
    """A host step: device-to-device copies (argument, argument, bytes) on the device's driver,
    found at run time (emitting needs none). Plain data, so a kept plan (plan_cache.py) holds it."""

    def __init__(self, moves: list[tuple[int, int, int]], device: str) -> None:
        self.moves, self.device = moves, device

    def __call__(self, args: list, shapes: list) -> None:
        from .devices import get_driver

        driver = get_driver(self.device)
        for src, dst, size in self.moves:
            if size:
                driver.memcpy_dtod(args[dst], args[src], size)


class NativeCall:
    """A host C function run as an entry of the cpu device's native launch sequence:
    `int function(void* block, char* error, int error_bytes)`, nonzero on failure with the
    reason in `error` (raised as `error_type`). `block` (a ctypes object kept alive here,
    with `keep`) starts with one pointer per argument, bound like a kernel's by set_arg."""

    def __init__(self, name: str, function: int, block, nargs: int, error_type: type,
                 keep: tuple = ()) -> None:
        self.name, self.function, self.block = name, function, block
        self.nargs, self.error_type, self._keep = nargs, error_type, keep
        self.address = ctypes.addressof(block)

    def set_arg(self, i: int, value) -> None:
        if not 0 <= i < self.nargs:
            raise IndexError(f"{self.name}: argument {i} of {self.nargs}")
        slot = ctypes.c_void_p.from_address(self.address + i * ctypes.sizeof(ctypes.c_void_p))
        slot.value = int(value) if value is not None else None


class LaunchTable:
    """entries: ('kernel', (function, args, grid, block, shared, threads)) or
    ('host', HostStep); `prepare` is the driver's sequence builder. With `native_calls` (the
    cpu device, whose sequence runs host C functions too) a host step's native form joins it
    as a NativeCall; otherwise (cuda: PyCUDA launches) every host step runs from Python."""

    def __init__(self, entries: list, prepare, native_calls: bool) -> None:
        self._parts: list = []
        self._where: list[tuple[int, int]] = []  # launch index -> (part, index in part)
        run: list = []

        def close_run() -> None:
            if run:
                self._parts.append(prepare(list(run)))
                run.clear()

        for kind, entry in entries:
            native = getattr(entry.fn, "native", None) if kind == "host" and native_calls else None
            call = native(entry.args, entry.shapes) if native is not None else None
            if call is not None:
                kind, entry = "kernel", call
            if kind == "host":
                close_run()
                self._where.append((len(self._parts), 0))
                self._parts.append(entry)
            else:
                self._where.append((len(self._parts), len(run)))
                run.append(entry)
        close_run()
        if len(self._parts) == 1:  # the common case: one native call, no loop
            self.run = self._parts[0].run

    def set_arg(self, k: int, i: int, value) -> None:
        part, index = self._where[k]
        target = self._parts[part]
        if isinstance(target, HostStep):
            target.set_arg(i, value)
        else:
            target.set_arg(index, i, value)

    def run(self) -> None:
        for part in self._parts:
            part.run()
