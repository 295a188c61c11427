"""gf.Variable: a Tensor whose value lives in each Session, changed by assign ops."""
from __future__ import annotations

from .dtypes import as_dtype
from .errors import GraphflowError, ShapeError
from .graph import Operation, Tensor, get_default_graph
from .ops.core import as_tensor, group, make

GLOBAL_VARIABLES = "variables"
TRAINABLE_VARIABLES = "trainable_variables"


class Variable(Tensor):
    """A stateful tensor. Its initial value runs when `initializer` (or
    gf.global_variables_initializer()) runs; each Session holds its own value."""

    def __init__(self, initial_value, name: str | None = None, trainable: bool = True,
                 dtype=None) -> None:
        graph = get_default_graph()
        if callable(initial_value) and not isinstance(initial_value, Tensor):
            initial_value = initial_value()
        with graph.name_scope(name or "Variable") as scope:
            init = as_tensor(initial_value, None if dtype is None else as_dtype(dtype),
                             name="initial_value")
            if init.graph is not graph:
                raise GraphflowError(f"Variable {scope[:-1]!r}: its initial value {init.name} is "
                                     "from another graph")
            if None in init.shape:
                raise ShapeError(f"Variable {scope[:-1]!r}: initial value has shape "
                                 f"{list(init.shape)}; a variable needs a fully known shape")
            op = graph.create_op("Variable", [], {"shape": tuple(init.shape),
                                                  "dtype": init.dtype}, name=scope)
        Tensor.__init__(self, op, 0, op.outputs[0].spec())
        op.outputs[0] = self
        self.trainable = bool(trainable)
        self.initial_value = init
        with graph.name_scope(scope):
            self.initializer: Operation = make("Assign", [self, init], name="Assign").op
        graph.collections.setdefault(GLOBAL_VARIABLES, []).append(self)
        if self.trainable:
            graph.collections.setdefault(TRAINABLE_VARIABLES, []).append(self)

    def __repr__(self) -> str:
        return (f"<gf.Variable '{self.name}' shape={list(self.shape)} dtype={self.dtype.name}"
                f"{'' if self.trainable else ' trainable=False'}>")

    def _assign(self, op_type: str, value, name):
        with self.graph.as_default():
            return make(op_type, [self, as_tensor(value, self.dtype)], name=name)

    def assign(self, value, name: str | None = None) -> Tensor:
        """An op setting the variable to value; its output is the new value."""
        return self._assign("Assign", value, name)

    def assign_add(self, delta, name: str | None = None) -> Tensor:
        """An op adding delta to the variable; its output is the new value."""
        return self._assign("AssignAdd", delta, name)

    def assign_sub(self, delta, name: str | None = None) -> Tensor:
        """An op subtracting delta from the variable; its output is the new value."""
        return self._assign("AssignSub", delta, name)

    def read_value(self) -> Tensor:
        """The variable itself (a Tensor), as TF1's read_value."""
        return self

    def value(self) -> Tensor:
        """The variable itself (a Tensor), as TF1's value."""
        return self

    def load(self, value, session=None) -> None:
        """Set the value in a Session directly (no graph op)."""
        from .session import get_default_session
        (session or get_default_session()).set_variable(self, value)


def uninitialized_error(var_op: Operation, reader: Operation | None = None) -> GraphflowError:
    """The error for reading a variable whose initializer has not run."""
    by = f", by {reader.describe()}" if reader is not None else ""
    return GraphflowError(f"variable '{var_op.name}' (defined at {var_op.site}) is read before it "
                          f"is initialized{by}: run gf.global_variables_initializer() first (or "
                          "restore it with a Saver)")


def assign(ref: Variable, value, name: str | None = None) -> Tensor:
    """An op setting `ref` to `value`; its output is the new value."""
    if not isinstance(ref, Variable):
        raise TypeError(f"assign needs a gf.Variable, got {ref!r}")
    return ref.assign(value, name)


def assign_add(ref: Variable, value, name: str | None = None) -> Tensor:
    """An op adding `value` to `ref`; its output is the new value."""
    return ref.assign_add(value, name)


def assign_sub(ref: Variable, value, name: str | None = None) -> Tensor:
    """An op subtracting `value` from `ref`; its output is the new value."""
    return ref.assign_sub(value, name)


def global_variables(graph=None) -> list[Variable]:
    """Every Variable of `graph` (default: the default graph), in creation order."""
    return list((graph or get_default_graph()).collections.get(GLOBAL_VARIABLES, []))


def trainable_variables(graph=None) -> list[Variable]:
    """Trainable variables in creation order."""
    return list((graph or get_default_graph()).collections.get(TRAINABLE_VARIABLES, []))


def variables_initializer(var_list, name: str = "init") -> Operation:
    """One op that runs the initializers of the variables in `var_list`."""
    return group([v.initializer for v in var_list], name=name)


def global_variables_initializer() -> Operation:
    """One op that runs every variable's initializer."""
    return variables_initializer(global_variables(), name="init")
