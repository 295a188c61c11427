"""Per-kernel time of compiled graphs: `Compiled.profile`, `$GRAPHFLOW_PROFILE`, `run_metadata`.

    step = sess.make_callable([train_op, loss], feed_list=[x, y])
    prof = step.profile(batch_x, batch_y, repeat=20)   # prints the table, returns a Profile
    prof.rows[0].name, prof.rows[0].seconds            # the slowest kernel first

    meta = gf.RunMetadata()
    sess.run(loss, feed_dict, run_metadata=meta)       # meta.profile: this run's Profile

Each launch of a profiled call runs on its own and is timed by the driver (the emulator's
clock on `cpu`, CUDA events on `cuda`), instead of the one native call of a normal run, so
a profiled call is a little slower than a normal one; the kernels' own times are not. A
kernel's time is the median over the calls profiled; its share is of the sum of those
medians; GB/s is bytes read and written over time, GFLOP/s likewise.

`GRAPHFLOW_PROFILE=1` (read when a graph is compiled) profiles every call of every plan
compiled afterwards and prints one table per plan to stderr when the process exits (one
table per call would bury a training loop's own output).
"""
from __future__ import annotations

import atexit
import statistics
import sys
from dataclasses import dataclass, field

__all__ = ["KernelTime", "Profile", "Recorder", "RunMetadata", "RunOptions"]

KEEP_CALLS = 10000  # per plan: older calls are dropped from a long run's statistics


@dataclass
class KernelTime:
    """One kernel's line of a Profile."""
    name: str
    seconds: float     # median over the calls profiled
    share: float       # of the profile's total, 0..1
    bytes_moved: int   # per call (bytes read + written)
    flops: int         # per call
    gb_per_s: float
    gflop_per_s: float
    calls: int


@dataclass
class Profile:
    """Per-kernel times of one compiled plan, slowest first; `str()` is the table."""
    title: str
    device: str
    rows: list[KernelTime] = field(default_factory=list)
    calls: int = 0

    @property
    def total_seconds(self) -> float:
        """Sum of the kernels' median times: one call's time on the device."""
        return sum(r.seconds for r in self.rows)

    def __str__(self) -> str:
        head = (f"graphflow profile: {self.title} on {self.device}, {self.calls} call(s), "
                f"{len(self.rows)} kernels, {self.total_seconds * 1e6:.1f} us per call")
        table = [("kernel", "time us", "share", "bytes", "GB/s", "GFLOP/s")]
        for r in self.rows:
            table.append((r.name, f"{r.seconds * 1e6:.1f}", f"{100 * r.share:.1f}%",
                          str(r.bytes_moved), f"{r.gb_per_s:.2f}", f"{r.gflop_per_s:.2f}"))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines = [head]
        for n, row in enumerate(table):
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)


class Recorder:
    """Collects the timed launches of one plan's calls (Program.run_timed's output)."""

    def __init__(self, title: str, device: str, names: list[str]) -> None:
        self.title, self.device, self.names = title, device, names
        self.calls: list[list[tuple]] = []

    def add(self, times: list[tuple]) -> None:
        """One call's [(kernel index, seconds, bytes, flops)]."""
        self.calls.append(times)
        if len(self.calls) > KEEP_CALLS:
            del self.calls[0]

    def profile(self) -> Profile:
        per: dict[int, list[tuple]] = {}
        for times in self.calls:
            summed: dict[int, list] = {}
            for k, seconds, nbytes, flops in times:  # a kernel launched twice in a call: summed
                acc = summed.setdefault(k, [0.0, 0, 0])
                acc[0] += seconds
                acc[1] += nbytes
                acc[2] += flops
            for k, acc in summed.items():
                per.setdefault(k, []).append(tuple(acc))
        rows = []
        for k, samples in per.items():
            seconds = statistics.median(s for s, _, _ in samples)
            spent = sum(s for s, _, _ in samples)
            nbytes = sum(b for _, b, _ in samples)
            flops = sum(f for _, _, f in samples)
            rows.append(KernelTime(self.names[k], seconds, 0.0, nbytes // len(samples),
                                   flops // len(samples), nbytes / spent / 1e9 if spent else 0.0,
                                   flops / spent / 1e9 if spent else 0.0, len(samples)))
        total = sum(r.seconds for r in rows)
        for r in rows:
            r.share = r.seconds / total if total else 0.0
        rows.sort(key=lambda r: (-r.seconds, r.name))
        return Profile(self.title, self.device, rows, len(self.calls))


class RunOptions:
    """TF1's RunOptions, accepted by Session.run; `trace_level` is kept for TF1 code (graphflow
    profiles whenever a RunMetadata is passed)."""
    NO_TRACE, SOFTWARE_TRACE, HARDWARE_TRACE, FULL_TRACE = 0, 1, 2, 3

    def __init__(self, trace_level: int = 0) -> None:
        self.trace_level = trace_level


class RunMetadata:
    """Pass to `Session.run(..., run_metadata=meta)`: afterwards `meta.profile` is that run's
    Profile (per-kernel times; None on the 'reference' device, which runs no kernels)."""

    def __init__(self) -> None:
        self.profile: Profile | None = None

    def __str__(self) -> str:
        return str(self.profile) if self.profile is not None else "RunMetadata (no kernels ran)"


_at_exit: list[Recorder] = []


def watch(recorder: Recorder) -> None:
    """Print `recorder`'s table to stderr when the process exits ($GRAPHFLOW_PROFILE)."""
    if not _at_exit:
        atexit.register(_report)
    _at_exit.append(recorder)


def _report() -> None:
    for recorder in _at_exit:
        if recorder.calls:
            print(recorder.profile(), file=sys.stderr)
            print(file=sys.stderr)
