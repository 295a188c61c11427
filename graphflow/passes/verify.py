"""The verifier: the invariants every pass must keep. Run between passes in the tests
(and whenever $GRAPHFLOW_VERIFY is set); a broken invariant raises, never passes silently."""
from __future__ import annotations

from ..errors import GraphflowError
from .lowered import LGraph


class VerifyError(GraphflowError):
    """A pass left the lowered graph inconsistent (a compiler bug, reported with the pass)."""


def verify(graph: LGraph, after: str = "lowering") -> None:
    """Shapes and dtypes re-inferred, topological order (so acyclic), every fetch and effect
    still computed, every op still pointing at user code."""
    position = {op: i for i, op in enumerate(graph.ops)}

    def fail(message: str):
        raise VerifyError(f"after pass '{after}': {message}")

    for i, op in enumerate(graph.ops):
        if not op.origins:
            fail(f"{op.name} ({op.type}) lost its definition site")
        for t in op.inputs:
            if t.op not in position:
                fail(f"{op.describe()} reads {t.name}, which no op in the graph computes")
            if position[t.op] >= i:
                fail(f"{op.describe()} comes before its input {t.name} (a cycle or a bad order)")
        if op.type in ("Placeholder", "Variable", "Const"):
            continue
        spec = op.op_def.infer([t.spec() for t in op.inputs], **op.attrs)
        if op.outputs and (spec is None or tuple(spec.shape) != tuple(op.outputs[0].shape)
                           or spec.dtype is not op.outputs[0].dtype):
            fail(f"{op.describe()} says {op.outputs[0]} but its inputs give {spec}")
    for t in graph.fetches:
        if t is not None and t.op not in position:
            fail(f"the fetch {t.name} is no longer computed")
    for op in graph.targets:
        if op not in position:
            fail(f"the effect {op.describe()} was dropped")
