"""Graph passes on the lowered graph, in named phases (like PyTensor's optdb).

    lowered = lower(order, fetches, feeds)
    run_passes(lowered, optimize)   # True: every pass; False: none; a list: just those

Each pass is a small module with one function LGraph -> LGraph that can be run and
tested alone. Fusion and memory planning follow in codegen (they decide kernels).
"""
from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import GraphflowError
from .cse import cse
from .dce import dce
from .fold import fold_constants
from .lowered import LGraph, LOp, LTensor, lower
from .simplify import simplify
from .verify import VerifyError, verify

__all__ = ["PASSES", "FUSION", "LGraph", "LOp", "LTensor", "VerifyError", "lower", "run_passes",
           "verify", "selected_passes"]

# name -> pass, in pipeline order: merge, canonicalize, fold, clean up, then again after folding
PASSES: dict[str, Callable[[LGraph], LGraph]] = {
    "cse": cse,
    "simplify": simplify,
    "fold": fold_constants,
    "dce": dce,
}
FUSION = "fusion"  # the codegen stage that can be switched by name too
PIPELINE = ["cse", "simplify", "fold", "cse", "simplify", "dce"]


def selected_passes(optimize) -> tuple[list[str], bool]:
    """(graph passes to run, whether to fuse) for Session's `optimize` argument."""
    if optimize is True:
        return PIPELINE, True
    if optimize is False or optimize is None:
        return [], False
    names = [optimize] if isinstance(optimize, str) else list(optimize)
    unknown = [n for n in names if n not in PASSES and n != FUSION]
    if unknown:
        raise GraphflowError(f"unknown pass {unknown[0]!r} in optimize=; the passes are "
                             f"{', '.join([*PASSES, FUSION])}")
    return [n for n in names if n != FUSION], FUSION in names


def run_passes(graph: LGraph, names: list[str], check: bool | None = None) -> LGraph:
    """Run the named passes in order; with `check` (default: $GRAPHFLOW_VERIFY) verify after each."""
    if check is None:
        check = bool(os.environ.get("GRAPHFLOW_VERIFY"))
    if check:
        verify(graph)
    for name in names:
        graph = PASSES[name](graph)
        if check:
            verify(graph, after=name)
    return dce(graph) if names else graph
