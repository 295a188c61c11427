"""Saver: variables to and from a plain .npz (no pickle), matched by variable name."""
from __future__ import annotations

import os
import tempfile

import numpy as np

from ..errors import GraphflowError
from ..variables import Variable, global_variables


class Saver:
    """save(sess, path) writes exactly `path`; restore(sess, path) is all-or-nothing."""

    def __init__(self, var_list=None) -> None:
        self._var_list = None if var_list is None else list(var_list)

    def _variables(self, sess) -> dict[str, Variable]:
        variables = self._var_list if self._var_list is not None else global_variables(sess.graph)
        return {v.op.name: v for v in variables}

    def save(self, sess, path: str) -> str:
        arrays = {name: sess.variable_value(v) for name, v in self._variables(sess).items()}
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".gf-save-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)  # atomic: a crash never leaves half a checkpoint
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    def restore(self, sess, path: str) -> None:
        """Load every variable of the graph from `path`; on any mismatch change nothing."""
        with np.load(path, allow_pickle=False) as data:
            stored = {name: data[name] for name in data.files}
        variables = self._variables(sess)
        missing = sorted(set(variables) - set(stored))
        if missing:
            raise GraphflowError(f"checkpoint {path} has no value for variable(s) "
                                 f"{', '.join(missing)} (it holds {', '.join(sorted(stored))})")
        for name, v in variables.items():
            if tuple(stored[name].shape) != tuple(v.shape):
                raise GraphflowError(f"checkpoint {path}: variable {name} has shape "
                                     f"{list(stored[name].shape)} there but {list(v.shape)} in "
                                     "the graph")
        sess.set_variables({v: stored[name] for name, v in variables.items()})
