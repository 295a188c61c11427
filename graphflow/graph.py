"""The graph IR: Graph holds Operations; an Operation produces Tensors.

Nodes are immutable once made. Each keeps the user's definition site so
errors (and kernels) can point back at the line that built them.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterable, Iterator

import networkx as nx

from . import registry
from .dtypes import DType
from .errors import DTypeError, GraphflowError, ShapeError
from .registry import Spec

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_CODEGEN_DIR = os.path.join(os.path.dirname(_PACKAGE_DIR), "codegen")


def definition_site() -> str:
    """file:line of the first stack frame outside graphflow (and codegen)."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith(_PACKAGE_DIR) or filename.startswith(_CODEGEN_DIR)
                or filename.startswith("<frozen") or filename.endswith("contextlib.py")):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


class TensorShape(tuple):
    """A static shape: a tuple whose dims are ints or None (unknown)."""

    def as_list(self) -> list:
        """The dims as a list (None for unknown dims)."""
        return list(self)

    @property
    def ndims(self) -> int:
        """The rank."""
        return len(self)

    rank = ndims

    def is_fully_defined(self) -> bool:
        """True when no dim is None."""
        return all(d is not None for d in self)

    def num_elements(self) -> int | None:
        """The product of the dims, or None when a dim is unknown."""
        if not self.is_fully_defined():
            return None
        n = 1
        for d in self:
            n *= d
        return n

    def __repr__(self) -> str:
        return f"TensorShape({list(self)})"


class Tensor:
    """A symbolic value: output `index` of `op`."""

    __array_ufunc__ = None  # make numpy defer to our reflected operators

    def __init__(self, op: Operation, index: int, spec: Spec) -> None:
        self.op = op
        self.value_index = index
        self._shape = TensorShape(spec.shape)
        self.dtype: DType = spec.dtype

    @property
    def shape(self) -> TensorShape:
        """The static shape (dims may be None)."""
        return self._shape

    def get_shape(self) -> TensorShape:
        """The static shape (TF1's spelling of .shape)."""
        return self._shape

    @property
    def name(self) -> str:
        """'op_name:index', unique in the graph."""
        return f"{self.op.name}:{self.value_index}"

    @property
    def graph(self) -> Graph:
        """The graph this tensor belongs to."""
        return self.op.graph

    def spec(self) -> Spec:
        """(shape, dtype) as the shape rules see it."""
        return Spec(tuple(self._shape), self.dtype)

    def __repr__(self) -> str:
        return f"<gf.Tensor '{self.name}' shape={list(self.shape)} dtype={self.dtype.name}>"

    def __bool__(self) -> bool:
        raise TypeError(f"using the symbolic tensor {self.name} as a Python bool is not allowed; "
                        "use gf.where or compute the value with Session.run")

    def __iter__(self):
        raise TypeError(f"tensor {self.name} is symbolic and cannot be iterated; "
                        "index it or use gf.unstack-style slicing")

    def __len__(self) -> int:
        raise TypeError(f"len() of symbolic tensor {self.name}; use .shape[0]")

    __hash__ = object.__hash__

    def eval(self, feed_dict=None, session=None):
        """This tensor's value, run in `session` (else the default session)."""
        from .session import get_default_session
        return (session or get_default_session()).run(self, feed_dict)


class Operation:
    """A node: `type` names its OpDef; `outputs` are its Tensors."""

    def __init__(self, graph: Graph, type_: str, name: str, inputs: tuple[Tensor, ...],
                 attrs: dict, control_inputs: list[Operation], site: str) -> None:
        self.graph = graph
        self.type = type_
        self.name = name
        self.inputs = inputs
        self.attrs = attrs
        self.control_inputs = control_inputs
        self.site = site                  # user's file:line that created the node
        self.grad_of: Operation | None = None  # the forward op, for backward nodes
        self.outputs: list[Tensor] = []
        self.id = len(graph._ops)

    @property
    def op_def(self) -> registry.OpDef:
        """The registry entry of this op's type."""
        return registry.get(self.type)

    def describe(self) -> str:
        """"op 'name' (Type, defined at file:line)", for error messages."""
        return f"op '{self.name}' ({self.type}, defined at {self.site})"

    def __repr__(self) -> str:
        return f"<gf.Operation '{self.name}' type={self.type}>"

    def run(self, feed_dict=None, session=None) -> None:
        """Run this op in `session` (else the default session)."""
        from .session import get_default_session
        (session or get_default_session()).run(self, feed_dict)


class Graph:
    """A dataflow graph. Ops are added in creation order, which is a topological order."""

    def __init__(self) -> None:
        self._ops: list[Operation] = []
        self._names: dict[str, int] = {}
        self._scope_stack: list[str] = []
        self._control_stack: list[list[Operation]] = []
        self._nx = nx.DiGraph()
        self._finalized = False
        self.collections: dict[str, list] = {}
        self.seed: int | None = None

    # ---- naming -------------------------------------------------------
    def unique_name(self, base: str, scoped: bool = True) -> str:
        """`base` under the current name scope, with a _N suffix if taken."""
        if scoped and self._scope_stack:
            base = self._scope_stack[-1] + base
        count = self._names.get(base, 0)
        self._names[base] = count + 1
        if count == 0:
            return base
        name = f"{base}_{count}"
        while name in self._names:  # a user name may already look like 'x_1'
            count += 1
            name = f"{base}_{count}"
        self._names[name] = 1
        return name

    @contextlib.contextmanager
    def name_scope(self, name: str | None) -> Iterator[str]:
        """Prefix the names of ops made inside the block with `name/`."""
        if name is None or name == "":
            self._scope_stack.append("")
            try:
                yield ""
            finally:
                self._scope_stack.pop()
            return
        scope = name if name.endswith("/") else self.unique_name(name) + "/"
        self._scope_stack.append(scope)
        try:
            yield scope
        finally:
            self._scope_stack.pop()

    # ---- control dependencies ------------------------------------------
    @contextlib.contextmanager
    def control_dependencies(self, ops: Iterable | None) -> Iterator[None]:
        """Ops made inside the block run after `ops` (None clears outer dependencies)."""
        if ops is None:  # TF1: None clears the enclosing dependencies
            saved, self._control_stack = self._control_stack, []
            try:
                yield
            finally:
                self._control_stack = saved
            return
        resolved = []
        for item in ops:
            op = item.op if isinstance(item, Tensor) else item
            if not isinstance(op, Operation):
                raise TypeError(f"control_dependencies takes Tensors or Operations, got {item!r}")
            if op.graph is not self:
                raise GraphflowError(f"control dependency {op.describe()} is from another graph")
            resolved.append(op)
        self._control_stack.append(resolved)
        try:
            yield
        finally:
            self._control_stack.pop()

    # ---- building ------------------------------------------------------
    def create_op(self, type_: str, inputs: list[Tensor], attrs: dict | None = None,
                  name: str | None = None, tensor_cls: type = Tensor) -> Operation:
        """Make an op: check inputs, run its shape rule, name it, record the site."""
        if self._finalized:
            raise GraphflowError(
                f"graph is finalized and cannot be modified (adding a {type_} op at "
                f"{definition_site()}); build every op before the training loop")
        attrs = attrs or {}
        for t in inputs:
            if not isinstance(t, Tensor):
                raise TypeError(f"{type_}: input {t!r} is not a Tensor")
            if t.graph is not self:
                raise GraphflowError(
                    f"{type_}: input {t.name} belongs to another graph (defined at {t.op.site}); "
                    "every tensor of one op must come from the same gf.Graph")
        site = definition_site()
        op_def = registry.get(type_)
        if name and name.endswith("/"):  # TF1: a name ending in '/' is used as is
            op_name = name[:-1]
        else:
            op_name = self.unique_name(name or _default_name(type_))
        try:
            spec = op_def.infer([t.spec() for t in inputs], **attrs)
        except (ShapeError, DTypeError) as e:
            shown = ", ".join(f"{t.name} {list(t.shape)} {t.dtype.name}" for t in inputs)
            raise type(e)(f"{type_} '{op_name}' (defined at {site}): {e}  "
                          f"[inputs: {shown}]") from None
        control = [op for group in self._control_stack for op in group]
        op = Operation(self, type_, op_name, tuple(inputs), attrs, control, site)
        if spec is not None:
            op.outputs.append(tensor_cls(op, 0, spec))
        self._ops.append(op)
        self._nx.add_node(op)
        for t in inputs:
            self._nx.add_edge(t.op, op)
        for c in control:
            self._nx.add_edge(c, op)
        return op

    # ---- queries -------------------------------------------------------
    def get_operations(self) -> list[Operation]:
        """Every op, in creation order."""
        return list(self._ops)

    def get_operation_by_name(self, name: str) -> Operation:
        """The op named `name`; KeyError if none."""
        for op in self._ops:
            if op.name == name:
                return op
        raise KeyError(f"no op named {name!r} in this graph")

    def get_tensor_by_name(self, name: str) -> Tensor:
        """The tensor named like 'op_name:0'; KeyError if none."""
        op_name, _, index = name.rpartition(":")
        if not op_name or not index.isdigit():
            raise KeyError(f"{name!r} is not a tensor name like 'x:0'")
        op = self.get_operation_by_name(op_name)
        if int(index) >= len(op.outputs):
            raise KeyError(f"op {op_name!r} has no output {index}")
        return op.outputs[int(index)]

    @property
    def version(self) -> int:
        """The number of ops so far (grows as ops are added)."""
        return len(self._ops)

    def finalize(self) -> None:
        """Make the graph read-only: adding an op then raises."""
        self._finalized = True

    @property
    def finalized(self) -> bool:
        """True after finalize()."""
        return self._finalized

    def as_networkx(self) -> nx.DiGraph:
        """The dependency graph (data and control edges); a view, do not modify."""
        return self._nx

    def subgraph_order(self, targets: Iterable[Operation], fed=frozenset()) -> list[Operation]:
        """Ops that `targets` need, in creation order (a topological order). The walk stops
        at `fed` tensors: what only produces them need not run."""
        targets = list(targets)
        fed_ops = {t.op for t in fed}
        needed: set[Operation] = set()
        stack = list(targets)
        while stack:
            op = stack.pop()
            if op in needed:
                continue
            needed.add(op)
            if op in fed_ops and op not in targets:
                continue
            stack.extend(t.op for t in op.inputs if t not in fed)
            stack.extend(op.control_inputs)
        return sorted(needed, key=lambda o: o.id)

    def to_dot(self) -> str:
        """Graphviz DOT text of the graph, backward nodes drawn dashed."""
        lines = ["digraph graphflow {", "  node [shape=box, fontsize=10];"]
        for op in self._ops:
            style = ", style=dashed" if op.grad_of is not None else ""
            shape = f"\\n{list(op.outputs[0].shape)}" if op.outputs else ""
            lines.append(f'  n{op.id} [label="{op.name}\\n{op.type}{shape}"{style}];')
        for a, b in self._nx.edges:
            lines.append(f"  n{a.id} -> n{b.id};")
        lines.append("}")
        return "\n".join(lines)

    @contextlib.contextmanager
    def as_default(self) -> Iterator[Graph]:
        """Make this the default graph inside the block."""
        _stack().append(self)
        try:
            yield self
        finally:
            _stack().pop()


def _default_name(type_: str) -> str:
    if type_ == "MatMul":
        return "matmul"
    out = []
    for i, ch in enumerate(type_):  # 'MatMul' -> 'matmul', 'ReduceSum' -> 'reduce_sum'
        if ch.isupper() and i and not type_[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


# ---- the default graph ---------------------------------------------------
_default_graph = Graph()
_local = threading.local()


def _stack() -> list[Graph]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def get_default_graph() -> Graph:
    """The graph new ops go into: the innermost `as_default()` one, else the global default."""
    stack = _stack()
    return stack[-1] if stack else _default_graph


def reset_default_graph() -> None:
    """Replace the global default graph by an empty one."""
    global _default_graph
    if _stack():
        raise GraphflowError("reset_default_graph() called inside a `with graph.as_default()` block")
    _default_graph = Graph()


def name_scope(name: str | None):
    """`with gf.name_scope('layer1'):` prefixes op names, TF1 style."""
    return get_default_graph().name_scope(name)


def control_dependencies(ops):
    """Ops made inside the block run only after `ops` have run."""
    return get_default_graph().control_dependencies(ops)
