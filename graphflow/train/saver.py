"""Saver: variables to and from a plain .npz (no pickle), matched by name."""
from __future__ import annotations

import zipfile

import numpy as np

from ..errors import DTypeError, GraphFileError, GraphflowError, ShapeError
from ..files import atomic_write
from ..variables import Variable, global_variables


def _names(var_list) -> dict[str, Variable] | None:
    """TF1's var_list: None (every global variable), a dict {name in the file: variable},
    or a list/tuple of variables (saved under their op names)."""
    if var_list is None:
        return None
    if isinstance(var_list, Variable):
        var_list = [var_list]
    if isinstance(var_list, dict):
        pairs = list(var_list.items())
    elif isinstance(var_list, list | tuple):
        pairs = [(v.op.name if isinstance(v, Variable) else None, v) for v in var_list]
    else:
        raise TypeError(f"Saver(var_list=...) takes a dict {{name: variable}}, a list of "
                        f"variables or None, got {type(var_list).__name__}")
    out: dict[str, Variable] = {}
    for name, v in pairs:
        if not isinstance(v, Variable):
            raise TypeError(f"Saver(var_list=...): {v!r} is not a gf.Variable")
        if not isinstance(name, str) or not name:
            raise TypeError(f"Saver(var_list=...): the name {name!r} of {v.name} is not a "
                            "non-empty string")
        if name in out:
            raise GraphflowError(f"Saver(var_list=...): two variables would be saved under the "
                                 f"name {name!r} ({out[name].name} and {v.name})")
        out[name] = v
    return out


class Saver:
    """save(sess, path) writes exactly `path`; restore(sess, path) is all-or-nothing.

    `var_list` is TF1's: None saves every global variable under its op name; a list
    saves those variables under their op names; a dict {"weights": w} saves w under
    "weights"."""

    def __init__(self, var_list=None) -> None:
        self._var_list = _names(var_list)

    def _variables(self, sess) -> dict[str, Variable]:
        if self._var_list is not None:
            return self._var_list
        return {v.op.name: v for v in global_variables(sess.graph)}

    def save(self, sess, path: str) -> str:
        """Write every variable's value to `path` (an .npz); returns `path`."""
        arrays = {name: sess.variable_value(v) for name, v in self._variables(sess).items()}
        return atomic_write(path, lambda f: np.savez(f, **arrays), "checkpoint")

    def restore(self, sess, path: str) -> None:
        """Load every variable from `path`; on any mismatch (a missing name, another shape
        or dtype) raise and change nothing."""
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = {name: data[name] for name in data.files}
        except FileNotFoundError:
            raise GraphFileError(f"checkpoint {path!r} does not exist") from None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise GraphFileError(f"checkpoint {path!r} cannot be read (truncated or not an "
                                 f".npz written by Saver.save?): {e}") from None
        variables = self._variables(sess)
        missing = sorted(set(variables) - set(stored))
        if missing:
            raise GraphflowError(f"checkpoint {path} has no value for variable(s) "
                                 f"{', '.join(missing)} (it holds {', '.join(sorted(stored))})")
        for name, v in variables.items():
            value = stored[name]
            if tuple(value.shape) != tuple(v.shape):
                raise ShapeError(f"checkpoint {path}: variable {name} has shape "
                                 f"{list(value.shape)} there but {list(v.shape)} in the graph")
            if value.dtype != v.dtype.np:
                raise DTypeError(f"checkpoint {path}: variable {name} is {value.dtype} there but "
                                 f"{v.dtype.name} in the graph; cast it when building the graph "
                                 "or save it again with the graph's dtype")
        sess.set_variables({v: stored[name] for name, v in variables.items()})
