"""Constant folding through each op's numpy reference.

An op whose inputs are all constants is computed once at compile time and becomes a
constant. Folding stops where it would blow a small constant up into a big one (a
broadcast of a scalar stays a broadcast, which fusion turns into a literal).
"""
from __future__ import annotations

import numpy as np

from .lowered import LGraph, LOp

MAX_GROWTH = 1  # a folded constant may be at most this many times its largest input


def fold_constants(graph: LGraph) -> LGraph:
    renamed: dict = {}  # folded output -> its constant (ops are in order: inputs come first)
    for i, op in enumerate(graph.ops):
        op.inputs = [renamed.get(t, t) for t in op.inputs]
        if op.type == "Const" or not op.outputs or op.op_def.stateful or op.op_def.compute is None \
                or op.op_def.needs_context or not op.inputs:
            continue
        if not all(t.op.type == "Const" for t in op.inputs):
            continue
        args = [t.op.attrs["value"] for t in op.inputs]
        out_shape = op.outputs[0].shape
        if None in out_shape:
            continue
        size = int(np.prod(out_shape, dtype=np.int64))
        if size > MAX_GROWTH * max(max(a.size for a in args), 1) and size > 1:
            continue
        with np.errstate(all="ignore"):
            value = np.asarray(op.op_def.compute(*args, **op.attrs), dtype=op.outputs[0].dtype.np)
        value = np.array(value, order="C")
        value.flags.writeable = False
        const = LOp("Const", op.name, [], {"value": value}, op.origins, op.outputs[0].spec())
        graph.ops[i] = const
        renamed[op.outputs[0]] = const.outputs[0]
    graph.rename(renamed)  # the fetches
    graph.renumber()
    return graph
