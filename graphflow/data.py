"""gf.data: shuffled minibatches of numpy arrays, seeded, for feed_dict training loops.

    for xb, yb in gf.data.batches((x, y), batch_size=64, shuffle=True, seed=0, drop_last=True):
        sess.run(train_op, {x_ph: xb, y_ph: yb})

    for epoch, epoch_batches in gf.data.epochs((x, y), 64, num_epochs=20, shuffle=True, seed=0):
        for xb, yb in epoch_batches:
            ...

The order of epoch e with seed s is `np.random.default_rng([s, e]).permutation(n)`: the same
program gives the same batches every run, and each epoch is shuffled differently.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .errors import GraphflowError, ShapeError


def _as_arrays(arrays) -> tuple[tuple[np.ndarray, ...], bool]:
    """(arrays, single): one array, or a tuple/list of arrays with equal first dims."""
    single = not isinstance(arrays, list | tuple)
    items = (arrays,) if single else tuple(arrays)
    if not items:
        raise GraphflowError("gf.data needs at least one array")
    items = tuple(np.asarray(a) for a in items)
    for i, a in enumerate(items):
        if a.ndim == 0:
            raise ShapeError(f"gf.data: array {i} is a scalar; batching needs arrays with a "
                                 "first (example) dimension")
    lengths = [len(a) for a in items]
    if len(set(lengths)) > 1:
        raise ShapeError(f"gf.data: arrays have different lengths {lengths}; every array "
                             "needs one entry per example")
    return items, single


def num_batches(num_examples: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches one epoch of num_examples yields."""
    return num_examples // batch_size if drop_last else -(-num_examples // batch_size)


def batches(arrays: np.ndarray | Sequence[np.ndarray], batch_size: int, shuffle: bool = False,
            seed: int = 0, drop_last: bool = False, epoch: int = 0) -> Iterator:
    """Yield minibatches of `arrays` (one array -> arrays; a tuple/list -> tuples of arrays).

    shuffle: visit examples in the order `np.random.default_rng([seed, epoch]).permutation(n)`
    (pass the epoch number to get a new order each epoch); otherwise in order. drop_last: skip
    the final batch when it is smaller than batch_size (so every batch has one shape).
    """
    items, single = _as_arrays(arrays)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
            or batch_size <= 0:
        raise GraphflowError(f"gf.data: batch_size must be a positive int, got {batch_size!r}")
    n = len(items[0])
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else None
    return _generate(items, single, order, batch_size, num_batches(n, batch_size, drop_last))


def _generate(items, single, order, batch_size, count) -> Iterator:
    for b in range(count):
        index = slice(b * batch_size, (b + 1) * batch_size)
        if order is not None:
            index = order[index]
        batch = tuple(a[index] for a in items)
        yield batch[0] if single else batch


def epochs(arrays: np.ndarray | Sequence[np.ndarray], batch_size: int, num_epochs: int,
           shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> Iterator:
    """Yield (epoch, batches of that epoch) for epoch 0..num_epochs-1; each epoch is
    `batches(arrays, batch_size, shuffle, seed, drop_last, epoch=epoch)`."""
    batches(arrays, batch_size, shuffle, seed, drop_last)  # check the arguments now
    return ((epoch, batches(arrays, batch_size, shuffle, seed, drop_last, epoch))
            for epoch in range(num_epochs))
