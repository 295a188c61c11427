"""Stateful ops: reading a variable and assigning to it.

A run reads every variable as it was when the run started; an assign op's
output is the new value, and the Session stores it after the run.
"""
from __future__ import annotations

from ..errors import DTypeError, ShapeError
from ..registry import NO_GRADIENT, Spec, register
from ..shapes import same_dim

ASSIGN_OPS = ("Assign", "AssignAdd", "AssignSub")


def _variable_compute(shape, dtype, ctx):
    return ctx.read_variable()


register("Variable", infer=lambda specs, shape, dtype: Spec(shape, dtype),
         compute=_variable_compute, grad=NO_GRADIENT, stateful=True, needs_context=True)


def _assign_infer(specs):
    ref, value = specs
    if ref.dtype is not value.dtype:
        raise DTypeError(f"cannot assign a {value.dtype.name} value to a {ref.dtype.name} variable")
    if len(ref.shape) != len(value.shape) or not all(
            same_dim(a, b) for a, b in zip(ref.shape, value.shape)):
        raise ShapeError(f"cannot assign a value of shape {list(value.shape)} to a variable of "
                         f"shape {list(ref.shape)}")
    return ref


register("Assign", infer=_assign_infer, compute=lambda ref, value: value.copy(),
         grad=NO_GRADIENT, stateful=True)
register("AssignAdd", infer=_assign_infer, compute=lambda ref, value: ref + value,
         grad=NO_GRADIENT, stateful=True)
register("AssignSub", infer=_assign_infer, compute=lambda ref, value: ref - value,
         grad=NO_GRADIENT, stateful=True)
