"""Memory planning: intermediate buffers reused by liveness, one arena per shape signature.

Kernels run in a fixed order, so each buffer's life is an interval of kernel indices:
from the first kernel that writes it to the last that reads it (fetched values live to the
end). Buffers whose lives do not overlap share a slot; a slot is as large as the largest
value it ever holds. The max-live bound (the most bytes live at any one kernel) is what no
plan can beat; `peak` is what this plan allocates.
"""
from __future__ import annotations

from dataclasses import dataclass

from .kernel import numel


@dataclass
class MemoryPlan:
    slot_of: dict        # tensor -> slot index
    slot_bytes: list     # bytes per slot
    bound: int           # max-live lower bound in bytes

    @property
    def peak(self) -> int:
        return sum(self.slot_bytes)


def plan_memory(kernels: list, shapes: dict, root, pooled: set, keep_to_end: set) -> MemoryPlan:
    """Slots for the `pooled` tensors (kernel outputs that are neither variables, constants
    nor feeds). `root` maps a tensor to the one that owns its buffer (aliases)."""
    first: dict = {}
    last: dict = {}
    for k, kernel in enumerate(kernels):
        for p in kernel.params:
            if p.kind in ("in", "out") and root(p.tensor) in pooled:
                t = root(p.tensor)
                first.setdefault(t, k)
                last[t] = k
    end = len(kernels)
    for t in keep_to_end:
        if t in first:
            last[t] = end
    size = {t: max(1, numel(shapes[t]) * t.dtype.size) for t in first}
    starts: dict[int, list] = {}
    for t, k in first.items():
        starts.setdefault(k, []).append(t)
    slot_of: dict = {}
    slot_bytes: list[int] = []
    free: list[int] = []
    live_until: dict[int, int] = {}
    bound = 0
    for k in range(end):
        for s, until in list(live_until.items()):
            if until < k:
                free.append(s)
                del live_until[s]
        for t in sorted(starts.get(k, []), key=lambda t: -size[t]):
            fits = [s for s in free if slot_bytes[s] >= size[t]]
            s = min(fits, key=lambda s: slot_bytes[s]) if fits else (
                max(free, key=lambda s: slot_bytes[s]) if free else None)
            if s is None:
                s = len(slot_bytes)
                slot_bytes.append(0)
            else:
                free.remove(s)
            slot_bytes[s] = max(slot_bytes[s], size[t])
            slot_of[t] = s
            live_until[s] = last[t]
        bound = max(bound, sum(size[t] for t in first if first[t] <= k <= last[t]))
    return MemoryPlan(slot_of, slot_bytes, bound)
