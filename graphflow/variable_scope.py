"""TF1's variable_scope and get_variable: variables named by scope, shared by reuse.

    with gf.variable_scope("layer1"):
        w = gf.get_variable("w", [784, 128])          # 'layer1/w', glorot_uniform
    with gf.variable_scope("layer1", reuse=True):
        w_again = gf.get_variable("w", [784, 128])    # the same Variable object

Reuse rules (TF1's): without reuse, creating a name that exists raises (naming where it was
first created); with reuse=True, a name that does not exist raises; with gf.AUTO_REUSE, a
name is created the first time and shared after. reuse=True is inherited by nested scopes.
"""
from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator

import numpy as np

from . import initializers
from .dtypes import DType, as_dtype, float32
from .errors import DTypeError, GraphflowError, ShapeError, VariableReuseError
from .graph import Graph, Tensor, definition_site, get_default_graph
from .ops.core import normalize_shape
from .variables import Variable


class _AutoReuse:
    """The type of gf.AUTO_REUSE: create a variable if missing, share it if present."""

    def __repr__(self) -> str:
        return "gf.AUTO_REUSE"


AUTO_REUSE = _AutoReuse()


class VariableScope:
    """A scope's full name, its reuse mode (False, True or gf.AUTO_REUSE) and default
    initializer. `original_name_scope` is the op name scope it opened first."""

    def __init__(self, name: str, reuse=False, initializer=None,
                 original_name_scope: str = "") -> None:
        self.name = name
        self.reuse = reuse
        self.initializer = initializer
        self.original_name_scope = original_name_scope

    def reuse_variables(self) -> None:
        """From here on in this scope, get_variable shares existing variables (TF1)."""
        self.reuse = True

    def __repr__(self) -> str:
        return f"<gf.VariableScope {self.name!r} reuse={self.reuse!r}>"


class _Store:
    """Per-graph state: variables made by get_variable (with their sites) and the scope stack."""

    def __init__(self) -> None:
        self.variables: dict[str, tuple[Variable, str]] = {}
        self.stack: list[VariableScope] = [VariableScope("")]
        self.defaults: dict[str, int] = {}


_stores: weakref.WeakKeyDictionary[Graph, _Store] = weakref.WeakKeyDictionary()


def _store(graph: Graph) -> _Store:
    if graph not in _stores:
        _stores[graph] = _Store()
    return _stores[graph]


def get_variable_scope() -> VariableScope:
    """The innermost variable scope of the default graph (the root scope has name '')."""
    return _store(get_default_graph()).stack[-1]


@contextlib.contextmanager
def variable_scope(name_or_scope: str | VariableScope | None, reuse=None,
                   initializer: Callable | None = None,
                   default_name: str | None = None) -> Iterator[VariableScope]:
    """Prefix get_variable names with `name_or_scope/`, and op names too (as a name scope).

    reuse: None inherits the enclosing scope's mode; True shares existing variables (and stays
    True in nested scopes, as in TF1); gf.AUTO_REUSE creates or shares. initializer: the default
    for get_variable calls inside (inherited by nested scopes). A name string nests in the
    enclosing variable scope; reopening it shares its variable names while its op name scope
    gets a fresh suffix (`layer1_1/`), as in TF1. A VariableScope object (from `as scope`)
    reopens that scope by its full name and its original op name scope. With name_or_scope
    None, default_name is made unique (`dense`, `dense_1`, ...), as TF1 does for layers.
    """
    graph = get_default_graph()
    store = _store(graph)
    parent = store.stack[-1]
    if reuse not in (None, True, False) and reuse is not AUTO_REUSE:
        raise VariableReuseError(f"variable_scope reuse must be None, True, False or "
                                 f"gf.AUTO_REUSE, got {reuse!r}")
    if name_or_scope is None and default_name:
        prefix = f"{parent.name}/{default_name}" if parent.name else default_name
        count = store.defaults.get(prefix, 0)
        store.defaults[prefix] = count + 1
        name_or_scope = default_name if count == 0 else f"{default_name}_{count}"
    if isinstance(name_or_scope, VariableScope):
        base = name_or_scope
        full, inherited, init = base.name, base.reuse, base.initializer
        name_scope = base.original_name_scope or None
    elif isinstance(name_or_scope, str) and name_or_scope.strip("/"):
        local = name_or_scope.strip("/")
        full = f"{parent.name}/{local}" if parent.name else local
        inherited, init, name_scope = parent.reuse, parent.initializer, local
    else:
        raise GraphflowError(f"variable_scope needs a non-empty name or a VariableScope, got "
                             f"{name_or_scope!r} (at {definition_site()})")
    # TF1: reuse=True is sticky (a nested scope cannot turn it off); None inherits
    mode = True if parent.reuse is True else (reuse if reuse is not None else inherited)
    with graph.name_scope(name_scope) as opened:
        scope = VariableScope(full, mode or False,
                              initializer if initializer is not None else init, opened)
        store.stack.append(scope)
        try:
            yield scope
        finally:
            store.stack.pop()


def _default_initializer(dtype: DType):
    """TF1's default: glorot_uniform for floats, zeros for integers and bools."""
    return initializers.glorot_uniform() if dtype.is_floating else initializers.zeros()


def get_variable(name: str, shape=None, dtype=float32, initializer=None,
                 trainable: bool = True) -> Variable:
    """The variable `<scope>/<name>`: made now, or shared from an earlier call under reuse.

    initializer: an initializer (`init(shape, dtype) -> Tensor`), a Tensor, or a value (numpy
    array, number); default: the scope's initializer, else glorot_uniform (zeros for integer
    dtypes), as TF1. With a Tensor or value, shape may be omitted (it is the value's shape); a
    value (numpy array, number) is converted to dtype, a Tensor must already have it.
    Sharing checks that shape (when given) and dtype match the existing variable.
    """
    if not isinstance(name, str) or not name or name.endswith("/"):
        raise GraphflowError(f"get_variable needs a non-empty name, got {name!r}")
    graph = get_default_graph()
    store = _store(graph)
    scope = store.stack[-1]
    full = f"{scope.name}/{name}" if scope.name else name
    dtype = as_dtype(dtype)
    site = definition_site()
    if full in store.variables:
        var, first_site = store.variables[full]
        if scope.reuse is False:
            raise VariableReuseError(
                f"variable '{full}' already exists (first created at {first_site}); creating it "
                f"again at {site} is disallowed. To share it, open its scope with reuse=True or "
                "reuse=gf.AUTO_REUSE (gf.variable_scope(..., reuse=True)) or call "
                "scope.reuse_variables()")
        if shape is not None and tuple(normalize_shape(shape)) != tuple(var.shape):
            raise ShapeError(f"trying to share variable '{full}' (created at {first_site}) with "
                             f"shape {list(normalize_shape(shape))} at {site}, but it has shape "
                             f"{list(var.shape)}")
        if dtype != var.dtype:
            raise VariableReuseError(
                f"trying to share variable '{full}' (created at {first_site}) as {dtype.name} "
                f"at {site}, but it is {var.dtype.name}")
        return var
    if scope.reuse is True:
        raise VariableReuseError(
            f"variable '{full}' does not exist, or was not created with gf.get_variable() "
            f"(asked for at {site} in a scope with reuse=True); create it first, or use "
            "reuse=gf.AUTO_REUSE")
    init = initializer if initializer is not None else scope.initializer
    var = _create(graph, full, shape, dtype, init, trainable, site)
    store.variables[full] = (var, site)
    return var


def _create(graph: Graph, full: str, shape, dtype: DType, initializer, trainable: bool,
            site: str) -> Variable:
    from_value = initializer is not None and not (callable(initializer)
                                                  and not isinstance(initializer, Tensor))
    if from_value:
        if isinstance(initializer, Tensor) and initializer.dtype is not dtype:
            raise DTypeError(f"get_variable('{full}', dtype={dtype.name}) at {site}: its "
                             f"initial value {initializer.name} is {initializer.dtype.name}; "
                             "pass a matching dtype or gf.cast the value")
        value = initializer if isinstance(initializer, Tensor) else np.asarray(initializer,
                                                                               dtype.np)
        if shape is not None and tuple(normalize_shape(shape)) != tuple(value.shape):
            raise ShapeError(f"get_variable('{full}') at {site}: shape "
                             f"{list(normalize_shape(shape))} does not match its initial "
                             f"value's shape {list(value.shape)}")
    else:
        if shape is None:
            raise ShapeError(f"get_variable('{full}') at {site} needs a shape to run its "
                             "initializer")
        shape = normalize_shape(shape)
        if None in shape:
            raise ShapeError(f"get_variable('{full}') at {site}: shape {list(shape)} must be "
                             "fully known")
    if graph.unique_name(full, scoped=False) != full:
        raise GraphflowError(f"get_variable('{full}') at {site}: an op named '{full}' already "
                             "exists in the graph (made without get_variable); pick another name")
    # the initializer runs outside any control_dependencies block, under the variable's name
    with graph.control_dependencies(None), graph.name_scope(full + "/"):
        if not from_value:
            value = (initializer or _default_initializer(dtype))(shape, dtype)
        return Variable(value, name=full + "/", trainable=trainable, dtype=dtype)
