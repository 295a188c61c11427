"""Saved graphs: `save_graph(graph, path)` / `load_graph(path)`.

The format is a JSON file with a top-level integer `format_version` and every op in
creation order (type, exact name, inputs, control inputs, attrs, output spec, definition
site, the forward op of backward nodes), plus an `.npz` beside it holding every numpy
array attr (constant values). Nothing is pickled. Attr values are JSON scalars, lists,
or one-key objects tagging what JSON lacks: {"$dtype": "float32"}, {"$tuple": [...]},
{"$array": "a0"} (a key of the .npz), {"$scalar": [dtype, value]}, {"$float": "inf"},
{"$dict": [[key, value], ...]}.

A file that is truncated, corrupt, or from a newer format raises GraphFileError and
loads nothing.
"""
from __future__ import annotations

import hashlib
import io as _stdio
import json
import math
import os
import zipfile
from typing import Any

import numpy as np

from . import registry
from .dtypes import DType, as_dtype
from .errors import GraphFileError, GraphflowError
from .files import atomic_write, check_folder
from .graph import Graph, Operation, Tensor, get_default_graph
from .variables import Variable

FORMAT_VERSION = 1
_MAGIC = "graphflow-graph"

__all__ = ["FORMAT_VERSION", "save_graph", "load_graph"]


# ---- attrs <-> JSON -------------------------------------------------------------
def _encode(value: Any, arrays: dict, where: str) -> Any:
    """A JSON-able form of one attr value; numpy arrays go to `arrays`."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, DType):
        return {"$dtype": value.name}
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise GraphflowError(f"{where}: a numpy array of Python objects cannot be saved")
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"$array": key}
    if isinstance(value, np.generic):
        return {"$scalar": [value.dtype.name, _encode(value.item(), arrays, where)]}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, arrays, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays, where) for v in value]
    if isinstance(value, dict):
        return {"$dict": [[_encode(k, arrays, where), _encode(v, arrays, where)]
                          for k, v in value.items()]}
    raise GraphflowError(f"{where}: cannot save a value of type {type(value).__name__} "
                         f"({value!r})")


def _decode(value: Any, arrays: dict) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise ValueError(f"unknown attr encoding {value!r}")
    (tag, body), = value.items()
    if tag == "$dtype":
        return as_dtype(body)
    if tag == "$tuple":
        return tuple(_decode(v, arrays) for v in body)
    if tag == "$float":
        return float(body)
    if tag == "$array":
        if body not in arrays:
            raise ValueError(f"array {body!r} is missing from the values file")
        return arrays[body]
    if tag == "$scalar":
        return np.dtype(body[0]).type(_decode(body[1], arrays))
    if tag == "$dict":
        return {_freeze(_decode(k, arrays)): _decode(v, arrays) for k, v in body}
    raise ValueError(f"unknown attr tag {tag!r}")


def _freeze(key):
    return tuple(key) if isinstance(key, list) else key


# ---- saving -----------------------------------------------------------------------
def _values_path(path: str) -> str:
    base = path[:-5] if path.endswith(".json") else path
    return base + ".npz"


def save_graph(graph: Graph | None, path: str) -> str:
    """Write `graph` (None: the default graph) to `path` (JSON) and its constant values
    to the `.npz` beside it (`model.json` -> `model.npz`). Returns `path`."""
    graph = graph or get_default_graph()
    check_folder(path, "saved graph")
    arrays: dict[str, np.ndarray] = {}
    ops = []
    for op in graph.get_operations():
        where = f"saving {op.describe()}"
        entry = {
            "name": op.name,
            "type": op.type,
            "inputs": [t.name for t in op.inputs],
            "control_inputs": [c.name for c in op.control_inputs],
            "attrs": {k: _encode(v, arrays, f"{where}, attr {k!r}") for k, v in op.attrs.items()},
            "outputs": [{"shape": list(t.shape), "dtype": t.dtype.name} for t in op.outputs],
            "site": op.site,
        }
        if op.grad_of is not None:
            entry["grad_of"] = op.grad_of.name
        if op.outputs and isinstance(op.outputs[0], Variable):
            v = op.outputs[0]
            entry["variable"] = {"initial_value": v.initial_value.name,
                                 "initializer": v.initializer.name, "trainable": v.trainable}
        ops.append(entry)
    collections = {}
    for key, items in graph.collections.items():
        names = []
        for item in items:
            if not isinstance(item, Tensor | Operation):
                raise GraphflowError(f"saving collection {key!r}: cannot save {item!r} (only "
                                     "tensors and ops)")
            names.append(["tensor" if isinstance(item, Tensor) else "op", item.name])
        collections[key] = names

    buffer = _stdio.BytesIO()
    np.savez(buffer, **arrays)
    blob = buffer.getvalue()
    values_path = _values_path(path)
    document = {
        "format_version": FORMAT_VERSION,
        "format": _MAGIC,
        "values_file": os.path.basename(values_path),
        "values_sha256": hashlib.sha256(blob).hexdigest(),
        "seed": graph.seed,
        "ops": ops,
        "collections": collections,
    }
    text = json.dumps(document, indent=1, allow_nan=False)
    atomic_write(values_path, lambda f: f.write(blob), "saved graph values")
    return atomic_write(path, lambda f: f.write(text.encode()), "saved graph")


# ---- loading ----------------------------------------------------------------------
def _read_document(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise GraphFileError(f"saved graph {path!r} does not exist") from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GraphFileError(f"saved graph {path!r} is not valid JSON (truncated or corrupt?): "
                             f"{e}") from None
    if not isinstance(document, dict) or document.get("format") != _MAGIC:
        raise GraphFileError(f"{path!r} is not a graphflow saved graph (no \"format\": "
                             f"\"{_MAGIC}\" at its top level)")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise GraphFileError(f"saved graph {path!r}: format_version must be a positive integer, "
                             f"got {version!r}")
    if version > FORMAT_VERSION:
        raise GraphFileError(f"saved graph {path!r} has format_version {version}, newer than this "
                             f"graphflow reads ({FORMAT_VERSION}); upgrade graphflow to load it")
    return document


def _read_arrays(path: str, document: dict) -> dict:
    name = document.get("values_file")
    if not isinstance(name, str) or os.path.basename(name) != name:
        raise GraphFileError(f"saved graph {path!r}: bad values_file {name!r}")
    values_path = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    try:
        with open(values_path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise GraphFileError(f"saved graph {path!r}: its values file {values_path!r} is "
                             "missing") from None
    if hashlib.sha256(blob).hexdigest() != document.get("values_sha256"):
        raise GraphFileError(f"saved graph {path!r}: values file {values_path!r} is truncated, "
                             "corrupt, or from another save (its checksum does not match)")
    try:
        with np.load(_stdio.BytesIO(blob), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise GraphFileError(f"saved graph {path!r}: cannot read {values_path!r}: {e}") from None
    for arr in arrays.values():
        arr.flags.writeable = False  # constants are immutable, as when built
    return arrays


def load_graph(path: str) -> Graph:
    """A new gf.Graph with every op of the saved graph, names kept exactly.

    Raises GraphFileError (a GraphflowError) for a truncated, corrupt or future-version
    file; nothing is loaded then.
    """
    document = _read_document(path)
    arrays = _read_arrays(path, document)
    loader = _Loader(arrays)
    index, entry = 0, None
    try:
        seed = document.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"bad graph seed {seed!r}")
        loader.graph.seed = seed
        with loader.graph.as_default():
            for index, entry in enumerate(document["ops"]):  # noqa: B007 (read by except)
                loader.add(entry)
            index, entry = len(document["ops"]), None
            loader.finish(document["ops"], document.get("collections", {}))
    except GraphflowError as e:
        raise GraphFileError(f"saved graph {path!r}{_where(index, entry)}: {e}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise GraphFileError(f"saved graph {path!r} is corrupt{_where(index, entry)}: "
                             f"{type(e).__name__}: {e}") from None
    return loader.graph


def _where(index: int, entry) -> str:
    if entry is None:
        return ""
    name = repr(entry.get("name")) if isinstance(entry, dict) else "(not an object)"
    return f" at op #{index} {name}"


class _Loader:
    """Rebuilds ops one by one into a fresh Graph, with a name table for lookups."""

    def __init__(self, arrays: dict) -> None:
        self.graph = Graph()
        self.arrays = arrays
        self.ops: dict[str, Operation] = {}

    def op(self, name: str) -> Operation:
        if name not in self.ops:
            raise ValueError(f"refers to op {name!r}, which is not defined before it")
        return self.ops[name]

    def tensor(self, name: str) -> Tensor:
        op_name, _, index = name.rpartition(":")
        op = self.op(op_name)
        if not index.isdigit() or int(index) >= len(op.outputs):
            raise ValueError(f"refers to tensor {name!r}, which does not exist")
        return op.outputs[int(index)]

    def add(self, entry: dict) -> None:
        name, type_ = entry["name"], entry["type"]
        if not isinstance(name, str) or not name or name.endswith("/"):
            raise ValueError(f"bad op name {name!r}")
        if type_ not in registry.OPS:
            raise ValueError(f"unknown op type {type_!r} (this graphflow has no such op)")
        if name in self.ops:
            raise ValueError(f"op name {name!r} appears twice")
        inputs = [self.tensor(t) for t in entry["inputs"]]
        attrs = {k: _decode(v, self.arrays) for k, v in entry["attrs"].items()}
        try:
            op = self.graph.create_op(type_, inputs, attrs, name=name + "/")
        except GraphflowError:
            raise
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise ValueError(f"a {type_} op cannot take inputs {[t.name for t in inputs]} and "
                             f"attrs {sorted(attrs)}: {type(e).__name__}: {e}") from None
        saved = [(tuple(o["shape"]), o["dtype"]) for o in entry["outputs"]]
        computed = [(tuple(t.shape), t.dtype.name) for t in op.outputs]
        if saved != computed:
            raise ValueError(f"its saved outputs {saved} differ from what the op computes "
                             f"{computed}")
        op.site = str(entry["site"])
        op.control_inputs = [self.op(c) for c in entry["control_inputs"]]
        for c in op.control_inputs:
            self.graph.as_networkx().add_edge(c, op)
        if "grad_of" in entry:
            op.grad_of = self.op(entry["grad_of"])
        if "variable" in entry:
            if type_ != "Variable":
                raise ValueError(f"an op of type {type_} is marked as a variable")
            var = Variable.__new__(Variable)
            Tensor.__init__(var, op, 0, op.outputs[0].spec())
            op.outputs[0] = var
            var.trainable = bool(entry["variable"]["trainable"])
            var.initial_value = self.tensor(entry["variable"]["initial_value"])
        self.ops[name] = op
        _reserve_name(self.graph, name)

    def finish(self, entries: list, collections: dict) -> None:
        """Link variables to their initializers (made after them) and fill collections."""
        for entry in entries:
            if "variable" in entry:
                var = self.op(entry["name"]).outputs[0]
                var.initializer = self.op(entry["variable"]["initializer"])
        for key, items in collections.items():
            self.graph.collections[key] = [self.tensor(name) if kind == "tensor" else self.op(name)
                                           for kind, name in items]


def _reserve_name(graph: Graph, name: str) -> None:
    """Later ops and scopes built into the loaded graph get fresh names (TF1 style)."""
    parts = name.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        graph._names[prefix] = max(graph._names.get(prefix, 0), 1)
