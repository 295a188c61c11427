"""Static shape helpers shared by the ops' shape rules. Dims may be None (unknown)."""
from __future__ import annotations

import numbers

from .errors import ShapeError


def broadcast_shapes(*shapes: tuple) -> tuple:
    """numpy broadcasting of static shapes; None broadcasts like an unknown size."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError("shapes " + " and ".join(str(list(s)) for s in shapes)
                             + " are not broadcast-compatible")
        if known:
            out.append(known.pop())
        elif None in dims:
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def axis_error(message: str) -> ShapeError:
    """A ShapeError for a bad axis argument, ending with the user's file:line."""
    from .graph import definition_site  # graph does not import this module back
    return ShapeError(f"{message} (at {definition_site()})")


def normalize_axis(axis, rank: int, what: str = "axis", allow_end: bool = False) -> int:
    """A single axis in [0, rank) (or [0, rank] for insertion points). `what` names the op's
    argument (e.g. 'argmax axis'); errors add the user's file:line."""
    if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
        raise axis_error(f"{what} must be an int, got {axis!r}")
    limit = rank + 1 if allow_end else rank
    if not -limit <= axis < limit:
        valid = f"[{-limit}, {limit})" if limit else "none: the tensor is a scalar"
        raise axis_error(f"{what} {axis} is out of range for a tensor of rank {rank} "
                         f"(valid: {valid})")
    return int(axis) % limit if limit else 0


def normalize_axes(axis, rank: int, what: str = "axis") -> tuple:
    """Reduction axes: None means all; an int or a list/tuple; sorted, unique."""
    if axis is None:
        return tuple(range(rank))
    items = list(axis) if isinstance(axis, list | tuple) else [axis]
    axes = sorted({normalize_axis(a, rank, what) for a in items})
    if len(axes) != len(items):
        raise axis_error(f"{what} {axis!r} repeats an axis")
    return tuple(axes)


def same_dim(a, b) -> bool:
    """True unless both are known and different."""
    return a is None or b is None or a == b


def merge_dim(a, b):
    return a if a is not None else b


def num_elements(shape: tuple) -> int | None:
    n = 1
    for d in shape:
        if d is None:
            return None
        n *= d
    return n
