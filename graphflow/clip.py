"""Gradient clipping (TF1's clip_by_global_norm)."""
from __future__ import annotations

from .autodiff import add_n
from .graph import Tensor
from .ops.core import as_tensor
from .ops.elementwise import maximum, sqrt
from .ops.reduction import reduce_sum


def global_norm(tensors) -> Tensor:
    """sqrt(sum of squares of every element of every tensor; None entries skipped)."""
    present = [as_tensor(t) for t in tensors if t is not None]
    return sqrt(add_n([reduce_sum(t * t) for t in present]), name="global_norm")


def clip_by_global_norm(t_list, clip_norm, use_norm=None) -> tuple[list, Tensor]:
    """Scale every tensor by clip_norm / max(global_norm, clip_norm); returns (list, norm)."""
    t_list = list(t_list)
    norm = use_norm if use_norm is not None else global_norm(t_list)
    scale = clip_norm / maximum(norm, clip_norm)
    return [None if t is None else as_tensor(t) * scale for t in t_list], norm
