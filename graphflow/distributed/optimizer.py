"""Data parallelism in the graph: gradients averaged over ranks, variables broadcast from root.

DistributedOptimizer wraps any gf.train optimizer: gradients are packed into buckets (reshape
to 1-D + concat: fused copy kernels) as backward finishes them; each bucket's all-reduce starts
right there (AllReduceStart) and is waited for after backward (AllReduceWait), and the averaged
buffer is split back (slice + reshape) before the wrapped optimizer's update.
"""
from __future__ import annotations

from ..autodiff import gradients
from ..errors import GraphflowError
from ..graph import Operation, Tensor
from ..ops.array import concat, reshape
from ..ops.core import as_tensor, group, make
from ..train.optimizers import Optimizer, _tf1_order
from ..variables import Variable, global_variables, trainable_variables
from .ops import describe, graph_fingerprint

DEFAULT_BUCKET_BYTES = 16 << 20


class Bucketer:
    """Packs gradients into buckets as they become final and starts each bucket's all-reduce at
    once (AllReduceStart); `finish` adds the waits (AllReduceWait) and unpacks. A bucket holds
    one dtype and closes when the next gradient would overflow bucket_bytes or it is full (a
    larger gradient gets a bucket of its own; bucket_bytes=0: one bucket per gradient)."""

    def __init__(self, graph, names: list[str], bucket_bytes: int) -> None:
        self.graph, self.names, self.bucket_bytes = graph, names, bucket_bytes
        self.grads: dict[int, Tensor] = {}
        self.current: list[int] = []
        self.filled = 0
        self.started: list[tuple[list[int], Tensor]] = []  # (indices, AllReduceStart output)

    def ready(self, index: int, grad: Tensor | None) -> None:
        """The gradient of variable `index` is final: add it to the open bucket."""
        if grad is None:
            return
        grad = as_tensor(grad)
        if not grad.shape.is_fully_defined():
            raise GraphflowError(f"cannot all-reduce {grad.name}: its shape {list(grad.shape)} is not "
                                 "fully known")
        nbytes = grad.shape.num_elements() * grad.dtype.size
        if self.current and (self.grads[self.current[0]].dtype is not grad.dtype
                             or self.filled + nbytes > self.bucket_bytes):
            self._start()
        self.grads[index] = grad
        self.current.append(index)
        self.filled += nbytes
        if self.filled >= self.bucket_bytes:
            self._start()

    def _start(self) -> None:
        members, self.current, self.filled = self.current, [], 0
        b = len(self.started)
        with self.graph.as_default(), self.graph.name_scope(f"DistributedOptimizer/bucket_{b}/"):
            if len(members) == 1:
                flat = self.grads[members[0]]
            else:
                flat = concat([reshape(self.grads[i], [-1]) for i in members], 0, name="pack")
            attrs = {"key": "", "label": "", "fingerprint": ()}  # filled in by finish()
            started = make("AllReduceStart", [flat], attrs, name="allreduce_start")
        started.op.attrs["key"] = started.op.name
        self.started.append((members, started))

    def buckets(self) -> list[list[int]]:
        return [members for members, _ in self.started]

    def finish(self) -> dict[int, Tensor]:
        """Close the last bucket; variable index -> its gradient averaged over ranks."""
        if self.current:
            self._start()
        if not self.started:
            return {}
        grads = [self.grads[i] for members in self.buckets() for i in members]
        fingerprint = graph_fingerprint(grads) + [
            f"bucket {b}: " + ", ".join(f"{self.names[i]} {list(self.grads[i].shape)} "
                                        f"{self.grads[i].dtype.name}" for i in members)
            for b, members in enumerate(self.buckets())]
        reduced: dict[int, Tensor] = {}
        count = len(self.started)
        for b, (members, started) in enumerate(self.started):
            names = ", ".join(self.names[i] for i in members)
            started.op.attrs["label"] = f"all-reduce of bucket {b} of {count} (gradients of {names})"
            started.op.attrs["fingerprint"] = tuple(fingerprint)
            with self.graph.as_default(), self.graph.name_scope(f"DistributedOptimizer/bucket_{b}/"):
                mean = make("AllReduceWait", [started], dict(started.op.attrs), name="allreduce_wait")
                if len(members) == 1:
                    reduced[members[0]] = mean
                    continue
                offset = 0
                for i in members:
                    n = self.grads[i].shape.num_elements()
                    reduced[i] = reshape(mean[offset:offset + n], list(self.grads[i].shape), name="unpack")
                    offset += n
        return reduced


def make_buckets(grads: list[Tensor], bucket_bytes: int) -> list[list[int]]:
    """The buckets allreduce_gradients makes of gradients given in this order: lists of indices."""
    with grads[0].graph.as_default():
        bucketer = Bucketer(grads[0].graph, [g.op.name for g in grads], bucket_bytes)
        for i in reversed(range(len(grads))):
            bucketer.ready(i, grads[i])
        bucketer.finish()
    return bucketer.buckets()


def allreduce_gradients(grads_and_vars, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> list:
    """(mean-over-ranks gradient, variable) pairs for gradients already built: buckets fill in
    reverse variable order (the order backward produces them)."""
    pairs = list(grads_and_vars)
    if not any(g is not None for g, _ in pairs):
        return pairs
    graph = next(v.graph for g, v in pairs if g is not None)
    bucketer = Bucketer(graph, [v.op.name for _, v in pairs], bucket_bytes)
    for i in reversed(range(len(pairs))):
        bucketer.ready(i, pairs[i][0])
    reduced = bucketer.finish()
    return [(reduced.get(i), v) if g is not None else (g, v) for i, (g, v) in enumerate(pairs)]


class DistributedOptimizer:
    """Wraps a gf.train optimizer: gradients are averaged over every rank before the update.

    Feed each rank its own shard of the batch; with equal shards and a mean loss, k steps
    give the weights one process gets on the concatenated batch."""

    def __init__(self, optimizer: Optimizer, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"DistributedOptimizer wraps a gf.train optimizer, got {optimizer!r}")
        if not isinstance(bucket_bytes, int) or bucket_bytes < 0:
            raise GraphflowError(f"bucket_bytes must be an int >= 0, got {bucket_bytes!r}")
        self.optimizer, self.bucket_bytes = optimizer, bucket_bytes

    def compute_gradients(self, loss: Tensor, var_list=None) -> list[tuple[Tensor | None, Variable]]:
        """(gradient averaged over ranks, variable) pairs. Each bucket's all-reduce starts as soon
        as backward has its gradients and is waited for after the whole backward pass."""
        loss = as_tensor(loss)
        var_list = list(var_list) if var_list is not None else trainable_variables(loss.graph)
        if not var_list:
            raise GraphflowError("no variables to optimize: create trainable gf.Variables first")
        for v in var_list:
            if not isinstance(v, Variable):
                raise TypeError(f"var_list holds {v!r}, which is not a gf.Variable")
        bucketer = Bucketer(loss.graph, [v.op.name for v in var_list], self.bucket_bytes)
        with loss.graph.as_default():
            grads = gradients(loss, var_list, on_ready=bucketer.ready)
        for i, g in enumerate(grads):  # any gradient the walk did not report (none expected)
            if g is not None and i not in bucketer.grads:
                bucketer.ready(i, g)
        reduced = bucketer.finish()
        return [(reduced.get(i) if g is not None else None, v)
                for i, (g, v) in enumerate(zip(grads, var_list))]

    def apply_gradients(self, grads_and_vars, global_step: Variable | None = None,
                        name: str | None = None) -> Operation:
        """The wrapped optimizer's update (give it compute_gradients' averaged pairs)."""
        return self.optimizer.apply_gradients(grads_and_vars, global_step, name)

    def minimize(self, loss: Tensor, var_list=None, global_step: Variable | None = None,
                 name: str | None = None) -> Operation:
        """compute_gradients (averaged over ranks) then apply_gradients: one training step."""
        var_list, global_step = _tf1_order(var_list, global_step)
        return self.apply_gradients(self.compute_gradients(loss, var_list), global_step, name)

    def get_slot(self, var: Variable, name: str) -> Variable | None:
        """The wrapped optimizer's slot variable ('m', 'v', 'momentum') for var, or None."""
        return self.optimizer.get_slot(var, name)


def broadcast_variables(root: int = 0, variables=None, name: str = "broadcast_variables") -> Operation:
    """One op giving every rank root's values of `variables` (default: every global variable,
    optimizer slots included). Run it once after the initializer."""
    variables = list(global_variables() if variables is None else variables)
    if not variables:
        raise GraphflowError("broadcast_variables: no variables to broadcast; create them first")
    if not isinstance(root, int) or root < 0:
        raise GraphflowError(f"broadcast_variables: root must be a rank (an int >= 0), got {root!r}")
    fingerprint = tuple([f"broadcast from rank {root}"] + [describe(v) for v in variables])
    graph = variables[0].graph
    assigns = []
    with graph.as_default(), graph.name_scope(name):
        for v in variables:
            label = f"broadcast of {v.op.name} from rank {root}"
            value = make("Broadcast", [v], {"root": root, "label": label, "fingerprint": fingerprint})
            assigns.append(v.assign(value))
        return group(assigns, name="all")
