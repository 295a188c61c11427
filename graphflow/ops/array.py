"""Shape and data-movement ops: reshape, transpose, broadcast, slice, concat, gather, ...

The `*Like` ops take a second input only for its run-time shape; they let
gradients undo broadcasting and reshapes when the batch size is unknown.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import dtypes
from ..dtypes import as_dtype
from ..errors import DTypeError, GraphflowError, ShapeError
from ..graph import Tensor
from ..registry import NO_GRADIENT, Spec, register
from ..shapes import broadcast_shapes, normalize_axis, num_elements, same_dim
from .core import as_tensor, builder, make, normalize_shape

# ---- Reshape ---------------------------------------------------------------


def _reshape_infer(specs, shape):
    (x,) = specs
    if sum(d == -1 for d in shape) > 1:
        raise ShapeError(f"reshape to {list(shape)}: at most one dim may be -1")
    n_in, known = num_elements(x.shape), num_elements([d for d in shape if d != -1])
    if -1 not in shape:
        if n_in is not None and n_in != known:
            raise ShapeError(f"cannot reshape {list(x.shape)} ({n_in} elements) to {list(shape)} "
                             f"({known} elements)")
        return Spec(shape, x.dtype)
    if n_in is None:
        return Spec(tuple(None if d == -1 else d for d in shape), x.dtype)
    if known == 0 or n_in % known:
        raise ShapeError(f"cannot reshape {list(x.shape)} ({n_in} elements) to {list(shape)}")
    return Spec(tuple(n_in // known if d == -1 else d for d in shape), x.dtype)


register("Reshape", infer=_reshape_infer, compute=lambda x, shape: np.reshape(x, shape),
         grad=lambda op, g: [reshape_like(g, op.inputs[0])])


@builder("reshape")
def reshape(x, shape, name: str | None = None) -> Tensor:
    """Reshape to `shape`; one dim may be -1 (inferred)."""
    x = as_tensor(x)
    dims = tuple(shape) if isinstance(shape, list | tuple) else (shape,)
    for d in dims:
        if d is None:
            raise ShapeError(f"reshape: use -1, not None, for the inferred dim (shape {list(dims)})")
    dims = tuple(-1 if d == -1 else d for d in normalize_shape([None if d == -1 else d
                                                                for d in dims], "reshape shape"))
    dims = tuple(-1 if d is None else d for d in dims)
    if dims == tuple(x.shape):
        return x
    return make("Reshape", [x], {"shape": dims}, name)


def _like_infer(specs):
    x, ref = specs
    if all(d is not None for d in x.shape) and all(d is not None for d in ref.shape):
        if num_elements(x.shape) != num_elements(ref.shape):
            raise ShapeError(f"cannot reshape {list(x.shape)} like {list(ref.shape)}")
    return Spec(ref.shape, x.dtype)


register("ReshapeLike", infer=_like_infer, compute=lambda x, ref: np.reshape(x, ref.shape),
         grad=lambda op, g: [reshape_like(g, op.inputs[0]), None])


def reshape_like(x: Tensor, ref: Tensor) -> Tensor:
    """Reshape x to ref's run-time shape."""
    if tuple(x.shape) == tuple(ref.shape) and None not in x.shape:
        return x
    return make("ReshapeLike", [x, ref])


# ---- ExpandDims / Squeeze --------------------------------------------------
def _expand_infer(specs, axis):
    shape = list(specs[0].shape)
    shape.insert(axis, 1)
    return Spec(tuple(shape), specs[0].dtype)


register("ExpandDims", infer=_expand_infer, compute=lambda x, axis: np.expand_dims(x, axis),
         grad=lambda op, g: [reshape_like(g, op.inputs[0])])


@builder("expand_dims")
def expand_dims(x, axis: int, name: str | None = None) -> Tensor:
    """Insert a dim of size 1 at `axis` (negative counts from the end, -1 appends)."""
    x = as_tensor(x)
    axis = normalize_axis(axis, len(x.shape), "expand_dims axis", allow_end=True)
    return make("ExpandDims", [x], {"axis": axis}, name)


def _squeeze_infer(specs, axis):
    shape = specs[0].shape
    for a in axis:
        if shape[a] not in (1, None):
            raise ShapeError(f"cannot squeeze axis {a} of shape {list(shape)}: its size is {shape[a]}")
    return Spec(tuple(d for i, d in enumerate(shape) if i not in axis), specs[0].dtype)


register("Squeeze", infer=_squeeze_infer, compute=lambda x, axis: np.squeeze(x, axis),
         grad=lambda op, g: [reshape_like(g, op.inputs[0])])


@builder("squeeze")
def squeeze(x, axis=None, name: str | None = None) -> Tensor:
    """Drop size-1 dims: all statically known ones, or those in `axis`."""
    x = as_tensor(x)
    rank = len(x.shape)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        items = axis if isinstance(axis, list | tuple) else [axis]
        axes = tuple(sorted({normalize_axis(a, rank, "squeeze axis") for a in items}))
    return make("Squeeze", [x], {"axis": axes}, name)


# ---- Transpose ---------------------------------------------------------------
def _transpose_infer(specs, perm):
    return Spec(tuple(specs[0].shape[p] for p in perm), specs[0].dtype)


register("Transpose", infer=_transpose_infer, compute=lambda x, perm: np.transpose(x, perm),
         grad=lambda op, g: [transpose(g, tuple(np.argsort(op.attrs["perm"])))])


@builder("transpose")
def transpose(x, perm=None, name: str | None = None) -> Tensor:
    """Permute dims; perm=None reverses them."""
    x = as_tensor(x)
    rank = len(x.shape)
    perm = tuple(reversed(range(rank))) if perm is None else tuple(perm)
    if sorted(normalize_axis(p, rank, "transpose perm entry") for p in perm) != list(range(rank)):
        raise ShapeError(f"transpose: perm {list(perm)} is not a permutation of {rank} dims "
                         f"(at {_site()})")
    perm = tuple(normalize_axis(p, rank) for p in perm)
    if perm == tuple(range(rank)):
        return x
    return make("Transpose", [x], {"perm": perm}, name)


# ---- broadcasting and its gradient ---------------------------------------
def _broadcast_to_infer(specs, shape):
    x = specs[0]
    out = broadcast_shapes(x.shape, shape)
    if len(x.shape) > len(shape) or any(not same_dim(a, b) for a, b in zip(out, shape)):
        raise ShapeError(f"cannot broadcast {list(x.shape)} to {list(shape)}")
    return Spec(shape, x.dtype)


register("BroadcastTo", infer=_broadcast_to_infer,
         compute=lambda x, shape: np.broadcast_to(x, shape).copy(),
         grad=lambda op, g: [sum_to_like(g, op.inputs[0])])


@builder("broadcast_to")
def broadcast_to(x, shape, name: str | None = None) -> Tensor:
    """x broadcast (numpy rules) to the fully known `shape`."""
    x = as_tensor(x)
    shape = normalize_shape(shape, "broadcast_to shape")
    if None in shape:
        raise ShapeError("broadcast_to: the target shape must be fully known")
    return make("BroadcastTo", [x], {"shape": shape}, name)


def _broadcast_like_infer(specs):
    x, ref = specs
    # an unknown dim of ref may turn out to be x's own size at run time
    aligned = (None,) * (len(ref.shape) - len(x.shape)) + tuple(x.shape)
    _broadcast_to_infer([x], tuple(d if d is not None else 1 if a is None else a
                                   for d, a in zip(ref.shape, aligned)))
    return Spec(ref.shape, x.dtype)


register("BroadcastLike", infer=_broadcast_like_infer,
         compute=lambda x, ref: np.broadcast_to(x, ref.shape).copy(),
         grad=lambda op, g: [sum_to_like(g, op.inputs[0]), None])


def broadcast_like(x: Tensor, ref: Tensor) -> Tensor:
    """Broadcast x to ref's run-time shape."""
    if tuple(x.shape) == tuple(ref.shape) and None not in x.shape:
        return x
    return make("BroadcastLike", [x, ref])


def _sum_to_infer(specs):
    x, ref = specs
    _broadcast_like_infer([Spec(ref.shape, x.dtype), x])
    return Spec(ref.shape, x.dtype)


def sum_to_shape(x: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a broadcast result back down to `shape` (numpy)."""
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape)
                                      if d == 1 and x.shape[lead + i] != 1)
    return np.sum(x, axis=axes, keepdims=True).reshape(shape) if axes else x.reshape(shape)


register("SumToLike", infer=_sum_to_infer, compute=lambda x, ref: sum_to_shape(x, ref.shape),
         grad=lambda op, g: [broadcast_like(g, op.inputs[0]), None])


def sum_to_like(x: Tensor, ref: Tensor) -> Tensor:
    """Sum x over the dims where ref was broadcast, giving ref's shape."""
    if tuple(x.shape) == tuple(ref.shape) and None not in x.shape:
        return x
    return make("SumToLike", [x, ref])


def unbroadcast(g: Tensor, x: Tensor, others: list[Tensor]) -> Tensor:
    """Gradient g of a broadcast op, reduced to operand x's shape.

    Skips the reduction when the static shapes prove no dim of x was broadcast.
    """
    rank = len(g.shape)
    if len(x.shape) == rank:
        proven = True
        for i, d in enumerate(x.shape):
            if d is not None and d == g.shape[i]:
                continue
            other_dims = [o.shape[len(o.shape) - rank + i] for o in others
                          if len(o.shape) - rank + i >= 0]
            if d is None and all(od == 1 for od in other_dims):
                continue
            proven = False
        if proven:
            return g
    return make("SumToLike", [g, x])


# ---- slicing -----------------------------------------------------------------
def _normalize_key(key, shape) -> tuple:
    """numpy basic indexing, encoded as a hashable tuple of ('i', n) / ('s', a, b, c) / ('n',)."""
    items = key if isinstance(key, tuple) else (key,)
    consuming = sum(1 for k in items if k is not None and k is not Ellipsis)
    if sum(1 for k in items if k is Ellipsis) > 1:
        raise ShapeError("an index can only have a single ellipsis ('...')")
    if consuming > len(shape):
        raise ShapeError(f"too many indices ({consuming}) for a tensor of rank {len(shape)}")
    out = []
    for k in items:
        if k is Ellipsis:
            out.extend([("s", None, None, None)] * (len(shape) - consuming))
        elif k is None:
            out.append(("n",))
        elif isinstance(k, bool) or not isinstance(k, numbers.Integral | slice):
            raise TypeError(f"tensor indices must be ints, slices, None or ..., got {k!r}; "
                            "use gf.gather to index with a tensor")
        elif isinstance(k, slice):
            for part in (k.start, k.stop, k.step):
                if part is not None and not isinstance(part, numbers.Integral):
                    raise TypeError(f"slice bounds must be ints or None, got {k!r}")
            if k.step == 0:
                raise ShapeError("slice step cannot be zero")
            out.append(("s", k.start, k.stop, k.step))
        else:
            out.append(("i", int(k)))
    return tuple(out)


def _decode_key(key) -> tuple:
    return tuple(k[1] if k[0] == "i" else None if k[0] == "n" else slice(*k[1:]) for k in key)


def _slice_infer(specs, key):
    shape, out, axis = specs[0].shape, [], 0
    for k in key:
        if k[0] == "n":
            out.append(1)
            continue
        d = shape[axis]
        axis += 1
        if k[0] == "i":
            if d is not None and not -d <= k[1] < d:
                raise ShapeError(f"index {k[1]} is out of bounds for axis {axis - 1} with size {d}")
        else:
            out.append(None if d is None else len(range(d)[slice(*k[1:])]))
    out.extend(shape[axis:])
    return Spec(tuple(out), specs[0].dtype)


register("StridedSlice", infer=_slice_infer,
         compute=lambda x, key: np.array(x[_decode_key(key)]),
         grad=lambda op, g: [make("StridedSliceGrad", [g, op.inputs[0]], {"key": op.attrs["key"]})])


def _slice_grad_compute(g, ref, key):
    out = np.zeros(ref.shape, g.dtype)
    out[_decode_key(key)] = g
    return out


register("StridedSliceGrad", infer=lambda specs, key: Spec(specs[1].shape, specs[0].dtype),
         compute=_slice_grad_compute,
         grad=lambda op, g: [strided_slice(g, _decode_key(op.attrs["key"])), None])


@builder("strided_slice")
def strided_slice(x, key, name: str | None = None) -> Tensor:
    """x[key] with numpy basic-indexing rules (also Tensor.__getitem__)."""
    x = as_tensor(x)
    try:
        norm = _normalize_key(key, x.shape)
    except (ShapeError, TypeError) as e:  # @builder adds the user's file:line
        raise type(e)(f"slicing {x.name} of shape {list(x.shape)}: {e}") from None
    return make("StridedSlice", [x], {"key": norm}, name or "strided_slice")


# ---- concat / stack --------------------------------------------------------
def _concat_infer(specs, axis):
    first = specs[0]
    total = 0
    for s in specs:
        if s.dtype is not first.dtype:
            raise DTypeError(f"concat inputs have different dtypes: {first.dtype.name} and "
                             f"{s.dtype.name}")
        if len(s.shape) != len(first.shape):
            raise ShapeError(f"concat inputs have different ranks: {list(first.shape)} and "
                             f"{list(s.shape)}")
        for i, (a, b) in enumerate(zip(first.shape, s.shape)):
            if i != axis and not same_dim(a, b):
                raise ShapeError(f"concat along axis {axis}: shapes {list(first.shape)} and "
                                 f"{list(s.shape)} differ in dim {i}")
        total = None if total is None or s.shape[axis] is None else total + s.shape[axis]
    shape = [next((s.shape[i] for s in specs if s.shape[i] is not None), None)
             for i in range(len(first.shape))]
    shape[axis] = total
    return Spec(tuple(shape), first.dtype)


def _concat_grad(op, g):
    refs = list(op.inputs)
    return [make("ConcatSlice", [g] + refs, {"axis": op.attrs["axis"], "index": i})
            for i in range(len(refs))]


register("Concat", infer=_concat_infer,
         compute=lambda *xs, axis: np.concatenate(xs, axis=axis), grad=_concat_grad)


def _concat_slice_compute(g, *refs, axis, index):
    start = sum(r.shape[axis] for r in refs[:index])
    return np.take(g, np.arange(start, start + refs[index].shape[axis]), axis=axis)


def _concat_slice_grad(op, g):
    axis, index = op.attrs["axis"], op.attrs["index"]
    refs = op.inputs[1:]
    with op.graph.as_default():
        from .core import zeros_like
        parts = [g if i == index else zeros_like(r) for i, r in enumerate(refs)]
    return [concat(parts, axis)] + [None] * len(refs)


register("ConcatSlice",
         infer=lambda specs, axis, index: Spec(specs[1 + index].shape, specs[0].dtype),
         compute=_concat_slice_compute, grad=_concat_slice_grad)


@builder("concat")
def concat(values, axis: int, name: str | None = None) -> Tensor:
    """Join tensors along an existing axis."""
    values = [as_tensor(v) for v in values]
    if not values:
        raise ShapeError("concat needs at least one tensor")
    if len(values) == 1:
        return values[0]
    axis = normalize_axis(axis, len(values[0].shape), "concat axis")
    return make("Concat", values, {"axis": axis}, name)


@builder("stack")
def stack(values, axis: int = 0, name: str | None = None) -> Tensor:
    """Join tensors along a new axis."""
    values = [as_tensor(v) for v in values]
    if not values:
        raise ShapeError("stack needs at least one tensor")
    axis = normalize_axis(axis, len(values[0].shape), "stack axis", allow_end=True)
    return concat([expand_dims(v, axis) for v in values], axis, name=name or "stack")


# ---- gather ----------------------------------------------------------------
def _check_indices(indices, size, what):
    if indices.size and (indices.min() < 0 or indices.max() >= size):
        bad = indices[(indices < 0) | (indices >= size)].flat[0]
        raise GraphflowError(f"{what}: index {bad} is out of range [0, {size})")


def _gather_infer(specs, axis):
    params, indices = specs
    if not indices.dtype.is_integer:
        raise DTypeError(f"gather indices must be int32 or int64, got {indices.dtype.name}")
    return Spec(params.shape[:axis] + indices.shape + params.shape[axis + 1:], params.dtype)


def _gather_compute(params, indices, axis):
    _check_indices(indices, params.shape[axis], "gather")
    return np.take(params, indices, axis=axis)


register("Gather", infer=_gather_infer, compute=_gather_compute,
         grad=lambda op, g: [make("GatherGrad", [g, op.inputs[1], op.inputs[0]],
                                  {"axis": op.attrs["axis"]}), None])


def _gather_grad_compute(g, indices, ref, axis):
    out = np.zeros(ref.shape, g.dtype)
    idx = (slice(None),) * axis + (indices,)
    np.add.at(out, idx, g)
    return out


register("GatherGrad", infer=lambda specs, axis: Spec(specs[2].shape, specs[0].dtype),
         compute=_gather_grad_compute,
         grad=lambda op, g: [gather(g, op.inputs[1], op.attrs["axis"]), None, None])


@builder("gather")
def gather(params, indices, axis: int = 0, name: str | None = None) -> Tensor:
    """Pick slices of params along axis; the gradient comes back dense."""
    params = as_tensor(params)
    indices = as_tensor(indices)
    axis = normalize_axis(axis, len(params.shape), "gather axis")
    return make("Gather", [params, indices], {"axis": axis}, name)


# ---- one_hot / cumsum ------------------------------------------------------
def _one_hot_infer(specs, depth, dtype):
    if not specs[0].dtype.is_integer:
        raise DTypeError(f"one_hot indices must be integers, got {specs[0].dtype.name}")
    return Spec(specs[0].shape + (depth,), dtype)


def _one_hot_compute(indices, depth, dtype):
    return (indices[..., None] == np.arange(depth)).astype(dtype.np)


register("OneHot", infer=_one_hot_infer, compute=_one_hot_compute, grad=NO_GRADIENT)


@builder("one_hot")
def one_hot(indices, depth: int, dtype=dtypes.float32, name: str | None = None) -> Tensor:
    """1 at each index along a new last axis; out-of-range indices give all zeros."""
    if not isinstance(depth, numbers.Integral) or depth < 0:
        raise ShapeError(f"one_hot depth must be an int >= 0, got {depth!r}")
    return make("OneHot", [as_tensor(indices)], {"depth": int(depth), "dtype": as_dtype(dtype)},
                name)


def _cumsum_compute(x, axis, exclusive, reverse):
    if reverse:
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis, dtype=x.dtype)
    if exclusive and x.shape[axis]:
        out = np.roll(out, 1, axis)
        np.moveaxis(out, axis, 0)[0] = 0
    return np.flip(out, axis) if reverse else out


register("Cumsum", infer=lambda specs, axis, exclusive, reverse: specs[0],
         compute=_cumsum_compute,
         grad=lambda op, g: [cumsum(g, op.attrs["axis"], op.attrs["exclusive"],
                                    not op.attrs["reverse"])])


@builder("cumsum")
def cumsum(x, axis: int = 0, exclusive: bool = False, reverse: bool = False,
           name: str | None = None) -> Tensor:
    """Running sum along axis (TF1's exclusive/reverse flags)."""
    x = as_tensor(x)
    if x.dtype.is_bool:
        raise DTypeError("cumsum of a bool tensor; cast it first")
    axis = normalize_axis(axis, len(x.shape), "cumsum axis")
    return make("Cumsum", [x], {"axis": axis, "exclusive": bool(exclusive),
                                "reverse": bool(reverse)}, name)


def _site() -> str:
    from ..graph import definition_site
    return definition_site()

