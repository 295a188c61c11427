"""TF1's tiling, padding and splitting: tile, pad, split, unstack, slice.

Tile, constant Pad and MirrorPad (reflect/symmetric, one axis per op) are ops of their
own (one kernel each); Tile's gradient is TileGrad (the sum over the copies), Pad's is a
slice, MirrorPad's is MirrorPadGrad (each element collects its mirror images). Split,
unstack and slice are strided slices, which already have kernels and gradients.
"""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from ..errors import ShapeError
from ..graph import Tensor
from ..registry import Spec, register
from ..shapes import normalize_axis
from .array import strided_slice
from .core import as_tensor, builder, make


def _site() -> str:
    from ..graph import definition_site
    return definition_site()


def _constant(values, what: str, fn: str):
    """The value of a list, an array or a gf.constant; other tensors are refused (graphflow
    needs these sizes when the graph is built; TF1 would also take computed tensors)."""
    if isinstance(values, Tensor):
        if values.op.type != "Const":
            raise ShapeError(f"{fn}: {what} must be a list of ints or a constant, not the "
                             f"computed tensor {values.name} (at {_site()})")
        return values.op.attrs["value"]
    return values


def _int_list(values, what: str, rank: int | None, fn: str) -> list[int]:
    """A list of `rank` (None: any number of) Python ints."""
    values = _constant(values, what, fn)
    items = list(np.asarray(values).reshape(-1)) if not isinstance(values, list | tuple) else values
    rank = len(items) if rank is None else rank
    if len(items) != rank or not all(isinstance(v, numbers.Integral | np.integer) for v in items):
        raise ShapeError(f"{fn}: {what} must be {rank} ints (one per dim), got {values!r} "
                         f"(at {_site()})")
    return [int(v) for v in items]


# ---- tile ---------------------------------------------------------------------------------------
def _tile_infer(specs, multiples):
    x = specs[0]
    if len(multiples) != len(x.shape):
        raise ShapeError(f"multiples {list(multiples)} need one entry per dim of {list(x.shape)}")
    return Spec(tuple(None if d is None and m != 0 else (d or 0) * m
                      for d, m in zip(x.shape, multiples)), x.dtype)


def _tile_grad_compute(g, ref, multiples):
    interleaved = [n for m, d in zip(multiples, ref.shape) for n in (m, d)]
    return g.reshape(interleaved).sum(axis=tuple(range(0, 2 * ref.ndim, 2)), dtype=g.dtype)


register("Tile", infer=_tile_infer, compute=lambda x, multiples: np.tile(x, multiples),
         grad=lambda op, g: [make("TileGrad", [g, op.inputs[0]], dict(op.attrs))])
register("TileGrad", infer=lambda specs, multiples: Spec(specs[1].shape, specs[0].dtype),
         compute=_tile_grad_compute,
         grad=lambda op, g: [make("Tile", [g], dict(op.attrs)), None])


@builder("tile")
def tile(input, multiples, name: str | None = None) -> Tensor:  # noqa: A002 - TF1's name
    """Repeat `input` multiples[i] times along dim i (np.tile with one multiple per dim)."""
    x = as_tensor(input)
    multiples = tuple(_int_list(multiples, "multiples", len(x.shape), "tile"))
    if any(m < 0 for m in multiples):
        raise ShapeError(f"tile: multiples {list(multiples)} must be >= 0 (at {_site()})")
    if all(m == 1 for m in multiples):
        return x
    return make("Tile", [x], {"multiples": multiples}, name)


# ---- pad ----------------------------------------------------------------------------------------
def _pad_infer(specs, paddings, constant_values):
    x = specs[0]
    return Spec(tuple(None if d is None else d + a + b for d, (a, b) in zip(x.shape, paddings)),
                x.dtype)


def _pad_compute(x, paddings, constant_values):
    return np.pad(x, paddings, constant_values=np.array(constant_values).astype(x.dtype))


def _pad_grad(op, g):
    key = tuple(builtins.slice(a, -b if b else None) for a, b in op.attrs["paddings"])
    return [strided_slice(g, key)]


register("Pad", infer=_pad_infer, compute=_pad_compute, grad=_pad_grad)


def _mirror_infer(specs, axis, before, after, symmetric):
    x = specs[0]
    d = x.shape[axis]
    limit = None if d is None else (d if symmetric else d - 1)
    if limit is not None and max(before, after) > limit:
        raise ShapeError(f"{'SYMMETRIC' if symmetric else 'REFLECT'} padding ({before}, {after}) "
                         f"of axis {axis} needs at most {limit} per side for size {d}")
    shape = list(x.shape)
    shape[axis] = None if d is None else d + before + after
    return Spec(tuple(shape), x.dtype)


def _mirror_compute(x, axis, before, after, symmetric):
    widths = [(0, 0)] * x.ndim
    widths[axis] = (before, after)
    return np.pad(x, widths, mode="symmetric" if symmetric else "reflect")


def _mirror_grad_compute(g, ref, axis, before, after, symmetric):
    """Each input element collects g at its own place and at its mirror images."""
    d = ref.shape[axis]
    g = np.moveaxis(g, axis, 0)
    out = g[before:before + d].copy()
    skip = 0 if symmetric else 1  # REFLECT leaves out the edge element
    out[skip:skip + before] += g[:before][::-1]
    if after:
        out[d - skip - after:d - skip] += g[before + d:][::-1]
    return np.moveaxis(out, 0, axis)


register("MirrorPad", infer=_mirror_infer, compute=_mirror_compute,
         grad=lambda op, g: [make("MirrorPadGrad", [g, op.inputs[0]], dict(op.attrs))])
register("MirrorPadGrad", infer=lambda specs, **attrs: Spec(specs[1].shape, specs[0].dtype),
         compute=_mirror_grad_compute,
         grad=lambda op, g: [make("MirrorPad", [g], dict(op.attrs)), None])


@builder("pad")
def pad(tensor, paddings, mode: str = "CONSTANT", name: str | None = None,
        constant_values=0) -> Tensor:
    """Pad each dim i with paddings[i] = [before, after] values (TF1's tf.pad).

    mode: 'CONSTANT' (with `constant_values`), 'REFLECT' (mirror without the edge) or
    'SYMMETRIC' (mirror with the edge), case-insensitive.
    """
    x = as_tensor(tensor)
    rank = len(x.shape)
    rows = np.asarray(_constant(paddings, "paddings", "pad"))
    if rows.shape != (rank, 2) or rows.dtype.kind not in "iu" or (rows < 0).any():
        raise ShapeError(f"pad: paddings must be {rank} pairs [before, after] of ints >= 0 for a "
                         f"tensor of shape {list(x.shape)}, got {paddings!r} (at {_site()})")
    pairs = tuple((int(a), int(b)) for a, b in rows)
    mode = str(mode).upper()
    if mode == "CONSTANT":
        if not np.isscalar(constant_values) and np.ndim(constant_values) != 0:
            raise ShapeError(f"pad: constant_values must be a scalar, got {constant_values!r}")
        if all(p == (0, 0) for p in pairs):
            return x
        return make("Pad", [x], {"paddings": pairs, "constant_values": constant_values.item()
                                 if isinstance(constant_values, np.generic) else constant_values},
                    name)
    if mode not in ("REFLECT", "SYMMETRIC"):
        raise ValueError(f"pad: mode must be 'CONSTANT', 'REFLECT' or 'SYMMETRIC', got {mode!r}")
    for axis, (a, b) in enumerate(pairs):  # one axis at a time
        if a or b:
            x = make("MirrorPad", [x], {"axis": axis, "before": a, "after": b,
                                        "symmetric": mode == "SYMMETRIC"}, name)
    return x


# ---- split / unstack / slice ----------------------------------------------------------------------
def _axis_key(axis: int, item) -> tuple:
    return (builtins.slice(None),) * axis + (item,)


@builder("split")
def split(value, num_or_size_splits, axis: int = 0, num: int | None = None,
          name: str = "split") -> list[Tensor]:
    """Split `value` along `axis`: into num_or_size_splits equal pieces (an int), or into
    pieces of the listed sizes (one size may be -1: the rest). Returns a list of tensors.
    `num`, when given, must equal the number of pieces."""
    x = as_tensor(value)
    axis = normalize_axis(axis, len(x.shape), "split axis")
    d = x.shape[axis]
    num_or_size_splits = _constant(num_or_size_splits, "num_or_size_splits", "split")
    if isinstance(num_or_size_splits, np.ndarray) and num_or_size_splits.ndim == 0:
        num_or_size_splits = int(num_or_size_splits)
    if isinstance(num_or_size_splits, numbers.Integral):
        n = int(num_or_size_splits)
        if n <= 0:
            raise ShapeError(f"split: the number of pieces must be >= 1, got {n} (at {_site()})")
        if d is None:
            raise ShapeError(f"split: axis {axis} of {x.name} {list(x.shape)} has an unknown size;"
                             f" pass a list of sizes instead of {n} (at {_site()})")
        if d % n:
            raise ShapeError(f"split: size {d} of axis {axis} does not divide into {n} equal "
                             f"pieces (at {_site()})")
        sizes = [d // n] * n
    else:
        sizes = _int_list(num_or_size_splits, "size_splits", None, "split")
        if sum(s == -1 for s in sizes) > 1 or any(s < -1 for s in sizes):
            raise ShapeError(f"split: sizes {sizes} may hold at most one -1 and no other negative "
                             f"(at {_site()})")
        known = sum(s for s in sizes if s != -1)
        if d is not None:
            if -1 in sizes:
                if known > d:
                    raise ShapeError(f"split: sizes {sizes} add up to more than {d} (at {_site()})")
                sizes = [d - known if s == -1 else s for s in sizes]
            elif known != d:
                raise ShapeError(f"split: sizes {sizes} add up to {known}, not the size {d} of "
                                 f"axis {axis} (at {_site()})")
        elif -1 in sizes[:-1]:
            raise ShapeError(f"split: axis {axis} has an unknown size: only the last size may be "
                             f"-1 (at {_site()})")
    if num is not None and num != len(sizes):
        raise ShapeError(f"split: num={num} but {len(sizes)} pieces were asked for (at {_site()})")
    pieces, start = [], 0
    with x.graph.as_default(), x.graph.name_scope(name):
        for s in sizes:
            stop = None if s == -1 else start + s
            pieces.append(strided_slice(x, _axis_key(axis, builtins.slice(start, stop))))
            start = stop if stop is not None else start
    return pieces


@builder("unstack")
def unstack(value, num: int | None = None, axis: int = 0, name: str = "unstack") -> list[Tensor]:
    """The slices of `value` along `axis`, each without that axis (a list)."""
    x = as_tensor(value)
    axis = normalize_axis(axis, len(x.shape), "unstack axis")
    d = x.shape[axis]
    if num is None:
        if d is None:
            raise ShapeError(f"unstack: axis {axis} of {x.name} {list(x.shape)} has an unknown "
                             f"size; pass num (at {_site()})")
        num = d
    elif d is not None and num != d:
        raise ShapeError(f"unstack: num={num} but axis {axis} has size {d} (at {_site()})")
    with x.graph.as_default(), x.graph.name_scope(name):
        return [strided_slice(x, _axis_key(axis, i)) for i in range(num)]


@builder("slice")
def slice(input_, begin, size, name: str | None = None) -> Tensor:  # noqa: A001 - TF1's name
    """input_[begin[i] : begin[i] + size[i]] in every dim; size -1 takes the rest of the dim."""
    x = as_tensor(input_)
    rank = len(x.shape)
    begin = _int_list(begin, "begin", rank, "slice")
    size = _int_list(size, "size", rank, "slice")
    key = []
    for i, (b, s, d) in enumerate(zip(begin, size, x.shape)):
        if b < 0 or s < -1 or (d is not None and (b > d or (s != -1 and b + s > d))):
            raise ShapeError(f"slice: begin {begin} and size {size} do not fit in shape "
                             f"{list(x.shape)} (dim {i}) (at {_site()})")
        key.append(builtins.slice(b, None if s == -1 else b + s))
    return strided_slice(x, tuple(key), name=name or "slice")
