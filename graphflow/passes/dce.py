"""Dead-code elimination: keep only what a fetch or an effect (assign) needs."""
from __future__ import annotations

from .lowered import LGraph


def dce(graph: LGraph) -> LGraph:
    needed = set()
    stack = [t.op for t in graph.live_outputs()] + list(graph.targets)
    while stack:
        op = stack.pop()
        if op in needed:
            continue
        needed.add(op)
        stack.extend(t.op for t in op.inputs)
    feeds = {t.op for t in graph.feeds.values()}
    graph.ops = [op for op in graph.ops if op in needed or op in feeds]
    graph.renumber()
    return graph
