"""The lowered graph: a plan-local, rewritable copy of the ops one Session plan runs.

The user's Graph is append-only; passes never touch it. Lowering copies the pruned
subgraph into LOps that look like Operations to every consumer (emitters, the shape
rules, the numpy reference): `.type .inputs .outputs .attrs .name .site .describe()`.
Each LOp also keeps `origins`, the user's Operations it stands for, so kernel comments,
dumps and errors still name the user's file:line after any rewrite.
"""
from __future__ import annotations

from collections.abc import Iterable

from .. import registry
from ..graph import Operation, Tensor, TensorShape
from ..registry import Spec


class LTensor:
    """Output `value_index` of an LOp; hashable by identity like Tensor."""

    __slots__ = ("op", "value_index", "shape", "dtype")

    def __init__(self, op: LOp, index: int, spec: Spec) -> None:
        self.op, self.value_index = op, index
        self.shape, self.dtype = TensorShape(spec.shape), spec.dtype

    @property
    def name(self) -> str:
        return f"{self.op.name}:{self.value_index}"

    def spec(self) -> Spec:
        return Spec(tuple(self.shape), self.dtype)

    def __repr__(self) -> str:
        return f"<LTensor {self.name} {list(self.shape)} {self.dtype.name}>"


class LOp:
    """A node of the lowered graph (see module docstring)."""

    def __init__(self, type_: str, name: str, inputs: list[LTensor], attrs: dict,
                 origins: list[Operation], spec: Spec | None, state: Operation | None = None) -> None:
        self.type, self.name, self.inputs, self.attrs = type_, name, list(inputs), dict(attrs)
        self.origins = list(origins)
        self.state = state  # the user's op whose Session state this reads or writes
        self.outputs = [LTensor(self, 0, spec)] if spec is not None else []
        self.id = 0  # position in the lowered order, renumbered by LGraph.renumber()

    @property
    def op_def(self) -> registry.OpDef:
        return registry.get(self.type)

    @property
    def site(self) -> str:
        return self.origins[0].site if self.origins else "<compiler>"

    @property
    def grad_of(self) -> Operation | None:
        return next((o.grad_of for o in self.origins if o.grad_of is not None), None)

    def describe(self) -> str:
        return f"op '{self.name}' ({self.type}, defined at {self.site})"

    def __repr__(self) -> str:
        return f"<LOp {self.name} {self.type}>"


class LGraph:
    """The ops of one plan in a topological order, its fetches, feeds and side effects."""

    def __init__(self, ops: list[LOp], fetches: list, feeds: dict, targets: list[LOp]) -> None:
        self.ops = ops
        self.fetches = fetches      # per user fetch: an LTensor, or None for an Operation
        self.feeds = feeds          # user Tensor -> its Placeholder LOp's output
        self.targets = targets      # ops that must run for their effect (assigns, fetched ops)
        self.renumber()

    def renumber(self) -> None:
        for i, op in enumerate(self.ops):
            op.id = i

    def consumers(self) -> dict[LTensor, list[LOp]]:
        users: dict[LTensor, list[LOp]] = {}
        for op in self.ops:
            for t in op.inputs:
                users.setdefault(t, []).append(op)
        return users

    def replace_uses(self, old: LTensor, new: LTensor) -> None:
        """Every use of `old` (inputs and fetches) now reads `new`."""
        self.rename({old: new})

    def rename(self, renamed: dict[LTensor, LTensor]) -> None:
        """Every use of a key (inputs and fetches) now reads its value: one pass for many
        replacements (a pass walking ops in order resolves each op's inputs as it reaches
        it, then renames the rest, see cse.py)."""
        if renamed:
            for op in self.ops:
                op.inputs = [renamed.get(t, t) for t in op.inputs]
            self.fetches = [renamed.get(t, t) for t in self.fetches]

    def live_outputs(self) -> set[LTensor]:
        """Tensors whose values leave the graph: fetched ones."""
        return {t for t in self.fetches if t is not None}


def lower(order: list[Operation], fetches: list, feeds: Iterable[Tensor]) -> LGraph:
    """Copy the plan's ops into an LGraph. Fed tensors become Placeholder LOps; ops that only
    ran to group others (NoOp) vanish; control dependencies order effects (kept as targets)."""
    fed = set(feeds)
    made: dict[Tensor, LTensor] = {}
    ops: list[LOp] = []
    feed_map: dict[Tensor, LTensor] = {}
    targets: list[LOp] = []
    fetch_ops = {x for x in fetches if isinstance(x, Operation)}
    by_op: dict[Operation, LOp] = {}
    for t in sorted(fed, key=lambda t: t.op.id):  # fed tensors are inputs, whatever made them
        lop = LOp("Placeholder", t.op.name, [], {"shape": tuple(t.shape), "dtype": t.dtype},
                  [t.op], t.spec(), state=t.op)
        feed_map[t] = made[t] = lop.outputs[0]
        ops.append(lop)
    for op in order:
        if (op.outputs and op.outputs[0] in fed) or op.type == "NoOp":
            continue
        lop = LOp(op.type, op.name, [made[t] for t in op.inputs], op.attrs, [op],
                  op.outputs[0].spec() if op.outputs else None,
                  state=op if op.op_def.stateful else None)
        by_op[op] = lop
        if op.outputs:
            made[op.outputs[0]] = lop.outputs[0]
        ops.append(lop)
        if op.type in ("Assign", "AssignAdd", "AssignSub") or op in fetch_ops:
            targets.append(lop)
    lfetches = [made.get(x) if isinstance(x, Tensor) else None for x in fetches]
    return LGraph(ops, lfetches, feed_map, targets)
