"""Common-subexpression elimination: ops with the same type, inputs and attributes merge.

Constants merge by value, so the identical chains each optimizer update builds (Adam's
bias-corrected learning rate, `1 - beta1`) collapse to one. Stateful ops (variables,
assigns, random numbers) never merge: each has effects or state of its own.
"""
from __future__ import annotations

import numpy as np

from .lowered import LGraph


def freeze(value):
    """A hashable stand-in for an attribute value (arrays by dtype, shape and bytes)."""
    if isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        return ("array", arr.dtype.str, arr.shape, arr.tobytes())
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, freeze(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(freeze(v) for v in value))
    if isinstance(value, float) and value != value:
        return ("nan",)
    return value


def cse(graph: LGraph) -> LGraph:
    seen: dict = {}
    kept = []
    renamed: dict = {}  # merged output -> its twin's (ops are in order: inputs come first)
    for op in graph.ops:
        op.inputs = [renamed.get(t, t) for t in op.inputs]
        if op.op_def.stateful or not op.outputs:
            kept.append(op)
            continue
        key = (op.type, tuple(id(t) for t in op.inputs), freeze(op.attrs),
               op.outputs[0].dtype.name, tuple(op.outputs[0].shape))
        twin = seen.get(key)
        if twin is None:
            seen[key] = op
            kept.append(op)
            continue
        twin.origins.extend(o for o in op.origins if o not in twin.origins)
        renamed[op.outputs[0]] = twin.outputs[0]
    graph.ops = kept
    graph.rename(renamed)  # the fetches
    graph.renumber()
    return graph
