"""Graph pictures for each compile stage, as Graphviz DOT text (and SVG/PNG through `dot`).

    gf.viz.draw(graph, "model.svg", stage="built")            # the user's ops as built
    gf.viz.draw(graph, "grad.svg", stage="grad")              # gradient ops dashed and orange
    gf.viz.draw(graph, "opt.svg", stage="optimized", fetches=[loss])   # the lowered graph after passes
    gf.viz.draw(compiled, "fused.svg", stage="fused")         # one cluster per kernel
    text = gf.viz.to_dot(graph, stage="grad", scope="dense")   # DOT text only

Stages: `built` is the forward graph (ops that are not gradient ops and read no gradient);
`grad` is every op, gradient ops (`op.grad_of` set) dashed and orange; `optimized` is the
plan's lowered graph (graphflow/passes) after the pass pipeline; `fused` draws the same ops
inside one cluster per kernel, labelled with the kernel's name (host ops such as
placeholders, variables and constants, and buffer aliases such as reshapes, stay outside).
`source` is a Graph (then `fetches`, tensors/ops or their names, pick the subgraph; without
them `built`/`grad` show every op and `optimized`/`fused` take every op nothing consumes)
or a `Compiled` from `sess.make_callable` (its plan; `fused` then shows its real kernels).

Large graphs stay legible: a name scope with more than `collapse` ops is drawn as one node
(`scope/ (N ops)`), and `scope="a/b"` shows only the ops under that scope (inputs from
outside drawn as small grey nodes). The DOT text is deterministic (node ids follow the
graph's order). Rendering needs Graphviz's `dot` program (`apt-get install graphviz`).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence

from .errors import GraphflowError
from .graph import Graph, Operation, Tensor

__all__ = ["STAGES", "VizError", "draw", "render", "to_dot"]

STAGES = ("built", "grad", "optimized", "fused")
HOST_TYPES = ("Placeholder", "Variable", "Const")
ALIAS_TYPES = ("Identity", "StopGradient", "Reshape", "ReshapeLike", "ExpandDims", "Squeeze")
ASSIGN_TYPES = ("Assign", "AssignAdd", "AssignSub")
INSTALL_HINT = ("install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
                "(macOS) or `conda install graphviz`; or save the DOT text with a .dot suffix and "
                "render it elsewhere")


class VizError(GraphflowError):
    """A picture cannot be made: unknown stage or scope, no Graphviz, `dot` failed."""


# ---- choosing the ops of a stage ------------------------------------------------------------
def _resolve(graph: Graph, item) -> Operation:
    if isinstance(item, str):
        try:
            return graph.get_tensor_by_name(item).op if ":" in item else graph.get_operation_by_name(item)
        except KeyError as e:
            raise VizError(f"no tensor or op named {item!r} in the graph ({e.args[0]})") from None
    if isinstance(item, Tensor):
        return item.op
    if isinstance(item, Operation):
        return item
    raise VizError(f"cannot draw {item!r}: fetches are Tensors, Operations or their names")


def _leaf(graph: Graph, item) -> Tensor | Operation:
    """A fetch as Session takes it: a tensor (`name:0`) or an op."""
    if isinstance(item, str) and ":" in item:
        return _resolve(graph, item).outputs[0]
    return item if isinstance(item, Tensor) else _resolve(graph, item)


def sinks(graph: Graph) -> list[Operation]:
    """Ops no other op consumes (as data or a control input), in graph order."""
    used = {t.op for op in graph.get_operations() for t in op.inputs}
    used |= {c for op in graph.get_operations() for c in op.control_inputs}
    return [op for op in graph.get_operations() if op not in used]


def _user_ops(graph: Graph, fetches) -> list[Operation]:
    if not fetches:
        return list(graph.get_operations())
    return graph.subgraph_order([_resolve(graph, f) for f in fetches])


def _forward(ops: list[Operation]) -> list[Operation]:
    """Ops that are not gradient ops and read nothing a gradient op made (nor only feed such ops:
    an optimizer's learning-rate constant)."""
    tainted: set[Operation] = set()
    for op in ops:  # graph order is topological
        if op.grad_of is not None or any(t.op in tainted for t in op.inputs) \
                or any(c in tainted for c in op.control_inputs):
            tainted.add(op)
    users: dict[Operation, list[Operation]] = {}
    for op in ops:
        for src in [t.op for t in op.inputs] + list(op.control_inputs):
            users.setdefault(src, []).append(op)
    for op in reversed(ops):
        if op.type == "Const" and users.get(op) and all(u in tainted for u in users[op]):
            tainted.add(op)
    return [op for op in ops if op not in tainted]


def _lowered(graph: Graph, fetches, stage: str):
    """The lowered graph of `fetches` after the passes, and (for `fused`) its kernels, emitted
    for the cpu device without compiling them."""
    from .passes import PIPELINE, lower, run_passes
    leaves = [_leaf(graph, f) for f in fetches] if fetches else sinks(graph)
    order = graph.subgraph_order([x.op if isinstance(x, Tensor) else x for x in leaves])
    feeds = [op.outputs[0] for op in order if op.type == "Placeholder"]
    lowered = run_passes(lower(order, leaves, feeds), PIPELINE)
    if stage == "optimized":
        return lowered, None
    from .codegen.compile import emit_kernels
    return lowered, emit_kernels(lowered, "cpu", True)[2]  # the cpu device's kernels, not compiled


# ---- DOT text ---------------------------------------------------------------------------------
def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(t) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in t.shape) + "]"


def _label(op) -> str:
    lines = [op.name, op.type]
    if op.outputs:
        t = op.outputs[0]
        lines.append(f"{_shape(t)} {t.dtype.name}")
    return "\n".join(lines)


def _style(op, grads: bool) -> str:
    gradient = grads and op.grad_of is not None
    if op.type in HOST_TYPES:
        fill = {"Placeholder": "#e2f0d9", "Variable": "#fff2cc", "Const": "#eeeeee"}[op.type]
        if gradient:
            return f'shape=ellipse, style="filled,dashed", fillcolor="{fill}", color="#d9822b"'
        return f'shape=ellipse, style=filled, fillcolor="{fill}"'
    if gradient:
        return 'shape=box, style="filled,dashed,rounded", fillcolor="#fde2c8", color="#d9822b"'
    if op.type in ASSIGN_TYPES:
        return 'shape=box, style="filled,rounded", fillcolor="#f8cecc"'
    if op.type in ALIAS_TYPES:
        return 'shape=box, style="rounded,dotted"'
    return 'shape=box, style="filled,rounded", fillcolor="#dae8fc"'


def _scope_of(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _keys(ops: list, scope: str | None, collapse: int) -> tuple[dict, dict]:
    """(op -> the op itself or its collapsed scope's name, scope -> op count) for the ops shown."""
    prefix = scope.strip("/") + "/" if scope else ""
    inside = [op for op in ops if op.name.startswith(prefix)]
    if scope and not inside:
        raise VizError(f"no op under scope {scope!r}; scopes here: "
                       f"{', '.join(sorted({_scope_of(op.name) for op in ops} - {''})[:12]) or 'none'}")
    counts: dict[str, int] = {}
    for op in inside:
        rel = op.name[len(prefix):]
        if "/" in rel:
            sub = prefix + rel.split("/", 1)[0]
            counts[sub] = counts.get(sub, 0) + 1
    keys = {}
    for op in inside:
        rel = op.name[len(prefix):]
        sub = prefix + rel.split("/", 1)[0] if "/" in rel else None
        keys[op] = sub if sub is not None and collapse and counts[sub] > collapse else op
    return keys, counts


def _stage_ops(source, stage: str, fetches) -> tuple[list, list]:
    """(the ops a stage draws, the kernels for `fused`) from a Graph or a Compiled."""
    kernels: list = []
    if hasattr(source, "_plan"):  # a Compiled
        program = source._plan.program
        if stage in ("optimized", "fused") and program is None:
            raise VizError("the 'reference' device lowers and fuses nothing; make the callable on "
                           "device='cpu' or 'cuda', or pass the graph")
        user_ops = list(source._plan.order)
        if stage in ("optimized", "fused"):
            lowered, kernels = program.graph, program.kernels if stage == "fused" else []
    elif isinstance(source, Graph):
        user_ops = _user_ops(source, fetches)
        if stage in ("optimized", "fused"):
            lowered, kernels = _lowered(source, list(fetches or []), stage)
    else:
        raise VizError(f"cannot draw {type(source).__name__}: pass a gf.Graph or a Compiled "
                       "(sess.make_callable(...))")
    if stage == "built":
        return _forward(user_ops), []
    if stage == "grad":
        return user_ops, []
    return list(lowered.ops), kernels or []


def to_dot(source, stage: str = "built", fetches: Sequence | None = None, scope: str | None = None,
           collapse: int = 40) -> str:
    """The DOT text of one stage's picture (see the module docstring)."""
    if stage not in STAGES:
        raise VizError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    ops, kernels = _stage_ops(source, stage, fetches)
    grads = stage != "built"
    if stage == "fused":
        collapse = 0  # kernels are the grouping here
    keys, counts = _keys(ops, scope, collapse)
    ids = {op: f"n{i}" for i, op in enumerate(ops)}
    title = {"built": "as built", "grad": "after autodiff", "optimized": "after the graph passes",
             "fused": "after fusion: one cluster per kernel"}[stage]
    lines = ["digraph graphflow {",
             f"  graph [rankdir=TB, fontname=Helvetica, fontsize=12, labelloc=t, label={_q(title)}];",
             "  node [fontname=Helvetica, fontsize=10];",
             "  edge [color=\"#555555\", arrowsize=0.6];"]

    def node_line(op, indent="  ") -> str:
        return f"{indent}{ids[op]} [label={_q(_label(op))}, {_style(op, grads)}];"

    drawn: set = set()
    if kernels:
        home = {}
        for k, kernel in enumerate(kernels):
            for op in kernel.nodes:
                if op in keys and op not in home:
                    home[op] = k
        for k, kernel in enumerate(kernels):
            own = [op for op in ops if home.get(op) == k]
            shared = [op for op in kernel.nodes if op in keys and home.get(op) != k]
            if not own and not shared:
                continue
            lines.append(f"  subgraph cluster_k{k} {{")
            lines.append(f'    label={_q(kernel.name)}; style="rounded,filled"; fillcolor="#f7f7f7"; '
                         'color="#6c8ebf"; fontname=Helvetica;')
            lines += [node_line(op, "    ") for op in own]
            drawn.update(own)
            if not own:  # a later pass of ops drawn in an earlier kernel (a two-pass reduction)
                names = ", ".join(op.name for op in shared[:3])
                lines.append(f"    k{k}_pass [label={_q('continues ' + names)}, shape=note, fontsize=9];")
            lines.append("  }")
            if not own:
                lines += [f"  {ids[op]} -> k{k}_pass [style=dotted];" for op in shared[:3]]
    collapsed_done = set()
    for op in ops:
        key = keys.get(op)
        if key is None or op in drawn:
            continue
        if isinstance(key, str):
            if key not in collapsed_done:
                collapsed_done.add(key)
                lines.append(f"  {_q('scope:' + key)} [label={_q(f'{key}/ ({counts[key]} ops)')}, "
                             'shape=box3d, style=filled, fillcolor="#e1d5e7"];')
        else:
            lines.append(node_line(op))

    def ref(op) -> str | None:
        key = keys.get(op)
        if key is None:
            return None
        return _q("scope:" + key) if isinstance(key, str) else ids[op]

    outside: dict = {}
    edges: list[str] = []
    seen_edges: set = set()
    for op in ops:
        dst = ref(op)
        if dst is None:
            continue
        sources = [(t.op, "") for t in op.inputs]
        sources += [(c, ' [style=dashed, color="#999999"]') for c in getattr(op, "control_inputs", [])]
        for src_op, attr in sources:
            src = ref(src_op)
            if src is None:  # an input from outside the shown scope
                if src_op not in outside:
                    outside[src_op] = f"x{len(outside)}"
                    lines.append(f"  {outside[src_op]} [label={_q(src_op.name)}, shape=plaintext, "
                                 'fontcolor="#888888", fontsize=9];')
                src = outside[src_op]
            if src == dst or (src, dst, attr) in seen_edges:
                continue
            seen_edges.add((src, dst, attr))
            edges.append(f"  {src} -> {dst}{attr};")
    lines += edges
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---- rendering ----------------------------------------------------------------------------------
def render(dot_text: str, path: str, format: str | None = None) -> str:
    """Write `dot_text` to `path` as SVG, PNG or PDF (by suffix, or `format`) through Graphviz's
    `dot`, or as DOT text for a `.dot`/`.gv` suffix. Returns the path."""
    fmt = (format or os.path.splitext(path)[1].lstrip(".") or "svg").lower()
    if fmt in ("dot", "gv"):
        with open(path, "w") as f:
            f.write(dot_text)
        return path
    if fmt not in ("svg", "png", "pdf"):
        raise VizError(f"cannot render {path!r}: choose a .svg, .png, .pdf or .dot file")
    exe = shutil.which("dot")
    if exe is None:
        raise VizError(f"rendering {path} needs Graphviz's `dot` program, which is not on PATH: "
                       + INSTALL_HINT)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise VizError(f"cannot write {path}: the folder {folder} does not exist")
    proc = subprocess.run([exe, f"-T{fmt}", "-o", path], input=dot_text.encode(), capture_output=True)
    if proc.returncode != 0:
        raise VizError(f"Graphviz's dot failed on {path}: {proc.stderr.decode(errors='replace').strip()}")
    if fmt == "svg":  # drop the Graphviz version comment: the same graph gives the same file
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(re.sub(r"<!-- Generated by graphviz.*?-->\n", "", text, flags=re.S))
    return path


def draw(source, path: str, stage: str = "built", fetches: Sequence | None = None,
         scope: str | None = None, collapse: int = 40) -> str:
    """`to_dot(...)` rendered to `path` (.svg, .png, .pdf or .dot). Returns the path."""
    return render(to_dot(source, stage, fetches, scope, collapse), path)
