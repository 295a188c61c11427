"""gf.onnx.import_model: an ONNX model becomes a graphflow Graph.

The walk is one loop over the nodes in file order (ONNX requires topological order). Each
node goes through the converter table; a node whose inputs are all constants is folded at
import (evaluated with the ops' numpy references), which is how shape arithmetic (Shape,
Gather, Concat, Range, ...) becomes the static shapes graphflow needs.
"""
from __future__ import annotations

import os

import numpy as np

from .. import dtypes
from ..errors import DTypeError, FeedError, GraphflowError, ShapeError, UnsupportedOpError
from ..graph import Graph, Tensor, name_scope
from ..ops.core import constant, placeholder
from ..registry import get as get_op_def
from .common import DTYPE_NAMES, DTYPES, Attrs, NeedsValue, Unsupported
from .converters import CONVERTERS
from .shape_values import CONVERTERS as SHAPE_VALUE_CONVERTERS
from .shape_values import ShapeValue
from .specialize import SpecializedModel


def _onnx():
    try:
        import onnx
    except ImportError:
        raise GraphflowError("gf.onnx needs the onnx package: pip install 'graphflow[onnx]'") \
            from None
    return onnx


def onnx_dtype(elem_type: int, where: str) -> dtypes.DType:
    """The graphflow dtype of an ONNX element type, or UnsupportedOpError."""
    if elem_type not in DTYPES:
        name = DTYPE_NAMES.get(elem_type, str(elem_type))
        raise UnsupportedOpError(f"{where}: ONNX dtype {name} is not supported (graphflow runs "
                                 "float16/32/64, int8/16/32/64, uint8/16/32/64 and bool)")
    return DTYPES[elem_type]


def _load(model):
    onnx = _onnx()
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, str | os.PathLike):
        try:
            with open(model, "rb") as f:
                data = f.read()
        except OSError as e:
            raise GraphflowError(f"cannot read ONNX model {os.fspath(model)!r}: {e}") from None
        what = f"ONNX file {os.fspath(model)!r}"
    elif isinstance(model, bytes | bytearray | memoryview):
        data, what = bytes(model), "ONNX model bytes"
    else:
        raise GraphflowError(f"import_model takes a path, bytes or an onnx.ModelProto, got "
                             f"{type(model).__name__}")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise GraphflowError(f"{what} is not a valid ONNX model (truncated or corrupt): {e}") \
            from None
    if not proto.HasField("graph") or not proto.graph.node and not proto.graph.output:
        raise GraphflowError(f"{what} is not a valid ONNX model: it has no graph")
    return proto


def _opset(proto) -> int:
    opset = None
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version
    if opset is None:
        raise UnsupportedOpError("the model imports no default-domain ('ai.onnx') opset")
    return opset


def _attr_value(attr, where: str):
    onnx = _onnx()
    kind = attr.type
    A = onnx.AttributeProto
    if kind == A.TENSOR:
        return _tensor_array(attr.t, where)
    if kind in (A.GRAPH, A.GRAPHS, A.SPARSE_TENSOR, A.SPARSE_TENSORS, A.TYPE_PROTO,
                A.TYPE_PROTOS, A.TENSORS):
        raise Unsupported(f"attribute {attr.name} of kind {A.AttributeType.Name(kind)} is not "
                          "supported (subgraphs and sparse tensors are not imported)")
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
    return value


def _tensor_array(t, where: str) -> np.ndarray:
    onnx = _onnx()
    dtype = onnx_dtype(t.data_type, f"{where}: tensor {t.name!r}")
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raise UnsupportedOpError(f"{where}: tensor {t.name!r} keeps its data in an external file; "
                                 "load the model with onnx.load(path) first")
    try:
        arr = onnx.numpy_helper.to_array(t)
    except Exception as e:
        raise GraphflowError(f"{where}: tensor {t.name!r} is malformed: {e}") from None
    return np.asarray(arr, dtype=dtype.np)


def _value_shape(vi) -> tuple:
    """Static dims of a graph input; symbolic or missing dims are None."""
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        raise UnsupportedOpError(f"graph input {vi.name!r} has no shape (unknown rank); "
                                 "graphflow needs the rank of every input")
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)


def _fold(op_type: str, fn, node, inputs, attrs, opset) -> list | None:
    """Run a node whose inputs are all constants on its numpy references; None if it cannot."""
    scratch = Graph()
    with scratch.as_default():
        local = [None if t is None else constant(t.op.attrs["value"]) for t in inputs]
        outs = _as_list(fn(node, local, attrs, opset))
    values: dict[Tensor, np.ndarray] = {}
    for op in scratch.get_operations():
        op_def = get_op_def(op.type)
        if op_def.stateful or op_def.needs_context:
            return None
        args = [values[t] for t in op.inputs]
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(op_def.compute(*args, **op.attrs))
                values[op.outputs[0]] = out.astype(op.outputs[0].dtype.np, copy=False)
        except GraphflowError:
            raise
        except Exception:  # left to run time, where the op reports it with its site
            return None
    return [None if t is None else values[t] for t in outs]


def _as_list(result) -> list:
    return list(result) if isinstance(result, list | tuple) else [result]


def check_feed_names(feeds: dict, inputs) -> None:
    """FeedError for a feed that names no ONNX input, or an input with no feed."""
    unknown = sorted(set(feeds) - set(inputs))
    if unknown:
        raise FeedError(f"unknown ONNX input(s) {unknown}; the model's inputs are {list(inputs)}")
    missing = [n for n in inputs if n not in feeds]
    if missing:
        raise FeedError(f"missing ONNX input(s) {missing}")


class ImportedModel:
    """An imported ONNX model: `graph`, `inputs`, `outputs`, and `run(feeds, device=None)`."""

    def __init__(self, graph: Graph, inputs: dict, outputs: dict, opset: int) -> None:
        self.graph = graph
        self.inputs: dict[str, Tensor] = inputs
        self.outputs: dict[str, Tensor] = outputs
        self.opset = opset
        self._compiled: dict[str, object] = {}
        self._sessions: dict[str, object] = {}

    def run(self, feeds: dict, device: str | None = None) -> dict:
        """Feed arrays by ONNX input name; get every output by name (compiled once per device)."""
        from ..session import Session, resolve_device
        from ..variables import global_variables, variables_initializer
        check_feed_names(feeds, self.inputs)
        device = resolve_device(device)
        compiled = self._compiled.get(device)
        if compiled is None:
            sess = Session(self.graph, device=device)
            variables = global_variables(self.graph)
            if variables:
                sess.run(variables_initializer(variables))
            compiled = sess.make_callable(list(self.outputs.values()),
                                          feed_list=list(self.inputs.values()))
            self._sessions[device], self._compiled[device] = sess, compiled
        values = compiled(*[feeds[n] for n in self.inputs])
        return {name: np.asarray(v) for name, v in zip(self.outputs, values)}

    def __repr__(self) -> str:
        return (f"<gf.onnx model: inputs {list(self.inputs)}, outputs {list(self.outputs)}, "
                f"opset {self.opset}>")


def import_model(model, trainable: bool = False) -> ImportedModel | SpecializedModel:
    """Import an ONNX model (a path, bytes or onnx.ModelProto) as a graphflow graph.

    Graph inputs become placeholders (symbolic dims are None), initializers constants (or
    Variables of the floating ones with trainable=True). An op, attribute or dtype graphflow
    cannot run raises UnsupportedOpError here, at import. A model that feeds a value graphflow
    needs statically (axes, a shape, pads) as a graph input comes back as a SpecializedModel,
    built and compiled per distinct value of those inputs at run time.
    """
    proto = _load(model)
    opset = _opset(proto)
    for imp in proto.opset_import:
        if imp.domain not in ("", "ai.onnx") and any(n.domain == imp.domain
                                                     for n in proto.graph.node):
            raise UnsupportedOpError(f"the model uses operator domain {imp.domain!r} "
                                     f"(opset {imp.version}); only the default ONNX domain is "
                                     "supported")
    try:
        return build(proto, opset, trainable, {})
    except _NeedsInput as e:
        if trainable:
            raise UnsupportedOpError(f"{e.where}: {e} (trainable=True needs a model whose static "
                                     "values are initializers)") from None
        for index, node in enumerate(proto.graph.node):  # refuse missing ops now, not at run
            if node.op_type not in CONVERTERS:
                raise UnsupportedOpError(f"ONNX op {node.op_type} (opset {opset}) in node "
                                         f"{node.name or '#' + str(index)!r}: graphflow has no "
                                         f"converter for {node.op_type}") from None
        return SpecializedModel(proto, opset, e.graph, e.inputs, e.names, build)


class _NeedsInput(Exception):  # noqa: N818 - internal signal
    """build() met a graph input whose value a converter needs at import time."""

    def __init__(self, names: list, where: str, message: str, graph: Graph, inputs: dict) -> None:
        super().__init__(message)
        self.names, self.where, self.graph, self.inputs = names, where, graph, inputs


def build(proto, opset: int, trainable: bool, bound: dict) -> ImportedModel:
    """The graph of `proto`, with the graph inputs named in `bound` as constants of the given
    values; raises _NeedsInput when a converter needs the value of another graph input."""
    graph = Graph()
    with graph.as_default():
        env, inputs = _declare(proto.graph, trainable, bound)
        for index, node in enumerate(proto.graph.node):
            try:
                _convert_node(node, index, env, opset)
            except NeedsValue as e:
                names = [n for n, t in inputs.items() if any(t is s for s in e.tensors)]
                where = f"ONNX op {node.op_type} (opset {opset}) in node " \
                        f"{node.name or '#' + str(index)!r}"
                raise _NeedsInput(names, where, str(e), graph, inputs) from None
        outputs = {}
        for vi in proto.graph.output:
            if vi.name not in env:
                raise GraphflowError(f"ONNX graph output {vi.name!r} is not produced by any node")
            if isinstance(env[vi.name], ShapeValue):
                raise UnsupportedOpError(f"ONNX graph output {vi.name!r} is a shape known only "
                                         "at run time")
            outputs[vi.name] = env[vi.name]
    return ImportedModel(graph, inputs, outputs, opset)


def _declare(g, trainable: bool, bound: dict) -> tuple[dict, dict]:
    from ..variables import Variable
    env: dict[str, Tensor | None] = {"": None}
    for t in g.initializer:
        value = _tensor_array(t, "initializer")
        name = _gf_name(t.name)
        if trainable and value.dtype.kind == "f":
            env[t.name] = Variable(value, name=name)
        else:
            env[t.name] = constant(value, name=name)
    if g.sparse_initializer:
        raise UnsupportedOpError("sparse initializers are not supported")
    inputs = {}
    for vi in g.input:
        if vi.name in env:
            continue  # an initializer listed as an input (IR < 4): a constant here
        if not vi.type.HasField("tensor_type"):
            raise UnsupportedOpError(f"graph input {vi.name!r} is not a tensor (sequences, maps "
                                     "and optionals are not supported)")
        dtype = onnx_dtype(vi.type.tensor_type.elem_type, f"graph input {vi.name!r}")
        if vi.name in bound:  # a specialization: this input's value is fixed
            env[vi.name] = constant(np.asarray(bound[vi.name], dtype.np), name=_gf_name(vi.name))
            continue
        env[vi.name] = inputs[vi.name] = placeholder(dtype, _value_shape(vi),
                                                     name=_gf_name(vi.name))
    return env, inputs


def _settle(value):
    """A ShapeValue whose entries all became known turns into a constant."""
    if isinstance(value, ShapeValue) and value.known() is not None:
        return constant(value.known())
    return value


def _gf_name(name: str) -> str:
    clean = "".join(c if c.isalnum() or c in "_-." else "_" for c in name)
    return clean or "onnx_value"


def _convert_node(node, index: int, env: dict, opset: int) -> None:
    where = (f"ONNX op {node.op_type} (opset {opset}) in node "
             f"{node.name or '#' + str(index)!r}")
    if node.domain not in ("", "ai.onnx"):
        raise UnsupportedOpError(f"{where}: operator domain {node.domain!r} is not supported")
    fn = CONVERTERS.get(node.op_type)
    if fn is None:
        raise UnsupportedOpError(f"{where}: graphflow has no converter for {node.op_type}")
    try:
        inputs = []
        for name in node.input:
            if name not in env:
                raise GraphflowError(f"{where}: input {name!r} is not defined before this node "
                                     "(the model is malformed or not topologically sorted)")
            inputs.append(env[name])
        attrs = Attrs({a.name: _attr_value(a, where) for a in node.attribute})
        partial = any(isinstance(t, ShapeValue) for t in inputs)
        const = not partial and all(t is None or t.op.type == "Const" for t in inputs)
        folded = _fold(node.op_type, fn, node, inputs, attrs, opset) if const else None
        if partial:
            rule = SHAPE_VALUE_CONVERTERS.get(node.op_type)
            if rule is None:
                raise Unsupported("its input is a shape known only at run time (graphflow "
                                  "needs static shapes here)")
            outs = [_settle(v) for v in _as_list(rule(node, inputs, attrs, opset))]
        elif folded is not None:
            outs = [None if v is None else constant(v, name=_gf_name(node.name or node.op_type))
                    for v in folded]
        else:
            attrs.used.clear()
            with name_scope(_gf_name(node.name or node.op_type)):
                outs = [_settle(v) for v in _as_list(fn(node, inputs, attrs, opset))]
        unused = sorted(set(attrs) - attrs.used)
        if unused:
            raise Unsupported(f"attribute(s) {', '.join(unused)} are not supported")
    except NeedsValue:
        raise
    except Unsupported as e:
        raise UnsupportedOpError(f"{where}: {e}") from None
    except (ShapeError, DTypeError) as e:
        raise type(e)(f"{where}: {e}") from None
    except UnsupportedOpError:
        raise
    except GraphflowError as e:
        raise GraphflowError(f"{where}: {e}") from None
    names = [n for n in node.output]
    if len(outs) < sum(1 for n in names if n):
        for n, i in zip(names, range(len(names))):
            if n and i >= len(outs):
                raise UnsupportedOpError(f"{where}: output {i} ({n!r}) is not supported")
    for name, t in zip(names, outs):
        if name:
            if t is None:
                raise UnsupportedOpError(f"{where}: output {name!r} is not supported")
            env[name] = t
