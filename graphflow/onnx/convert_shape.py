"""ONNX shape and data-movement ops. Shapes, axes and pads must be static (import-time) values;
the importer folds shape arithmetic on constants before these converters see it."""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..graph import Tensor
from ..ops import array as arr
from ..ops import elementwise as ew
from ..ops.core import cast, constant, fill_like, identity, make, zeros_like
from .common import Unsupported, input_at, known_shape, norm_axis, static, static_ints, to_dtype
from .shape_values import ShapeValue


def _axes_arg(inputs, attrs, opset, since: int, index: int = 1):
    """Axes from the attribute (before opset `since`) or from input `index` (from it on)."""
    if opset < since:
        axes = attrs.get("axes")
        return None if axes is None else list(axes)
    t = input_at(inputs, index)
    return None if t is None else static_ints(t, "axes")


def _reshape_dims(x: Tensor, target: list[int], allowzero: int) -> list[int]:
    dims = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= len(x.shape):
                raise Unsupported(f"Reshape: dim {i} is 0 (copy) but the input has rank "
                                  f"{len(x.shape)}")
            d = x.shape[i]
            d = -2 if d is None else d
        dims.append(d)
    unknown = [i for i, d in enumerate(dims) if d in (-1, -2)]
    if len(unknown) > 1:
        raise Unsupported(f"Reshape target {target} leaves more than one dim unknown for an input "
                          f"of shape {['?' if d is None else d for d in x.shape]}")
    return [-1 if d == -2 else d for d in dims]


def _reshape(node, inputs, attrs, opset):
    x = inputs[0]
    if opset < 5:
        target = list(attrs["shape"])
    else:
        target = static_ints(inputs[1], "the target shape")
    allowzero = attrs.get("allowzero", 0) if opset >= 14 else 0
    if allowzero and 0 in target and -1 in target:
        raise Unsupported("Reshape with allowzero=1 and both 0 and -1 in the shape")
    return arr.reshape(x, _reshape_dims(x, target, allowzero))


def _flatten(node, inputs, attrs, opset):
    x = inputs[0]
    rank = len(x.shape)
    axis = attrs.get("axis", 1)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis <= rank:
        raise Unsupported(f"Flatten axis {attrs.get('axis')} out of range for rank {rank}")
    outer, inner = x.shape[:axis], x.shape[axis:]
    dims = [math.prod(outer) if None not in outer else -1,
            math.prod(inner) if None not in inner else -1]
    if dims.count(-1) > 1:
        raise Unsupported(f"Flatten of shape {['?' if d is None else d for d in x.shape]}: both "
                          "halves have unknown dims")
    return arr.reshape(x, dims)


def _transpose(node, inputs, attrs, opset):
    perm = attrs.get("perm")
    return arr.transpose(inputs[0], None if perm is None else list(perm))


def _squeeze(node, inputs, attrs, opset):
    x = inputs[0]
    axes = _axes_arg(inputs, attrs, opset, 13)
    if axes is None:
        if None in x.shape:
            raise Unsupported("Squeeze without axes of a tensor with unknown dims")
        return arr.squeeze(x) if 1 in x.shape else identity(x)
    axes = [norm_axis(a, len(x.shape)) for a in axes]
    for a in axes:
        if x.shape[a] not in (1, None):
            raise Unsupported(f"Squeeze axis {a} has size {x.shape[a]}")
    return arr.squeeze(x, axes) if axes else identity(x)


def _unsqueeze(node, inputs, attrs, opset):
    x = inputs[0]
    axes = _axes_arg(inputs, attrs, opset, 13)
    if axes is None:
        raise Unsupported("Unsqueeze needs axes")
    rank = len(x.shape) + len(axes)
    axes = sorted(norm_axis(a, rank) for a in axes)
    if len(set(axes)) != len(axes):
        raise Unsupported(f"Unsqueeze axes {axes} repeat")
    for a in axes:
        x = arr.expand_dims(x, a)
    return x


def _concat(node, inputs, attrs, opset):
    axis = norm_axis(attrs["axis"], len(inputs[0].shape))
    for t in inputs[1:]:
        if t.dtype is not inputs[0].dtype:
            raise Unsupported("Concat of different dtypes")
    return arr.concat(inputs, axis) if len(inputs) > 1 else identity(inputs[0])


def _split(node, inputs, attrs, opset):
    x = inputs[0]
    axis = norm_axis(attrs.get("axis", 0), len(x.shape))
    n = x.shape[axis]
    count = len(node.output)
    if opset < 13:
        sizes = attrs.get("split")
        sizes = None if sizes is None else list(sizes)
    else:
        t = input_at(inputs, 1)
        sizes = None if t is None else static_ints(t, "split sizes")
    num = attrs.get("num_outputs") if opset >= 18 else None
    if sizes is None:
        if n is None:
            raise Unsupported("Split of an axis of unknown size")
        if num is not None:
            chunk = -(-n // num)
            sizes = [min(chunk, n - i * chunk) for i in range(num)]
        else:
            if n % count:
                raise Unsupported(f"Split of {n} into {count} equal parts")
            sizes = [n // count] * count
    if n is not None and sum(sizes) != n:
        raise Unsupported(f"Split sizes {sizes} do not add up to {n}")
    outs, start = [], 0
    for size in sizes:
        key = (slice(None),) * axis + (slice(start, start + size),)
        outs.append(arr.strided_slice(x, key))
        start += size
    return outs


def _slice(node, inputs, attrs, opset):
    x = inputs[0]
    rank = len(x.shape)
    if opset < 10:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = attrs.get("axes")
        steps = [1] * len(starts)
    else:
        starts, ends = static_ints(inputs[1], "starts"), static_ints(inputs[2], "ends")
        axes = None if input_at(inputs, 3) is None else static_ints(inputs[3], "axes")
        steps = ([1] * len(starts) if input_at(inputs, 4) is None
                 else static_ints(inputs[4], "steps"))
    axes = list(range(len(starts))) if axes is None else [norm_axis(a, rank) for a in axes]
    if len({len(starts), len(ends), len(axes), len(steps)}) != 1 or len(set(axes)) != len(axes):
        raise Unsupported("Slice starts/ends/axes/steps do not match")
    key = [slice(None)] * rank
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise Unsupported("Slice step 0")
        key[a] = slice(s, e, st)
    return arr.strided_slice(x, tuple(key))


def _gather(node, inputs, attrs, opset):
    x, idx = inputs
    axis = norm_axis(attrs.get("axis", 0), len(x.shape))
    return gather_wrapped(x, idx, axis)


def gather_wrapped(x: Tensor, idx: Tensor, axis: int) -> Tensor:
    """gf.gather with ONNX's negative indices (counted from the end)."""
    n = x.shape[axis]
    value = static(idx, "indices") if idx.op.type == "Const" else None
    if value is not None:
        if n is None:
            if (value < 0).any():
                raise Unsupported("negative gather indices on an axis of unknown size")
        else:
            if ((value < -n) | (value >= n)).any():
                raise Unsupported(f"gather indices out of range for size {n}")
            idx = constant(np.where(value < 0, value + n, value).astype(value.dtype))
    elif n is None:
        raise Unsupported("run-time gather indices on an axis of unknown size")
    else:
        idx = ew.where(ew.less(idx, 0), idx + n, idx)
    return arr.gather(x, idx, axis)


def _gather_nd(node, inputs, attrs, opset):
    """GatherND as one Gather from data with its indexed leading dims flattened."""
    data, idx = inputs
    b = attrs.get("batch_dims", 0)
    dshape, ishape = known_shape(data, "data"), known_shape(idx, "indices")
    k = ishape[-1]
    if not 0 <= b < len(ishape) or b + k > len(dshape) or ishape[:b] != dshape[:b]:
        raise Unsupported(f"GatherND of data {list(dshape)} by indices {list(ishape)} with "
                          f"batch_dims={b}")
    dims = dshape[b:b + k]
    idx = cast(idx, dtypes.int64)
    flat = _flat_rows(idx, dims)
    if b:  # each batch position reads its own block of prod(dims) rows
        batch = np.indices(ishape[:b]).reshape(b, -1)
        linear = np.ravel_multi_index(tuple(batch), ishape[:b]).reshape(ishape[:b])
        offset = (linear * int(np.prod(dims, dtype=np.int64))).reshape(
            ishape[:b] + (1,) * (len(ishape) - 1 - b))
        flat = flat + constant(offset.astype(np.int64))
    rows = arr.reshape(data, [int(np.prod(dshape[:b + k], dtype=np.int64))] + list(dshape[b + k:]))
    return arr.gather(rows, flat, 0)


def _flat_rows(idx: Tensor, dims: tuple) -> Tensor:
    """Row numbers of index tuples idx[..., :len(dims)] into dims (negatives from the end)."""
    flat = None
    for j, n in enumerate(dims):
        part = idx[..., j]
        part = ew.where(ew.less(part, 0), part + n, part) * int(np.prod(dims[j + 1:], dtype=np.int64))
        flat = part if flat is None else flat + part
    return flat


SCATTER_MAX_UPDATES = 256  # mul/max/min updates are applied one by one


def _scatter_nd(node, inputs, attrs, opset):
    """ScatterND (reduction none or add) as a dense scatter-add into flattened rows."""
    from ..ops.core import ones
    data, idx, updates = inputs
    reduction = attrs.only("reduction", "none", "add", "mul", "max", "min")
    dshape, ishape = known_shape(data, "data"), known_shape(idx, "indices")
    k = ishape[-1]
    if k > len(dshape) or known_shape(updates, "updates") != ishape[:-1] + dshape[k:]:
        raise Unsupported(f"ScatterND into {list(dshape)} by indices {list(ishape)}")
    rows_n, rest = int(np.prod(dshape[:k], dtype=np.int64)), list(dshape[k:])
    n = int(np.prod(ishape[:-1], dtype=np.int64))
    flat = arr.reshape(_flat_rows(cast(idx, dtypes.int64), dshape[:k]), [n])
    rows = arr.reshape(data, [rows_n] + rest)
    if reduction in ("mul", "max", "min"):  # one update after another, as ONNX defines it
        if n > SCATTER_MAX_UPDATES:
            raise Unsupported(f"ScatterND reduction={reduction} of {n} updates (at most "
                              f"{SCATTER_MAX_UPDATES})")
        fn = {"mul": ew.multiply, "max": ew.maximum, "min": ew.minimum}[reduction]
        row_ids = constant(np.arange(rows_n, dtype=np.int64).reshape([rows_n] + [1] * len(rest)))
        ups, acc = arr.reshape(updates, [n] + rest), rows
        for j in range(n):
            acc = ew.where(ew.equal(row_ids, flat[j]), fn(acc, ups[j]), acc)
        return arr.reshape(acc, list(dshape))
    added = make("GatherGrad", [arr.reshape(updates, [n] + rest), flat, rows], {"axis": 0})
    if reduction == "add":
        out = rows + added
    else:  # indices are distinct (ONNX's rule): rows hit get the update, others keep data
        hit = make("GatherGrad", [ones([n], dtypes.int32), flat, constant(np.zeros(rows_n, np.int32))],
                   {"axis": 0})
        out = ew.where(arr.reshape(ew.greater(hit, 0), [rows_n] + [1] * len(rest)), added, rows)
    return arr.reshape(out, list(dshape))


def _compress(node, inputs, attrs, opset):
    """Compress with a static condition (specialized per value when it is a graph input)."""
    x = inputs[0]
    cond = np.asarray(static(inputs[1], "condition")).reshape(-1).astype(bool)
    axis = attrs.get("axis")
    if axis is None:
        x, axis = arr.reshape(x, [-1]), 0
    axis = norm_axis(axis, len(x.shape))
    n = known_shape(x)[axis]
    if len(cond) > n:
        raise Unsupported(f"Compress condition of length {len(cond)} for an axis of {n}")
    return arr.gather(x, constant(np.flatnonzero(cond).astype(np.int64)), axis)


def _center_crop_pad(node, inputs, attrs, opset):
    """CenterCropPad: crop or zero-pad each named axis around its center (static shapes)."""
    from ..ops.layout import pad
    x = inputs[0]
    shape = known_shape(x)
    sizes = static_ints(inputs[1], "shape")
    axes = attrs.get("axes")
    axes = list(range(len(shape))) if axes is None else [norm_axis(a, len(shape)) for a in axes]
    if len(axes) != len(sizes):
        raise Unsupported(f"CenterCropPad shape {sizes} does not match axes {axes}")
    key, pads = [slice(None)] * len(shape), [[0, 0] for _ in shape]
    for a, size in zip(axes, sizes):
        dim = shape[a]
        if size < dim:
            start = (dim - size) // 2
            key[a] = slice(start, start + size)
        elif size > dim:
            before = (size - dim) // 2
            pads[a] = [before, size - dim - before]
    return pad(x[tuple(key)], pads)


def _expand(node, inputs, attrs, opset):
    x = inputs[0]
    shape = static_ints(inputs[1], "the target shape")
    rank = max(len(shape), len(x.shape))
    xs = (1,) * (rank - len(x.shape)) + tuple(x.shape)
    ts = (1,) * (rank - len(shape)) + tuple(shape)
    out = []
    for a, b in zip(xs, ts):
        if a == 1 or a == b or b == 1:
            out.append(b if a == 1 else a)
        else:
            raise Unsupported(f"Expand of shape {list(x.shape)} to {shape}")
    if None not in out:
        return arr.broadcast_to(x, out) if tuple(out) != tuple(x.shape) else identity(x)
    ones = constant(True, shape=[1 if d is None else d for d in ts])
    return ew.where(ones, x, x)


def _tile(node, inputs, attrs, opset):
    x = inputs[0]
    repeats = static_ints(inputs[1], "repeats")
    if len(repeats) != len(x.shape) or min(repeats, default=1) < 0:
        raise Unsupported(f"Tile repeats {repeats} for rank {len(x.shape)}")
    for axis, r in enumerate(repeats):
        if r == 0:
            raise Unsupported("Tile with a zero repeat")
        if r > 1:
            x = arr.concat([x] * r, axis)
    return identity(x) if x is inputs[0] else x


_PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_indices(n: int, before: int, after: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Source index of each output position along one axis, and where it is inside."""
    src = np.arange(-before, n + after)
    inside = (src >= 0) & (src < n)
    if mode == "constant" or mode == "edge":
        return np.clip(src, 0, n - 1), inside
    if mode == "wrap":
        return np.mod(src, n), inside
    if max(before, after) >= n:
        raise Unsupported(f"reflect padding of {max(before, after)} on an axis of size {n}")
    period = 2 * (n - 1) if n > 1 else 1
    s = np.mod(src, period)
    return np.where(s >= n, period - s, s), inside


def pad(x: Tensor, pads: list[int], mode: str, value) -> Tensor:
    """Pad (or crop, with negative pads) every axis; pads = begins + ends, as ONNX orders them."""
    rank = len(x.shape)
    out = x
    for axis in range(rank):
        before, after = pads[axis], pads[axis + rank]
        if before == 0 and after == 0:
            continue
        n = x.shape[axis]
        if n is None:
            raise Unsupported("Pad of an axis of unknown size")
        if n + before + after < 0:
            raise Unsupported(f"Pad crops more than the axis holds ({n})")
        if n == 0:
            if mode != "constant":
                raise Unsupported("Pad of an empty axis")
        src, inside = _pad_indices(n, before, after, mode) if n else (None, None)
        if n == 0 or mode == "constant" and not inside.any():
            shape = list(out.shape)
            shape[axis] = n + before + after
            if None in shape:
                raise Unsupported("constant Pad of an empty axis with unknown dims")
            out = constant(value, out.dtype, shape=shape)
            continue
        gathered = arr.gather(out, constant(src.astype(np.int64)), axis)
        if mode == "constant" and not inside.all():
            mask = constant(inside.reshape([-1] + [1] * (rank - 1 - axis)))
            gathered = ew.where(mask, gathered, constant(value, out.dtype))
        out = gathered
    return identity(out) if out is x else out


def _pad(node, inputs, attrs, opset):
    x = inputs[0]
    mode = attrs.only("mode", *_PAD_MODES)
    rank = len(x.shape)
    if opset < 11:
        pads, value = list(attrs.get("pads", attrs.get("paddings"))), attrs.get("value", 0.0)
    else:
        pads = static_ints(inputs[1], "pads")
        cv = input_at(inputs, 2)
        value = 0 if cv is None else static(cv, "the constant value").reshape(-1)[0].item()
        axes_t = input_at(inputs, 3)
        if axes_t is not None:
            axes = [norm_axis(a, rank) for a in static_ints(axes_t, "axes")]
            full = [0] * (2 * rank)
            for i, a in enumerate(axes):
                full[a], full[a + rank] = pads[i], pads[i + len(axes)]
            pads = full
    if len(pads) != 2 * rank:
        raise Unsupported(f"Pad needs {2 * rank} pads for rank {rank}, got {len(pads)}")
    if x.dtype.is_bool:
        value = bool(value)
    elif x.dtype.is_integer:
        value = int(value)
    return pad(x, pads, mode, value)


def _shape(node, inputs, attrs, opset):
    x = inputs[0]
    dims = list(x.shape)
    if opset >= 15:
        rank = len(dims)
        start, end = attrs.get("start", 0), attrs.get("end", rank)
        dims = dims[slice(start, end)]
    if None in dims:
        return ShapeValue(dims)
    return constant(np.array(dims, np.int64))


def _size(node, inputs, attrs, opset):
    return constant(np.array(math.prod(known_shape(inputs[0])), np.int64))


def _constant_of_shape(node, inputs, attrs, opset):
    shape = static_ints(inputs[0], "the shape")
    value = attrs.get("value")
    value = np.zeros(1, np.float32) if value is None else value
    if value.size != 1:
        raise Unsupported("ConstantOfShape value must hold one element")
    return constant(np.full(shape, value.reshape(-1)[0], value.dtype))


def _range(node, inputs, attrs, opset):
    start, limit, delta = (static(t, "Range bounds") for t in inputs)
    if delta == 0:
        raise Unsupported("Range delta 0")
    n = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
    return constant((start + np.arange(n).astype(start.dtype) * delta).astype(start.dtype))


def _constant(node, inputs, attrs, opset):
    if len(attrs) != 1:
        raise Unsupported("Constant needs exactly one value attribute")
    (name, value), = attrs.items()
    attrs.used.add(name)
    if name == "value":
        return constant(value)
    if name == "value_float":
        return constant(np.float32(value))
    if name == "value_floats":
        return constant(np.array(value, np.float32))
    if name == "value_int":
        return constant(np.int64(value))
    if name == "value_ints":
        return constant(np.array(value, np.int64))
    raise Unsupported(f"Constant {name} (strings and sparse tensors) is not supported")


def _identity(node, inputs, attrs, opset):
    return identity(inputs[0])


def _dropout(node, inputs, attrs, opset):
    x = inputs[0]
    attrs.get("seed")
    if opset < 7:
        attrs.get("ratio")
        if not attrs.get("is_test", 0):
            raise Unsupported("Dropout in training mode (is_test=0)")
    elif opset < 12:
        attrs.get("ratio")
    else:
        mode, ratio = input_at(inputs, 2), input_at(inputs, 1)
        if mode is not None and bool(static(mode, "training_mode")):
            # a zero ratio drops nothing; any other draws ONNX's unspecified random numbers
            if ratio is None or float(static(ratio, "ratio")) != 0.0:
                raise Unsupported("Dropout in training mode")
    outs = [identity(x)]
    if len(node.output) > 1 and node.output[1]:
        outs.append(fill_like(x, True, dtypes.bool_))
    return outs


def _eye_like(node, inputs, attrs, opset):
    shape = known_shape(inputs[0])
    if len(shape) != 2:
        raise Unsupported("EyeLike needs a 2-D input")
    dtype = inputs[0].dtype if attrs.get("dtype") is None else to_dtype(attrs["dtype"])
    return constant(np.eye(*shape, k=attrs.get("k", 0), dtype=dtype.np))


def _trilu(node, inputs, attrs, opset):
    x = inputs[0]
    if len(x.shape) < 2 or None in x.shape[-2:]:
        raise Unsupported("Trilu needs known last two dims")
    k = 0 if input_at(inputs, 1) is None else int(static(inputs[1], "k"))
    ones = np.ones(x.shape[-2:], bool)
    mask = np.triu(ones, k) if attrs.get("upper", 1) else np.tril(ones, k)
    return ew.where(constant(mask), x, zeros_like(x))


def _one_hot(node, inputs, attrs, opset):
    idx, depth, values = inputs
    depth = int(static(depth, "depth").reshape(-1)[0])
    rank = len(idx.shape) + 1
    axis = norm_axis(attrs.get("axis", -1), rank)
    if not idx.dtype.is_integer:
        idx = cast(idx, dtypes.int64)
    idx = ew.where(ew.less(idx, 0), idx + depth, idx)
    hot = ew.equal(arr.one_hot(idx, depth, dtype=dtypes.int32), 1)
    off, on = arr.strided_slice(values, (0,)), arr.strided_slice(values, (1,))
    out = ew.where(hot, on, off)
    if axis != rank - 1:
        perm = list(range(rank - 1))
        perm.insert(axis, rank - 1)
        out = arr.transpose(out, perm)
    return out


def _cumsum(node, inputs, attrs, opset):
    x = inputs[0]
    axis = norm_axis(int(static(inputs[1], "axis").reshape(-1)[0]), len(x.shape))
    return arr.cumsum(x, axis, exclusive=bool(attrs.get("exclusive", 0)),
                      reverse=bool(attrs.get("reverse", 0)))


CUMPROD_MAX_LEN = 256  # written as a chain of slices and products, one per element


def _cumprod(node, inputs, attrs, opset):
    """CumProd along a static axis as a chain of products of slices (no product scan kernel)."""
    from ..ops.layout import unstack
    x = inputs[0]
    axis = norm_axis(int(static(inputs[1], "axis").reshape(-1)[0]), len(x.shape))
    exclusive, reverse = bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0))
    n = known_shape(x)[axis]
    if n == 0 or n > CUMPROD_MAX_LEN:
        raise Unsupported(f"CumProd over an axis of length {n} (1 to {CUMPROD_MAX_LEN} supported)")
    parts = unstack(x, n, axis)
    if reverse:
        parts = parts[::-1]
    outs, acc = [], None
    for p in parts:
        if exclusive:
            outs.append(ew.add(zeros_like(p), 1) if acc is None else acc)
        acc = p if acc is None else ew.multiply(acc, p)
        if not exclusive:
            outs.append(acc)
    if reverse:
        outs = outs[::-1]
    return arr.stack(outs, axis)


def _depth_to_space(node, inputs, attrs, opset):
    x = inputs[0]
    b = attrs["blocksize"]
    mode = attrs.only("mode", "DCR", "CRD")
    n, c, h, w = x.shape
    if None in (c, h, w):
        raise Unsupported("DepthToSpace needs known C, H, W")
    n = -1 if n is None else n
    if mode == "DCR":
        y = arr.transpose(arr.reshape(x, [n, b, b, c // (b * b), h, w]), [0, 3, 4, 1, 5, 2])
    else:
        y = arr.transpose(arr.reshape(x, [n, c // (b * b), b, b, h, w]), [0, 1, 4, 2, 5, 3])
    return arr.reshape(y, [n, c // (b * b), h * b, w * b])


def _space_to_depth(node, inputs, attrs, opset):
    x = inputs[0]
    b = attrs["blocksize"]
    mode = attrs.only("mode", "DCR", "CRD")
    n, c, h, w = x.shape
    if None in (c, h, w):
        raise Unsupported("SpaceToDepth needs known C, H, W")
    n = -1 if n is None else n
    perm = [0, 3, 5, 1, 2, 4] if mode == "DCR" else [0, 1, 3, 5, 2, 4]
    y = arr.transpose(arr.reshape(x, [n, c, h // b, b, w // b, b]), perm)
    return arr.reshape(y, [n, c * b * b, h // b, w // b])


SHAPE = {
    "Reshape": _reshape, "Flatten": _flatten, "Transpose": _transpose, "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze, "Concat": _concat, "Split": _split, "Slice": _slice,
    "Gather": _gather, "Expand": _expand, "Tile": _tile, "Pad": _pad, "Shape": _shape,
    "Size": _size, "ConstantOfShape": _constant_of_shape, "Range": _range,
    "Constant": _constant, "Identity": _identity, "Dropout": _dropout, "EyeLike": _eye_like,
    "Trilu": _trilu, "OneHot": _one_hot, "CumSum": _cumsum, "CumProd": _cumprod, "GatherND": _gather_nd,
    "CenterCropPad": _center_crop_pad, "ScatterND": _scatter_nd,
    "Compress": _compress, "DepthToSpace": _depth_to_space,
    "SpaceToDepth": _space_to_depth,
}
