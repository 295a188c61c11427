"""The 'reference' device: interprets a plan op by op with each op's numpy reference.

It is the oracle every compiled device is tested against. Before each op it
re-runs the op's shape rule on the actual run-time shapes, so a mismatch that
was unknown at build time (a None dim) fails with the op's name and site.
"""
from __future__ import annotations

import numpy as np

from .errors import DTypeError, GraphflowError, ShapeError
from .graph import Operation, Tensor
from .ops.state import ASSIGN_OPS
from .registry import Spec
from .variables import uninitialized_error

UNINITIALIZED = object()  # a variable's value before its initializer ran


class OpContext:
    """What a stateful op sees of its Session during a run."""

    def __init__(self, session, op: Operation) -> None:
        self.session, self.op = session, op

    def read_variable(self) -> np.ndarray:
        return self.session._read_variable_op(self.op)

    def next_stream(self) -> int:
        return self.session.next_stream(self.op)


def flops_of(op: Operation, inputs: list[np.ndarray], out: np.ndarray | None) -> int:
    """A rough count of arithmetic: 2*M*N*K for products, one per element otherwise."""
    if op.type == "MatMul":
        a = inputs[0]
        k = a.shape[-2] if op.attrs["transpose_a"] else a.shape[-1]
        return 2 * out.size * k
    if op.type in ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"):
        w = inputs[1] if op.type == "Conv2D" else inputs[1 if op.type.endswith("Input") else 2]
        y = out if op.type == "Conv2D" else inputs[0 if op.type.endswith("Input") else 1]
        return 2 * y.size * w.shape[0] * w.shape[1] * w.shape[2]
    return max(getattr(x, "size", 0) for x in inputs + [out])


def execute(session, order: list[Operation], feeds: dict[Tensor, np.ndarray],
            fetch_ops: set[Operation]) -> tuple[dict, dict, dict]:
    """Run `order`; return (values, variable updates, stats)."""
    values: dict[Tensor, np.ndarray] = dict(feeds)
    updates: dict[Operation, np.ndarray] = {}
    last_use = {}
    for i, op in enumerate(order):
        for t in op.inputs:
            last_use[t] = i
    stats = {"flops": 0, "bytes_moved": 0, "peak_memory_bytes": 0, "ops": 0}
    live = sum(a.nbytes for a in feeds.values())
    with np.errstate(all="ignore"):
        for i, op in enumerate(order):
            if op.outputs and op.outputs[0] in values:
                continue  # fed
            args = [values[t] for t in op.inputs]
            _check_initialized(op, args)
            out = None if op.type == "Variable" and session._values.get(op) is None else \
                _run_op(session, op, args)
            if out is None and op.type == "Variable":
                out = UNINITIALIZED
            if op.outputs:
                values[op.outputs[0]] = out
                live += getattr(out, "nbytes", 0)
            if op.type in ASSIGN_OPS:
                updates[op.inputs[0].op] = out
            stats["ops"] += 1
            stats["flops"] += flops_of(op, args, out)
            stats["bytes_moved"] += sum(getattr(a, "nbytes", 0) for a in args + [out])
            stats["peak_memory_bytes"] = max(stats["peak_memory_bytes"], live)
            for t in set(op.inputs):
                if last_use.get(t) == i and t.op not in fetch_ops and t not in feeds:
                    live -= getattr(values[t], "nbytes", 0)
    return values, updates, stats


def _check_initialized(op: Operation, args: list) -> None:
    """An uninitialized variable may only be the target of a plain Assign."""
    for i, a in enumerate(args):
        if a is UNINITIALIZED and not (op.type == "Assign" and i == 0):
            raise uninitialized_error(op.inputs[i].op, reader=op)


def infer_at_run_time(op: Operation, shapes: list[tuple]) -> Spec | None:
    """The op's shape rule on concrete input shapes; a failure names the op and its site."""
    try:
        return op.op_def.infer([Spec(shape, t.dtype) for shape, t in zip(shapes, op.inputs)],
                               **op.attrs)
    except (ShapeError, DTypeError) as e:
        shown = ", ".join(f"{t.name} {list(shape)}" for t, shape in zip(op.inputs, shapes))
        raise type(e)(f"{op.describe()} at run time: {e}  [inputs: {shown}]") from None


def _run_op(session, op: Operation, args: list[np.ndarray]) -> np.ndarray | None:
    op_def = op.op_def
    spec = infer_at_run_time(op, [t.shape if a is UNINITIALIZED else a.shape
                                  for a, t in zip(args, op.inputs)])
    kwargs = dict(op.attrs)
    if op_def.needs_context:
        kwargs["ctx"] = OpContext(session, op)
    try:
        out = op_def.compute(*args, **kwargs)
    except GraphflowError as e:
        raise type(e)(f"{op.describe()}: {e}") from None
    if spec is None:
        return None
    out = np.asarray(out)
    if out.dtype != spec.dtype.np or len(out.shape) != len(spec.shape) or any(
            d is not None and d != n for d, n in zip(spec.shape, out.shape)):
        raise GraphflowError(f"internal error: {op.describe()} computed {out.shape} {out.dtype} "
                             f"but its shape rule says {list(spec.shape)} {spec.dtype.name}")
    return out
