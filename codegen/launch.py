"""The launch table of one shape signature: kernels in order, prepared once.

Native kernels go to the driver's prepared sequence (on the cpu device: one native call runs
them all). A host step (a Kernel with `host` set, e.g. a collective over MPI) splits the table:
the kernels before it run, then the step, then the rest. Arguments are addressed by the
table-wide launch index, whichever part holds the launch.
"""
from __future__ import annotations


class HostStep:
    """A host function run between kernels: host(args, shapes), args bound like a kernel's."""

    def __init__(self, fn, args: list, shapes: dict) -> None:
        self.fn, self.args, self.shapes = fn, list(args), shapes

    def set_arg(self, i: int, value) -> None:
        self.args[i] = value

    def run(self) -> None:
        self.fn(self.args, self.shapes)


class LaunchTable:
    """entries: ('kernel', (function, args, grid, block, shared, threads)) or
    ('host', HostStep); `prepare` is the driver's sequence builder."""

    def __init__(self, entries: list, prepare) -> None:
        self._parts: list = []
        self._where: list[tuple[int, int]] = []  # launch index -> (part, index in part)
        run: list = []

        def close_run() -> None:
            if run:
                self._parts.append(prepare(list(run)))
                run.clear()

        for kind, entry in entries:
            if kind == "host":
                close_run()
                self._where.append((len(self._parts), 0))
                self._parts.append(entry)
            else:
                self._where.append((len(self._parts), len(run)))
                run.append(entry)
        close_run()

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
