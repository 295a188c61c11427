"""Fusion: decide kernel boundaries for the whole lowered graph.

Elementwise ops fuse vertically (producer into consumer: one kernel, the intermediate stays
in a register) when they share an iteration space, and independent elementwise groups fuse
horizontally (one launch, one segment each: all of an optimizer's updates become one kernel).
Every other op keeps its own template kernel(s), which may take an elementwise epilogue (GEMM)
or prologue (reductions), and share a pass with a sibling that reads the same data (the
softmax beside sparse cross-entropy; a bias gradient summed by the GEMM that loads dY). The
rules, each checked here:

- a group is convex: no path leaves it and comes back (else the merged graph has a cycle);
- members of a segment have the segment's shape, or are one element (computed once per
  thread before the loop: Adam's bias-corrected learning rate, `1 - beta1`);
- a variable read before its update (start-of-run semantics) is read in an earlier kernel, or
  at the same index in the updating segment; never hoisted where the same kernel writes it;
- a kernel's parameter block stays within CUDA's limit.

$GRAPHFLOW_DEBUG=fusion prints every decision with its reason.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import networkx as nx

from graphflow.graph import _default_name
from graphflow.ops.state import ASSIGN_OPS
from graphflow.passes import LGraph, LOp, LTensor

from .emit.elementwise import SCALAR

ALIAS_OPS = ("Identity", "StopGradient", "Reshape", "ReshapeLike", "ExpandDims", "Squeeze")
HOST_OPS = ("Const", "Placeholder", "Variable", "NoOp")
ELEMENTWISE = set(SCALAR) | {"Cast", "FillLike", "AddN", "ReducedSize", "OneHot"}
INDEXED = {"OneHot"}  # elementwise ops that read their inputs at their own index, not at i
MAX_PARAMS = 200  # CUDA allows 4 KiB of parameters (32 KiB on Volta+); pointers are 8 bytes


def is_one_element(t: LTensor) -> bool:
    return None not in t.shape and all(d == 1 for d in t.shape)


@dataclass(eq=False)
class Group:
    """One kernel's worth of ops: a template op, or fused elementwise segments."""

    ops: list[LOp]
    fused: bool
    segments: list[list[LOp]] = field(default_factory=list)
    epilogue: list[LOp] = field(default_factory=list)  # elementwise ops applied to a template's output
    prologue: list[LOp] = field(default_factory=list)  # elementwise ops computing a template's input
    siblings: list[LOp] = field(default_factory=list)  # template ops sharing the template's input pass
    sibling_epilogue: list[LOp] = field(default_factory=list)  # elementwise ops on a sibling's output
    total: list[LOp] = field(default_factory=list)  # a sum or mean of all of a row kernel's outputs
    store: tuple | None = None  # (Concat, reshapes/transposes): a GEMM storing into a concatenation
    recompute: dict = field(default_factory=dict)  # operand index -> a thin GEMM group computing it

    @property
    def first(self) -> int:
        return min(op.id for op in self.ops)

    def shape(self) -> tuple | None:
        """The iteration shape of a single-segment elementwise group (None: one element); its
        ops may see the same elements reshaped (see same_space)."""
        big = [op.outputs[0].shape for op in self.ops if not is_one_element(op.outputs[0])]
        return tuple(big[0]) if big else None

    def title(self) -> str:
        return "+".join(op.name for op in self.ops[:3]) + ("..." if len(self.ops) > 3 else "")


class Debug:
    def __init__(self) -> None:
        self.on = "fusion" in os.environ.get("GRAPHFLOW_DEBUG", "").split(",")
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        self.lines.append(text)
        if self.on:
            print(f"[fusion] {text}")


def same_space(a: tuple | None, b: tuple | None) -> bool:
    """Do iteration shapes a and b walk the same elements in the same flat order? Equal, or
    static with the same count (a reshape of a contiguous value keeps the flat order)."""
    if a is None or b is None:
        return a is b
    if tuple(a) == tuple(b):
        return True
    return None not in a and None not in b and _count(a) == _count(b)


def _count(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def alias_root(t: LTensor) -> LTensor:
    """The tensor whose buffer t shares: through reshape-like (alias) ops to their input."""
    while t.op.type in ALIAS_OPS:
        t = t.op.inputs[0]
    return t


def inlinable(op: LOp) -> bool:
    """An elementwise op without effects whose inputs are uniform (one element, or inlined): its
    value is the same at every index (Adam's lr_t; a mean's gradient broadcast to the batch), so
    it is recomputed once per thread where used, never a kernel of its own unless its value
    leaves the fused code."""
    return op.type in ELEMENTWISE and op.type not in ASSIGN_OPS and op.type not in INDEXED \
        and bool(op.outputs)


def expand(t: LTensor, inline: set) -> list[LTensor]:
    """The tensors a use of t loads: t itself, or the leaves of its inlined chain."""
    out, stack, seen = [], [t], set()
    while stack:
        x = stack.pop()
        if x in seen:
            continue
        seen.add(x)
        if x.op in inline:
            stack.extend(_loaded_inputs(x.op))
        else:
            out.append(x)
    return out


def _loaded_inputs(op: LOp) -> list[LTensor]:
    """Inputs an elementwise op reads values from (shape references and assign targets are not)."""
    if op.type in ALIAS_OPS:
        return list(op.inputs[:1])
    if op.type in ("BroadcastLike", "FillLike", "ReducedSize"):
        return list(op.inputs[:1]) if op.type == "BroadcastLike" else []
    if op.type == "Assign":
        return [op.inputs[1]]
    return list(op.inputs)


def external_reads(ops: list[LOp], inline: set) -> list[tuple[LTensor, bool]]:
    """(tensor, through an inlined chain) for every value the ops read from outside them."""
    return [(x, x is not t) for t, x in _read_pairs(ops, inline)]


def _read_pairs(ops: list[LOp], inline: set) -> list[tuple[LTensor, LTensor]]:
    """(input used, tensor loaded for it) for every value the ops read from outside them."""
    inside = {op.outputs[0] for op in ops if op.outputs}
    reads = []
    for op in ops:
        for t in (_loaded_inputs(op) if op.type in ELEMENTWISE else op.inputs):
            if t in inside or (op.type in ELEMENTWISE and alias_root(t) in inside):
                continue
            reads += [(t, x) for x in expand(t, inline) if x not in inside]
    return reads


def plan_groups(graph: LGraph, fuse: bool = True) -> tuple[list[Group], set, set]:
    """(groups of ops in launch order, the one-element ops inlined where used, the view ops
    that GEMMs read in place: see views.py). Host, alias and view ops make no kernel."""
    from .views import concat_stores, view_ops
    debug = Debug()
    users = graph.consumers()
    fetched = graph.live_outputs()
    views = view_ops(graph, fetched, users) if fuse else set()
    for op in sorted(views, key=lambda op: op.id):
        debug(f"view {op.name} ({op.type}): no kernel, the GEMMs reading it index its source")
    stores = concat_stores(graph, fetched, users) if fuse else {}
    storeless = {op for concat, chain in stores.values() for op in [concat, *chain]}
    for m, (concat, _) in sorted(stores.items(), key=lambda kv: kv[0].id):
        debug(f"store {m.name} into {concat.name}: the GEMM writes its part of the "
              "concatenation, which makes no kernel")
    inline = set()
    if fuse:
        for op in graph.ops:  # in topological order: inputs are decided first
            if op.type in ALIAS_OPS:  # a view of a uniform value is uniform
                if op.inputs and op.inputs[0].op in inline:
                    inline.add(op)
            elif inlinable(op) and all(x.op in inline or (x.op.type in HOST_OPS and is_one_element(x))
                                       for x in _loaded_inputs(op)):
                inline.add(op)

    def only_fused_users(t: LTensor) -> bool:
        return t not in fetched and all(
            u.type in ELEMENTWISE or (u in inline and u.type in ALIAS_OPS
                                      and only_fused_users(u.outputs[0]))
            for u in users.get(t, []))

    ops = [op for op in graph.ops if op.type not in HOST_OPS and op.type not in ALIAS_OPS
           and op not in views and op not in storeless]
    group_of: dict[LOp, Group] = {}
    groups: list[Group] = []
    for op in ops:
        if op in inline:
            if only_fused_users(op.outputs[0]):
                what = "one element" if is_one_element(op.outputs[0]) else "the same value everywhere"
                debug(f"inline {op.name} ({op.type}): {what}, recomputed where it is used")
                continue
            # a template reads it from memory: it is a kernel's output, and every reader (a
            # uniform chain built on it too) loads it, so the dependency is an edge of the DAG
            inline.discard(op)
        g = Group([op], op.type in ELEMENTWISE and fuse, [[op]])
        if op in stores:
            g.store = stores[op]
        group_of[op] = g
        groups.append(g)
    # readers of a stored concatenation wait for every GEMM writing part of it
    writers = {concat.outputs[0]: [group_of[m] for m, (c, _) in stores.items() if c is concat]
               for concat, _ in stores.values()}
    dag = _group_dag(graph, group_of, groups, inline, views, writers)
    if fuse:
        _fuse_vertically(graph, group_of, groups, dag, inline, debug)
        _fuse_epilogues(graph, group_of, groups, dag, inline, debug)
        _fuse_prologues(group_of, groups, dag, debug)
        _fuse_row_siblings(groups, dag, debug)
        _fuse_loss_totals(groups, dag, debug)
        _fuse_column_sums(graph, group_of, groups, dag, inline, debug)
        _recompute_thin_gemms(graph, group_of, groups, dag, inline, fetched, views, debug)
        _fuse_horizontally(groups, dag, inline, debug)
    order = list(nx.lexicographical_topological_sort(dag, key=lambda g: g.first))
    for g in order:
        for seg in g.segments:
            seg.sort(key=lambda op: op.id)
        g.epilogue.sort(key=lambda op: op.id)
        g.prologue.sort(key=lambda op: op.id)
        g.ops = (g.prologue + [op for seg in g.segments for op in seg] + g.epilogue + g.siblings
                 + g.sibling_epilogue + g.total)
    return order, inline, views


EPILOGUE_TEMPLATES = ("MatMul", "Gather", "Softmax", "SoftmaxGrad", "Standardize", "StandardizeGrad")
# epilogues along the last axis only
ROW_TEMPLATES = ("Softmax", "SoftmaxGrad", "Standardize", "StandardizeGrad")
# template -> the input its prologue computes
PROLOGUE_TEMPLATES = {"ReduceSum": 0, "ReduceMean": 0, "ReduceMax": 0, "ReduceMin": 0, "SumToLike": 0,
                      "StandardizeGrad": 1, "SoftmaxGrad": 1}


def _fuse_prologues(group_of, groups, dag, debug) -> None:
    """A reduction (or a row kernel) computes the elementwise group that produces its input
    while it loads it (values other kernels need are stored by the one pass that does)."""
    for g in list(groups):
        if g.fused or g.ops[0].type not in PROLOGUE_TEMPLATES or g not in dag or g.prologue:
            continue
        x = g.ops[0].inputs[PROLOGUE_TEMPLATES[g.ops[0].type]]
        p = group_of.get(x.op)
        if p is None or not p.fused or len(p.segments) != 1 or p not in dag:
            continue
        if p.shape() != tuple(x.shape) or any(op.type in ASSIGN_OPS for op in p.ops):
            continue
        if _merge_creates_cycle(dag, p, g):
            debug(f"keep {p.title()} | {g.title()} apart: a path between them leaves the group")
            continue
        debug(f"fuse {p.title()} into the loads of {g.title()}: computed as the reduction reads it")
        g.prologue = list(p.ops)
        g.ops = p.ops + g.ops
        _contract(dag, g, p, group_of, groups)


def _fuse_row_siblings(groups, dag, debug) -> None:
    """Sparse softmax cross-entropy and the softmax of the same logits (its gradient's) share
    one row kernel: the row's max and sum of exponentials are computed once for both, and the
    softmax's epilogue (the gradient's `(p - onehot) * g`) runs on its values there."""
    def plain(g: Group, kind: str) -> bool:
        return (not g.fused and not g.epilogue and not g.prologue and not g.siblings
                and len(g.ops) == 1 and g.ops[0].type == kind)

    softmaxes = [g for g in groups if not g.fused and g.ops[0].type == "Softmax" and not g.prologue
                 and not g.siblings]  # with its epilogue, if it has one
    for g in [g for g in groups if plain(g, "SparseSoftmaxCrossEntropy")]:
        logits = alias_root(g.ops[0].inputs[0])
        for s in softmaxes:
            op = s.ops[0]
            if s not in dag or alias_root(op.inputs[0]) != logits or op.inputs[0].shape != logits.shape \
                    or op.attrs["axis"] not in (-1, len(logits.shape) - 1):
                continue
            if _merge_creates_cycle(dag, g, s):
                continue
            debug(f"fuse {s.title()} beside {g.title()}: one pass over the same logits rows")
            g.siblings = [op]
            g.epilogue = s.epilogue  # the softmax's: applied to its values in the same loop
            g.ops = g.ops + s.ops
            _contract(dag, g, s, {}, groups)
            softmaxes.remove(s)
            break


def _fuse_loss_totals(groups, dag, debug) -> None:
    """The mean (or sum) of every per-row cross-entropy is taken by the loss kernel itself: the
    thread finishing the last rows adds up all rows' losses, in row order (reduce_mean of the
    loss)."""
    for g in [g for g in groups if not g.fused and g.ops[0].type == "SparseSoftmaxCrossEntropy"
              and not g.prologue and not g.total]:
        losses = g.ops[0].outputs[0]
        for r in groups:
            op = r.ops[0]
            if r.fused or r.prologue or len(r.ops) != 1 or op.type not in ("ReduceMean", "ReduceSum") \
                    or r not in dag or alias_root(op.inputs[0]) != losses \
                    or not is_one_element(op.outputs[0]) \
                    or len(op.attrs["axis"]) != len(op.inputs[0].shape):
                continue
            if _merge_creates_cycle(dag, g, r):
                continue
            debug(f"fuse {r.title()} into {g.title()}: the thread done last totals every row's loss")
            g.total = [op]
            g.ops = g.ops + r.ops
            _contract(dag, g, r, {}, groups)
            break


def _column_sum_input(g: Group) -> LTensor | None:
    """x, when g is a lone reduction of a [K, N] x over axis 0 into N values (a bias gradient)."""
    if g.fused or g.epilogue or g.prologue or g.siblings or len(g.ops) != 1:
        return None
    op = g.ops[0]
    x = op.inputs[0] if op.inputs else None
    if x is None or len(x.shape) != 2 or x.shape[1] is None:
        return None
    n = x.shape[1]
    if op.type == "SumToLike" and tuple(op.inputs[1].shape) in ((n,), (1, n)):
        return x
    if op.type == "ReduceSum" and list(op.attrs["axis"]) == [0]:
        return x
    return None


def _fuse_column_sums(graph, group_of, groups, dag, inline, debug) -> None:
    """A bias gradient (the column sums of dY) is computed by the GEMM that reads dY as its B
    operand (dW = X^T dY): the tiles of the first row block sum the B values they load, and
    apply the elementwise group that consumes the sums (the bias's update) before storing."""
    users = graph.consumers()
    gemms = [g for g in groups if not g.fused and g.ops[0].type == "MatMul" and not g.siblings
             and len(g.ops[0].inputs[0].shape) == 2
             and len(g.ops[0].inputs[1].shape) == 2 and not g.ops[0].attrs["transpose_b"]]
    for r in list(groups):
        x = _column_sum_input(r)
        if x is None or r not in dag:
            continue
        for m in gemms:
            b = m.ops[0].inputs[1]
            if m not in dag or alias_root(b) != alias_root(x) or tuple(b.shape) != tuple(x.shape) \
                    or b.dtype != r.ops[0].outputs[0].dtype:
                continue
            if _merge_creates_cycle(dag, m, r):
                continue
            debug(f"fuse {r.title()} into {m.title()}: the column sums of its B operand, "
                  "summed as the GEMM loads it")
            m.siblings = [r.ops[0]]
            m.ops = m.ops + r.ops
            _contract(dag, m, r, group_of, groups)
            gemms.remove(m)
            total = r.ops[0].outputs[0]
            e = _epilogue_taker(users, group_of, total)
            if e is not None and e is not m and e in dag and e.shape() == tuple(total.shape) \
                    and _hazard(e.ops, e.shape(), inline) is None \
                    and not _merge_creates_cycle(dag, m, e):
                debug(f"fuse {e.title()} into {m.title()}: applied to each column sum before it "
                      "is stored")
                m.sibling_epilogue = list(e.ops)
                m.ops = m.ops + e.ops
                _contract(dag, m, e, group_of, groups)
            break


THIN_K = 16  # a GEMM this thin (K <= 16) is recomputed by the GEMMs that read its result


def _recompute_thin_gemms(graph, group_of, groups, dag, inline, fetched, views, debug) -> None:
    """A GEMM with a short K whose result (after its epilogue) only GEMMs read makes no kernel:
    each reader computes the elements it packs (K multiply-adds and the epilogue each). The
    hidden layer's gradient `dH = relu'(.) * (dlogits @ W^T)` (K = the classes) never reaches
    memory; the GEMM `dW = X^T dH` computes it as it loads it."""
    from .views import source
    users = graph.consumers()
    for p in [g for g in groups if not g.fused and g.ops[0].type == "MatMul"]:
        mm = p.ops[0]
        a, b = mm.inputs
        if p.siblings or p.store or p.prologue or p.total or p.recompute or p not in dag \
                or any(op.type in ASSIGN_OPS for op in p.ops) \
                or len(a.shape) != 2 or len(b.shape) != 2 \
                or any(source(t, views) is not alias_root(t) for t in (a, b)):  # not a view's reader
            continue
        k = a.shape[0] if mm.attrs["transpose_a"] else a.shape[1]
        n = b.shape[0] if mm.attrs["transpose_b"] else b.shape[1]
        if k is None or n is None or k > THIN_K or (mm.attrs["transpose_a"] and a.shape[1] is None):
            continue
        leaving = {op.outputs[0] for op in p.ops
                   if op.outputs[0] in fetched or any(u not in p.ops for u in users.get(op.outputs[0], []))}
        if len(leaving) != 1:
            continue
        final = leaving.pop()
        readers = users.get(final, [])
        takers = [group_of.get(u) for u in readers]
        if final in fetched or not readers or any(  # GEMMs, and column sums such a GEMM takes
                t is None or t is p or not (t.ops[0] is u and u.type == "MatMul" or u in t.siblings)
                for u, t in zip(readers, takers)):
            continue
        gemm_reads = [x for u in readers if u.type == "MatMul" for x in u.inputs if x is final]
        if len(gemm_reads) != 1:  # never recomputed by several consumers: W2's dH2 feeds dW2
            debug(f"keep {p.title()}: {len(gemm_reads)} GEMM operands read it, each would "
                  "recompute it")  # and dH1, and redoing it in both cost more than its store
            continue
        reads = {alias_root(t).op for t, _ in external_reads(p.ops, inline)}
        if any(alias_root(op.inputs[0]).op in reads for t in takers for op in t.ops if op.type in ASSIGN_OPS):
            continue  # a reader updates a variable this GEMM reads
        later = [x for x in dag.successors(p) if x not in takers]  # e.g. the update of what p reads
        if any(nx.has_path(dag, x, t) for x in later for t in set(takers)):
            continue  # a reader would have to run both before and after it
        debug(f"recompute {p.title()} in {', '.join(t.title() for t in set(takers))}: K = {k}, "
              "each reader computes the elements it loads")
        for u, t in zip(readers, takers):
            for index, x in enumerate(u.inputs if u.type == "MatMul" else ()):
                if x is final:
                    t.recompute[index] = p
        for t in set(takers):  # the readers now read what p read, before what p preceded
            for pred in dag.predecessors(p):
                dag.add_edge(pred, t)
            for succ in later:
                dag.add_edge(t, succ)
        dag.remove_node(p)
        groups.remove(p)
        for op in p.ops:
            group_of[op] = takers[0]


def _last_axis(op: LOp) -> bool:
    return op.attrs["axis"] in (-1, len(op.inputs[0].shape) - 1)


def _epilogue_taker(users: dict, group_of: dict, out: LTensor) -> Group | None:
    """The one fused single-segment group reading `out`, if exactly one reads it; groups that
    only feed a reduction are left to become its prologue (layer norm's `dy * xhat`)."""
    takers = {group_of[u] for u in users.get(out, []) if u in group_of}
    candidates = [c for c in takers if c.fused and len(c.segments) == 1]
    if len(candidates) > 1:
        candidates = [c for c in candidates if not _feeds_only_a_reduction(c, users, group_of)]
    return candidates[0] if len(candidates) == 1 else None


def _feeds_only_a_reduction(g: Group, users: dict, group_of: dict) -> bool:
    outs = [op.outputs[0] for op in g.ops if op.outputs]
    readers = {group_of.get(u) for t in outs for u in users.get(t, [])} - {g}
    return len(readers) == 1 and all(
        r is not None and not r.fused and r.ops[0].type in PROLOGUE_TEMPLATES for r in readers)


def _update_fits(template: Group, e: Group, inline: set) -> bool:
    """May the variable updates in `e` run in the template's epilogue? Each element is read and
    written by the thread that computes it, and the template does not read the variable."""
    written = {alias_root(op.inputs[0]).op for op in e.ops if op.type in ASSIGN_OPS}
    if not written:
        return True
    if template.ops[0].type != "MatMul" or _hazard(e.ops, e.shape(), inline) is not None:
        return False
    return not any(alias_root(t).op in written for t in template.ops[0].inputs)


def _fuse_epilogues(graph, group_of, groups, dag, inline, debug) -> None:
    """A template kernel applies the elementwise group that consumes its output, in
    registers, before storing (a GEMM's bias, activation, residual, activation derivative, and
    the update of the variable whose gradient it computes)."""
    users = graph.consumers()
    for g in list(groups):
        if g.fused or g.ops[0].type not in EPILOGUE_TEMPLATES or g not in dag:
            continue
        if g.ops[0].type in ROW_TEMPLATES and not _last_axis(g.ops[0]):
            continue  # the row kernel's flat index is the element's only along the last axis
        out = g.ops[0].outputs[0]
        e = _epilogue_taker(users, group_of, out)
        if e is None:
            continue
        if not same_space(e.shape(), tuple(out.shape)):
            debug(f"keep {g.title()} | {e.title()} apart: the elementwise group does not iterate "
                  "over the GEMM's output")
            continue
        if not _update_fits(g, e, inline):
            continue
        if _merge_creates_cycle(dag, g, e):
            debug(f"keep {g.title()} | {e.title()} apart: a path between them leaves the group")
            continue
        debug(f"fuse {e.title()} into the epilogue of {g.title()}: elementwise on each output "
              "element before it is stored")
        g.epilogue = list(e.ops)
        g.ops = g.ops + e.ops
        _contract(dag, g, e, group_of, groups)


def _group_dag(graph: LGraph, group_of: dict, groups: list, inline: set, views: set,
               writers: dict) -> nx.DiGraph:
    """Data edges between groups (a view's readers depend on its source's producer; a stored
    concatenation's on every GEMM writing part of it), plus read-before-update edges for
    variables."""
    from .views import source
    dag = nx.DiGraph()
    dag.add_nodes_from(groups)
    readers: dict[LOp, set] = {}
    for g in groups:
        for t, _ in external_reads(g.ops, inline):
            root = source(t, views)
            for w in writers.get(root, ()):
                if w is not g:
                    dag.add_edge(w, g)
            if root.op in group_of and group_of[root.op] is not g:
                dag.add_edge(group_of[root.op], g)
            if root.op.type == "Variable":
                readers.setdefault(root.op, set()).add(g)
    for g in groups:
        for op in g.ops:
            if op.type in ASSIGN_OPS:
                for r in readers.get(alias_root(op.inputs[0]).op, ()):
                    if r is not g:
                        dag.add_edge(r, g)
    return dag


def _merge_creates_cycle(dag: nx.DiGraph, a: Group, b: Group) -> bool:
    """Would contracting a and b make a cycle? Only via a path a -> x -> b (or b -> x -> a)."""
    for src, dst in ((a, b), (b, a)):
        stack = [s for s in dag.successors(src) if s is not dst]
        seen = set(stack)
        while stack:  # depth-first from src's other successors, looking for dst
            for s in dag.successors(stack.pop()):
                if s is dst:
                    return True
                if s not in seen:
                    seen.add(s)
                    stack.append(s)
    return False


def _contract(dag: nx.DiGraph, keep: Group, gone: Group, group_of: dict, groups: list) -> None:
    for p in list(dag.predecessors(gone)):
        if p is not keep:
            dag.add_edge(p, keep)
    for s in list(dag.successors(gone)):
        if s is not keep:
            dag.add_edge(keep, s)
    dag.remove_node(gone)
    groups.remove(gone)
    for op in gone.ops:
        group_of[op] = keep


def _hazard(ops: list[LOp], shape, inline: set, pairs: list | None = None) -> str | None:
    """Why one segment of `ops` cannot update a variable it also reads, or None. Safe only
    when each element is read and written by the same thread (or one thread does all).
    `pairs`: the ops' `_read_pairs`, when the caller has them."""
    if shape is None:
        return None
    written = {alias_root(op.inputs[0]).op: op for op in ops if op.type in ASSIGN_OPS}
    if not written:
        return None
    for used, t in pairs if pairs is not None else _read_pairs(ops, inline):  # t: the load
        inlined = t is not used
        root = alias_root(t)
        if root.op in written and (inlined or t is not root or tuple(root.shape) != shape
                                   or is_one_element(root)):
            return f"{root.op.name} is read (not element by element) where " \
                   f"{written[root.op].name} updates it"
    return None


def _param_count(pairs: list[tuple[LTensor, LTensor]], op_count: int) -> int:
    """A fused kernel's parameters: each tensor it loads (from `_read_pairs`), and one per op."""
    return len({x for _, x in pairs}) + op_count


def _fuse_vertically(graph, group_of, groups, dag, inline, debug) -> None:
    for op in [op for op in graph.ops if op in group_of and group_of[op].fused]:
        for t in op.inputs:
            producer = group_of.get(alias_root(t).op)  # through reshapes: the same elements
            mine = group_of[op]
            if producer is None or producer is mine or not producer.fused:
                continue
            reason = _why_not_vertical(producer, mine, dag, inline)
            if reason:
                debug(f"keep {producer.title()} | {mine.title()} apart: {reason}")
                continue
            debug(f"fuse {producer.title()} -> {mine.title()}: elementwise, same iteration space")
            mine.ops = producer.ops + mine.ops
            mine.segments = [mine.ops]
            _contract(dag, mine, producer, group_of, groups)


def _why_not_vertical(a: Group, b: Group, dag, inline) -> str | None:
    sa, sb = a.shape(), b.shape()
    if not same_space(sa, sb):
        shown = [list(s) if s is not None else "one element" for s in (sa, sb)]
        return f"iteration spaces differ ({shown[0]} vs {shown[1]})"
    if _merge_creates_cycle(dag, a, b):
        return "a path between them leaves the group (fusing would make a cycle)"
    ops = a.ops + b.ops
    pairs = _read_pairs(ops, inline)
    hazard = _hazard(ops, sa, inline, pairs)
    if hazard:
        return hazard
    if _param_count(pairs, len(ops)) > MAX_PARAMS:
        return "the parameter block would exceed CUDA's limit"
    return None


def _fuse_horizontally(groups, dag, inline, debug) -> None:
    """Merge independent elementwise groups of the same kind (updates with updates, others by
    depth), so each merge joins work that is ready at the same time."""
    depth: dict = {}
    for g in nx.topological_sort(dag):
        depth[g] = 1 + max((depth[p] for p in dag.predecessors(g)), default=0)
    updates = lambda g: any(op.type in ASSIGN_OPS for op in g.ops)  # noqa: E731
    fused = sorted((g for g in groups if g.fused), key=lambda g: (not updates(g), depth[g], g.first))
    buckets: list[Group] = []
    reads = {g: _read_pairs(g.ops, inline) for g in fused}  # what _params counts, per group

    def merged_reads(a: Group, b: Group) -> list:  # _read_pairs(a.ops + b.ops), from each one's
        def outside(pairs: list, other: Group) -> list:
            made = {op.outputs[0] for op in other.ops if op.outputs}
            return [(t, x) for t, x in pairs if t not in made and alias_root(t) not in made
                    and x not in made]  # (all ops here are elementwise)
        return outside(reads[a], b) + outside(reads[b], a)

    for g in fused:
        for bucket in buckets:
            if updates(bucket) != updates(g) or (not updates(g) and depth[bucket] != depth[g]):
                continue
            if dag.has_edge(bucket, g) or dag.has_edge(g, bucket) or _merge_creates_cycle(dag, bucket, g):
                continue
            both = merged_reads(bucket, g)
            if _param_count(both, len(bucket.ops) + len(g.ops)) > MAX_PARAMS:
                continue
            reads[bucket] = both
            debug(f"fuse {g.title()} beside {bucket.title()}: independent elementwise groups "
                  "(one launch, one segment each)")
            bucket.ops = bucket.ops + g.ops
            bucket.segments = bucket.segments + g.segments
            _contract(dag, bucket, g, {}, groups)
            break
        else:
            buckets.append(g)


def type_names(ops: list) -> list[str]:
    """The ops' types as names go (`one_hot`, `sum_to_like`), each once, in order: what a
    fused kernel's name lists."""
    return list(dict.fromkeys(_default_name(op.type) for op in ops))


def kernel_base_name(group: Group) -> str:
    """What the kernel computes: the op types fused into it, or the optimizer it updates."""
    types = type_names(group.ops)
    if any(op.type in ASSIGN_OPS for op in group.ops):
        scopes = {op.origins[0].name.split("/")[0] for op in group.ops if op.type in ASSIGN_OPS}
        scope = scopes.pop().lower() if len(scopes) == 1 else "assign"
        return f"{scope}_update_all" if len(group.segments) > 1 else f"{scope}_update"
    return "fused_" + "_".join(types[:4]) if len(group.ops) > 1 else types[0]
