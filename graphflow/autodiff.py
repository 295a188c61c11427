"""Reverse-mode autodiff as a graph transformation: gradients() adds backward ops.

The walk is iterative (pending counts, as in TF's _GradientsHelper), so deep
graphs never hit Python's recursion limit. Backward ops live under
`gradients/<forward op>_grad/` and point at their forward op via `grad_of`.
"""
from __future__ import annotations

import networkx as nx

from .errors import DTypeError, GraphflowError, ShapeError
from .graph import Operation, Tensor
from .ops.core import as_tensor, make, ones_like, zeros_like
from .registry import Spec, register
from .shapes import same_dim


def _add_n_infer(specs):
    first = specs[0]
    shape = list(first.shape)
    for s in specs[1:]:
        if s.dtype is not first.dtype or len(s.shape) != len(shape) or not all(
                same_dim(a, b) for a, b in zip(shape, s.shape)):
            raise ShapeError(f"add_n inputs must share dtype and shape, got {list(first.shape)} "
                             f"{first.dtype.name} and {list(s.shape)} {s.dtype.name}")
        shape = [a if a is not None else b for a, b in zip(shape, s.shape)]
    return Spec(tuple(shape), first.dtype)


register("AddN", infer=_add_n_infer, compute=lambda *xs: sum(xs[1:], xs[0].copy()),
         grad=lambda op, g: [g] * len(op.inputs))


def add_n(inputs: list[Tensor], name: str | None = None) -> Tensor:
    """Sum of same-shaped tensors (how gradients from several consumers combine)."""
    inputs = [as_tensor(t) for t in inputs]
    return inputs[0] if len(inputs) == 1 else make("AddN", inputs, name=name)


def _as_list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _data_graph(graph) -> nx.DiGraph:
    """The dependency graph without control edges: gradients follow data only."""
    full = graph.as_networkx()
    return nx.subgraph_view(full, filter_edge=lambda a, b: any(t.op is a for t in b.inputs))


def _check_grad(op: Operation, index: int, grad: Tensor) -> None:
    x = op.inputs[index]
    if not isinstance(grad, Tensor):
        raise GraphflowError(f"gradient rule of {op.type} returned {grad!r} for input {index}")
    if grad.dtype is not x.dtype or len(grad.shape) != len(x.shape) or not all(
            same_dim(a, b) for a, b in zip(grad.shape, x.shape)):
        raise GraphflowError(
            f"internal error: the gradient of {op.describe()} for input {index} has shape "
            f"{list(grad.shape)} {grad.dtype.name}, but the input is {list(x.shape)} "
            f"{x.dtype.name}")


def gradients(ys, xs, grad_ys=None, name: str = "gradients",
              unconnected_gradients: str = "none", stop_gradients=None, on_ready=None) -> list:
    """d(sum ys)/d(xs) as new graph nodes; a list with one entry per x (None if unconnected).
    `on_ready(index, grad)`, if given, is called during the backward walk as soon as the
    gradient of xs[index] is final, so ops built then sit right behind it (gf.distributed
    starts a bucket's all-reduce there)."""
    ys, xs = [as_tensor(y) for y in _as_list(ys)], _as_list(xs)
    if unconnected_gradients not in ("none", "zero"):
        raise ValueError(f"unconnected_gradients must be 'none' or 'zero', got "
                         f"{unconnected_gradients!r}")
    for x in xs:
        if not isinstance(x, Tensor):
            raise TypeError(f"gradients: xs must be tensors, got {x!r}")
    graph = ys[0].graph
    for t in ys + xs:
        if t.graph is not graph:
            raise GraphflowError(f"gradients: {t.name} is from another graph")
    grad_ys = [None] * len(ys) if grad_ys is None else _as_list(grad_ys)
    if len(grad_ys) != len(ys):
        raise ValueError(f"gradients: {len(grad_ys)} grad_ys for {len(ys)} ys")
    stops = {t.op for t in _as_list(stop_gradients or [])}

    data = _data_graph(graph)
    y_ops, x_ops = {y.op for y in ys}, {x.op for x in xs}
    reach_from_x = set(x_ops).union(*(nx.descendants(data, op) for op in x_ops))
    reach_to_y = set(y_ops).union(*(nx.ancestors(data, op) for op in y_ops))
    between = reach_from_x & reach_to_y

    grads: dict[Tensor, list[Tensor]] = {}
    with graph.as_default(), graph.name_scope(name):
        for i, (y, gy) in enumerate(zip(ys, grad_ys)):
            if not y.dtype.is_floating:
                raise DTypeError(f"gradients: y {y.name} is {y.dtype.name}; only floating "
                                 "tensors can be differentiated")
            first_new = graph.version
            if gy is None:
                gy = ones_like(y, name=f"grad_ys_{i}")
            else:
                gy = as_tensor(gy, y.dtype)
                if len(gy.shape) != len(y.shape) or not all(
                        same_dim(a, b) for a, b in zip(gy.shape, y.shape)):
                    raise ShapeError(f"grad_ys[{i}] has shape {list(gy.shape)} but y {y.name} "
                                     f"has shape {list(y.shape)}")
            _point_at(graph, first_new, y.op)
            grads.setdefault(y, []).append(gy)

        pending = {op: sum(1 for c in data.successors(op) if c in between) for op in between}
        ready = sorted((op for op in between if pending[op] == 0), key=lambda o: o.id)
        while ready:
            op = ready.pop()
            out_grad = None
            if op.outputs and grads.get(op.outputs[0]):
                out_grad = _aggregate(grads, op.outputs[0])
            if out_grad is not None and op not in stops and op.inputs:
                _backprop_op(op, out_grad, grads, graph)
            for producer in sorted({t.op for t in op.inputs}, key=lambda o: o.id):
                if producer in between:
                    pending[producer] -= 1
                    if pending[producer] == 0:
                        ready.append(producer)
                        if on_ready is not None and producer in x_ops:  # every consumer is done
                            _report(on_ready, xs, producer, grads)

        results = []
        for x in xs:
            if grads.get(x):
                results.append(_aggregate(grads, x))
            elif unconnected_gradients == "zero":
                first_new = graph.version
                results.append(zeros_like(x))
                _point_at(graph, first_new, x.op)
            else:
                results.append(None)
    return results


def _report(on_ready, xs: list, op: Operation, grads: dict) -> None:
    for index, x in enumerate(xs):
        if x.op is op and grads.get(x):
            on_ready(index, _aggregate(grads, x))


def _aggregate(grads: dict, t: Tensor) -> Tensor:
    parts = grads[t]
    if len(parts) > 1:
        first_new = t.graph.version
        grads[t] = [add_n(parts, name=f"{t.op.name}_grad_sum")]
        _point_at(t.graph, first_new, t.op)
    return grads[t][0]


def _point_at(graph, first_new: int, forward: Operation) -> None:
    """Backward ops made outside a gradient rule (seeds, sums, zeros) belong to `forward`."""
    for op in graph._ops[first_new:]:
        if op.grad_of is None:
            op.grad_of = forward


def _backprop_op(op: Operation, out_grad: Tensor, grads: dict, graph) -> None:
    rule = op.op_def.grad
    if rule is None:
        raise GraphflowError(f"no gradient is defined for {op.describe()}; "
                             f"wrap it in gf.stop_gradient if no gradient should flow")
    first_new = graph.version
    with graph.name_scope(f"{op.name}_grad"):
        in_grads = rule(op, out_grad)
    for new_op in graph._ops[first_new:]:
        if new_op.grad_of is None:
            new_op.grad_of = op
            new_op.site = f"{new_op.site} (gradient of {op.name}, defined at {op.site})"
    if len(in_grads) != len(op.inputs):
        raise GraphflowError(f"gradient rule of {op.type} gave {len(in_grads)} gradients for "
                             f"{len(op.inputs)} inputs")
    for i, (x, g) in enumerate(zip(op.inputs, in_grads)):
        if g is None or not x.dtype.is_floating:
            continue
        _check_grad(op, i, g)
        grads.setdefault(x, []).append(g)

