"""The op registry: one entry per op type answers every question about that op.

An OpDef holds the shape/dtype rule (`infer`), the numpy reference (`compute`,
which doubles as test oracle and constant folder) and the gradient rule
(`grad`, which builds graph nodes). Codegen keeps its own table of emitters
keyed by the same type names.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .dtypes import DType


class Spec(NamedTuple):
    """What shape inference knows of a tensor: dims may be None (unknown)."""
    shape: tuple
    dtype: DType


def NO_GRADIENT(op, grad):  # noqa: N802 - a marker used like a constant
    """The op is not differentiable: no gradient flows to any input."""
    return [None] * len(op.inputs)


@dataclass(frozen=True)
class OpDef:
    type: str
    infer: Callable[..., Spec | None]          # (input specs, **attrs) -> output spec
    compute: Callable[..., Any] | None         # (*arrays, **attrs) -> ndarray
    grad: Callable | None = None               # (op, grad) -> [Tensor | None per input]
    stateful: bool = False                     # reads or changes state; never folded or merged
    needs_context: bool = False                # compute also gets ctx=RunContext


OPS: dict[str, OpDef] = {}


def register(type_: str, infer, compute, grad=None, **flags) -> OpDef:
    if type_ in OPS:
        raise ValueError(f"op type {type_!r} registered twice")
    OPS[type_] = OpDef(type_, infer, compute, grad, **flags)
    return OPS[type_]


def get(type_: str) -> OpDef:
    return OPS[type_]
