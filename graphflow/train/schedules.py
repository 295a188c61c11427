"""The global step and learning-rate schedules as graph ops (TF1's tf.train.*_decay).

    step = gf.train.get_or_create_global_step()
    lr = gf.train.linear_warmup(gf.train.cosine_decay(1e-3, step, 10_000), step, 500)
    train_op = gf.train.AdamOptimizer(lr).minimize(loss, global_step=step)

A schedule is a scalar tensor computed from the step each run; an optimizer reads it like any
learning rate. The step is read as it was when the run started (the optimizer's increment
lands after the run), so step k trains with the learning rate of step k.
"""
from __future__ import annotations

import math

import numpy as np

from ..dtypes import int64
from ..errors import GraphflowError
from ..graph import Graph, Tensor, get_default_graph
from ..ops.core import as_tensor, cast
from ..ops.elementwise import cos, less_equal, maximum, minimum, pow, where
from ..variables import Variable, global_variables

GLOBAL_STEP = "global_step"


def get_global_step(graph: Graph | None = None) -> Variable | None:
    """The graph's global step variable, or None if there is none."""
    graph = graph or get_default_graph()
    found = graph.collections.get(GLOBAL_STEP)
    if found:
        return found[0]
    named = [v for v in global_variables(graph) if v.op.name == "global_step"]
    return named[0] if named else None


def create_global_step(graph: Graph | None = None) -> Variable:
    """Make the global step: a non-trainable int64 scalar variable named `global_step`, 0 at
    initialization. Raises if the graph has one already."""
    graph = graph or get_default_graph()
    if get_global_step(graph) is not None:
        raise GraphflowError("the graph already has a global step; use "
                             "gf.train.get_or_create_global_step()")
    if graph.unique_name("global_step", scoped=False) != "global_step":
        raise GraphflowError("an op named 'global_step' already exists, and it is not a variable")
    # made at the top level, outside any name scope or control_dependencies block
    with graph.as_default(), graph.control_dependencies(None), graph.name_scope("global_step/"):
        step = Variable(np.int64(0), name="global_step/", trainable=False, dtype=int64)
    graph.collections[GLOBAL_STEP] = [step]
    return step


def get_or_create_global_step(graph: Graph | None = None) -> Variable:
    """The graph's global step, made on first use (TF1's tf.train.get_or_create_global_step).
    Pass it to `minimize(loss, global_step=step)` or `apply_gradients(..., global_step=step)`
    to add one to it each training step."""
    step = get_global_step(graph)
    return step if step is not None else create_global_step(graph)


def _as_rate(learning_rate) -> Tensor:
    rate = as_tensor(learning_rate)
    if not rate.dtype.is_floating or rate.shape != ():
        raise GraphflowError(f"a learning rate must be a float scalar, got {rate.dtype.name} "
                             f"shape {list(rate.shape)}")
    return rate


def _step_as(global_step, rate: Tensor) -> Tensor:
    """The step as the learning rate's float dtype."""
    if global_step is None:
        raise GraphflowError("a schedule needs global_step (gf.train.get_or_create_global_step())")
    return cast(as_tensor(global_step), rate.dtype)


def exponential_decay(learning_rate, global_step, decay_steps, decay_rate, staircase: bool = False,
                      name: str | None = None) -> Tensor:
    """learning_rate * decay_rate ** (global_step / decay_steps); with staircase the exponent
    is floor(global_step / decay_steps) (steps are >= 0), so the rate drops every decay_steps."""
    if decay_steps <= 0:
        raise GraphflowError(f"exponential_decay: decay_steps must be > 0, got {decay_steps}")
    with get_default_graph().name_scope(name or "ExponentialDecay"):
        rate = _as_rate(learning_rate)
        p = _step_as(global_step, rate) / decay_steps
        if staircase:  # floor of a non-negative value: truncate through an integer
            p = cast(cast(p, int64), rate.dtype)
        return rate * pow(decay_rate, p)


def piecewise_constant(x, boundaries, values, name: str | None = None) -> Tensor:
    """values[0] while x <= boundaries[0], values[i] while boundaries[i-1] < x <= boundaries[i],
    values[-1] once x > boundaries[-1] (TF1's rule). boundaries take x's dtype; values share
    one dtype (Python floats are float32)."""
    boundaries, values = list(boundaries), list(values)
    if len(values) != len(boundaries) + 1:
        raise GraphflowError(f"piecewise_constant needs one more value than boundaries, got "
                             f"{len(boundaries)} boundaries and {len(values)} values")
    if any(b >= a for a, b in zip(boundaries[1:], boundaries)):
        raise GraphflowError(f"piecewise_constant boundaries must increase, got {boundaries}")
    with get_default_graph().name_scope(name or "PiecewiseConstant"):
        x = as_tensor(x)
        tensors = [as_tensor(v) for v in values]
        dtype = tensors[0].dtype
        for t in tensors:
            if t.dtype is not dtype or t.shape != ():
                raise GraphflowError(f"piecewise_constant values must be scalars of one dtype, "
                                     f"got {values}")
        result = tensors[-1]
        for boundary, value in reversed(list(zip(boundaries, tensors))):
            result = where(less_equal(x, as_tensor(boundary, x.dtype)), value, result)
        return result


def cosine_decay(learning_rate, global_step, decay_steps, alpha: float = 0.0,
                 name: str | None = None) -> Tensor:
    """learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha), with
    s = global_step clipped to [0, decay_steps] (TF1 clips the top; the bottom clip only
    matters for a shifted step, e.g. `global_step - warmup_steps` after a warmup)."""
    if decay_steps <= 0:
        raise GraphflowError(f"cosine_decay: decay_steps must be > 0, got {decay_steps}")
    with get_default_graph().name_scope(name or "CosineDecay"):
        rate = _as_rate(learning_rate)
        step = minimum(maximum(_step_as(global_step, rate), 0.0), float(decay_steps))
        cosine = 0.5 * (1.0 + cos(step * (math.pi / decay_steps)))
        return rate * ((1.0 - alpha) * cosine + alpha)


def linear_warmup(learning_rate, global_step, warmup_steps, name: str | None = None) -> Tensor:
    """learning_rate * min(1, global_step / warmup_steps): a ramp from 0 at step 0 to the full
    rate at warmup_steps (BERT's and Hugging Face's linear warmup). learning_rate may itself be
    a schedule; to start a decay after the warmup, shift its step:
    `linear_warmup(cosine_decay(lr, step - warmup, total - warmup), step, warmup)`."""
    if warmup_steps <= 0:
        raise GraphflowError(f"linear_warmup: warmup_steps must be > 0, got {warmup_steps}")
    with get_default_graph().name_scope(name or "LinearWarmup"):
        rate = _as_rate(learning_rate)
        return rate * minimum(_step_as(global_step, rate) / float(warmup_steps), 1.0)


def polynomial_decay(learning_rate, global_step, decay_steps, end_learning_rate=0.0001,
                     power: float = 1.0, cycle: bool = False, name: str | None = None) -> Tensor:
    """(learning_rate - end) * (1 - s / n) ** power + end, s = min(global_step, n) (TF1's rule;
    power=1 is BERT's linear decay). With cycle, n grows to decay_steps * ceil(step /
    decay_steps) (decay_steps at step 0) and the step is not clipped."""
    if decay_steps <= 0:
        raise GraphflowError(f"polynomial_decay: decay_steps must be > 0, got {decay_steps}")
    with get_default_graph().name_scope(name or "PolynomialDecay"):
        rate = _as_rate(learning_rate)
        step = _step_as(global_step, rate)
        if cycle:
            ratio = step / float(decay_steps)
            whole = cast(cast(ratio, int64), rate.dtype)  # floor (steps are >= 0)
            ceil = where(less_equal(ratio, whole), whole, whole + 1.0)
            n = float(decay_steps) * maximum(ceil, 1.0)
        else:
            step, n = minimum(step, float(decay_steps)), float(decay_steps)
        return (rate - end_learning_rate) * pow(1.0 - step / n, power) + end_learning_rate
