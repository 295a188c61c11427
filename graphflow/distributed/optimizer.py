"""Data parallelism in the graph: gradients averaged over ranks, variables broadcast from root.

DistributedOptimizer wraps any gf.train optimizer: its gradients are packed into buckets
(reshape to 1-D + concat: fused copy kernels), each bucket is one AllReduce node, and the
averaged buffer is split back (slice + reshape) before the wrapped optimizer's update.
Buckets fill in reverse variable order, the order backward produces gradients.
"""
from __future__ import annotations

from ..errors import GraphflowError
from ..graph import Operation, Tensor
from ..ops.array import concat, reshape
from ..ops.core import as_tensor, group, make
from ..train.optimizers import Optimizer, _tf1_order
from ..variables import Variable, global_variables
from .ops import describe, graph_fingerprint

DEFAULT_BUCKET_BYTES = 16 << 20


def make_buckets(grads: list[Tensor], bucket_bytes: int) -> list[list[int]]:
    """Indices into grads, grouped: same dtype, at most bucket_bytes each (a larger gradient
    gets a bucket of its own; bucket_bytes=0 means one bucket per gradient)."""
    buckets: list[list[int]] = []
    filled = 0
    for i in reversed(range(len(grads))):
        nbytes = grads[i].shape.num_elements() * grads[i].dtype.size
        last = buckets[-1] if buckets else None
        if (last is None or grads[last[0]].dtype is not grads[i].dtype
                or filled + nbytes > bucket_bytes):
            buckets.append([i])
            filled = nbytes
        else:
            last.append(i)
            filled += nbytes
    return buckets


def allreduce_gradients(grads_and_vars, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> list:
    """(mean-over-ranks gradient, variable) pairs: one AllReduce node per bucket."""
    pairs = list(grads_and_vars)
    present = [(i, as_tensor(g)) for i, (g, _) in enumerate(pairs) if g is not None]
    if not present:
        return pairs
    for _, g in present:
        if not g.shape.is_fully_defined():
            raise GraphflowError(f"cannot all-reduce {g.name}: its shape {list(g.shape)} is not "
                                 "fully known")
    grads = [g for _, g in present]
    buckets = make_buckets(grads, bucket_bytes)
    fingerprint = graph_fingerprint(grads)
    for b, members in enumerate(buckets):
        fingerprint.append(f"bucket {b}: " + ", ".join(
            f"{pairs[present[i][0]][1].op.name} {list(grads[i].shape)} {grads[i].dtype.name}"
            for i in members))
    fingerprint = tuple(fingerprint)
    graph = grads[0].graph
    reduced: dict[int, Tensor] = {}
    with graph.as_default(), graph.name_scope("DistributedOptimizer"):
        for b, members in enumerate(buckets):
            names = ", ".join(pairs[present[i][0]][1].op.name for i in members)
            label = f"all-reduce of bucket {b} of {len(buckets)} (gradients of {names})"
            attrs = {"label": label, "fingerprint": fingerprint}
            if len(members) == 1:
                (i,) = members
                reduced[i] = make("AllReduce", [grads[i]], attrs, name=f"allreduce_{b}")
                continue
            with graph.name_scope(f"bucket_{b}"):
                flat = concat([reshape(grads[i], [-1]) for i in members], 0, name="pack")
                mean = make("AllReduce", [flat], attrs, name="allreduce")
                start = 0
                for i in members:
                    n = grads[i].shape.num_elements()
                    reduced[i] = reshape(mean[start:start + n], list(grads[i].shape), name="unpack")
                    start += n
    out = list(pairs)
    for j, (i, _) in enumerate(present):
        out[i] = (reduced[j], pairs[i][1])
    return out


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
        """The wrapped optimizer's (gradient, variable) pairs, each gradient averaged over ranks."""
        return allreduce_gradients(self.optimizer.compute_gradients(loss, var_list), self.bucket_bytes)

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
