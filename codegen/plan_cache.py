"""Compiled plans kept on disk: a new process with a warm cache skips passes, fusion and codegen.

A plan's key is a sha256 of everything its Records (executable.py) depend on: the pruned user
graph (each op's type, name, definition site, attributes, inputs and output specs), the fetches
and feeds, the compile settings (passes, fusion, device, OS threads) and the files of graphflow
itself (path, size and modification time of every source file: an edited emitter makes new
keys). The file ``<key>.plan`` in the compile cache's folder (devices/cache.py: private,
pruned with the compiled libraries) holds the plan's Records by shape signature, pickled (read
only when the folder and file are the user's own, the same trust as loading the libraries
compiled there); user
ops inside them are written as their position in the pruned graph and read back as the ops of
the graph asking. A graph with an attribute the key cannot spell (a Python function of a
custom op) and a Record with a host step (a Python function too) are not kept: they compile
as before. Nothing is kept while GRAPHFLOW_DEBUG, GRAPHFLOW_DUMP_DIR, GRAPHFLOW_VERIFY or
GRAPHFLOW_PROFILE ask to see the compile, or with GRAPHFLOW_PLAN_CACHE=0.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import sys
from pathlib import Path

import numpy as np

from graphflow.dtypes import DType
from graphflow.graph import Operation, Tensor, TensorShape
from graphflow.passes.lowered import LOp, LTensor

from .devices import cache

SUFFIX = ".plan"
_WATCHED = ("GRAPHFLOW_DEBUG", "GRAPHFLOW_DUMP_DIR", "GRAPHFLOW_VERIFY", "GRAPHFLOW_PROFILE")


class _UnkeyableError(Exception):
    """A value the key cannot spell."""


def enabled() -> bool:
    """False while the environment asks to see the compile or switches the plan cache off."""
    if os.environ.get("GRAPHFLOW_PLAN_CACHE", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    return not any(os.environ.get(name, "").strip() for name in _WATCHED)


@functools.cache
def code_stamp() -> str:
    """Path, size and modification time of graphflow's own files (once per process)."""
    roots = {Path(__file__).resolve().parent, Path(sys.modules["graphflow"].__file__).resolve().parent}
    entries = []
    for root in sorted(roots):
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith((".py", ".h", ".c")):
                    st = os.stat(os.path.join(folder, name))
                    entries.append(f"{folder}/{name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(entries)


def _spell(value) -> str:
    """A canonical text for an attribute value; _UnkeyableError for anything else."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        inner = ",".join(_spell(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_spell(k)}:{_spell(v)}" for k, v in sorted(
            value.items(), key=lambda kv: repr(kv[0]))) + "}"
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return f"array({data.dtype.str},{data.shape},{hashlib.sha256(data.tobytes()).hexdigest()})"
    if isinstance(value, np.generic):
        return f"{value.dtype.str}:{value.item()!r}"
    if isinstance(value, DType):
        return f"dtype:{value.name}"
    if isinstance(value, np.dtype):
        return f"np:{value.str}"
    if isinstance(value, TensorShape):
        return f"shape:{value!r}"
    if isinstance(value, slice):
        return f"slice({_spell(value.start)},{_spell(value.stop)},{_spell(value.step)})"
    if value is Ellipsis:
        return "..."
    if isinstance(value, (Tensor, Operation)):
        return f"ref:{value.name}"
    raise _UnkeyableError(type(value).__name__)


def plan_key(order: list[Operation], fetches: list, feeds: tuple, settings: tuple) -> str | None:
    """The key of one Session plan (see the module docstring); None when it is not kept."""
    if not enabled():
        return None
    h = hashlib.sha256()
    try:
        for part in (code_stamp(), repr(settings), np.__version__, sys.version):
            h.update(part.encode())
            h.update(b"\0")
        for op in order:
            grad_of = op.grad_of.name if op.grad_of is not None else ""
            outputs = ";".join(f"{t.shape!r}/{t.dtype.name}" for t in op.outputs)
            inputs = ",".join(t.name for t in op.inputs)
            control = ",".join(c.name for c in op.control_inputs)
            attrs = _spell(op.attrs)
            h.update(f"{op.type}|{op.name}|{op.site}|{grad_of}|{inputs}|{control}|{outputs}|"
                     f"{attrs}\n".encode())
        h.update(("fetch:" + ",".join(x.name for x in fetches)).encode())
        h.update(("feed:" + ",".join(t.name for t in feeds)).encode())
    except _UnkeyableError:
        return None
    return h.hexdigest()


class _Pickler(pickle.Pickler):
    def __init__(self, file, index: dict) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._index = index

    def persistent_id(self, obj):
        if isinstance(obj, Operation):
            return self._index[obj]  # KeyError: an op outside the pruned graph, not kept
        if isinstance(obj, (Tensor, LOp, LTensor)):
            raise pickle.PicklingError(f"a Record holds {obj!r}")
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, order: list) -> None:
        super().__init__(file)
        self._order = order

    def persistent_load(self, pid):
        return self._order[pid]


def load(key: str, order: list[Operation]) -> dict:
    """The Records kept for `key` (shape signature -> Record), read with `order`'s ops."""
    data = cache.load_blob(key, SUFFIX)
    if data is None:
        return {}
    try:
        records = _Unpickler(io.BytesIO(data), order).load()
    except Exception:  # noqa: BLE001 - unreadable or from another version: compile again
        return {}
    return records if isinstance(records, dict) else {}


def store(key: str, order: list[Operation], records: dict) -> bool:
    """Keep `records` under `key`; False (nothing written) if one cannot be kept."""
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, {op: i for i, op in enumerate(order)}).dump(records)
    except (pickle.PicklingError, KeyError, TypeError, AttributeError):
        return False
    cache.store_blob(key, SUFFIX, buffer.getvalue())
    return True
