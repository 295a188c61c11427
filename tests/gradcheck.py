"""Float64 central finite differences: the in-repo oracle for gradients.

`check_gradients(build, *values)` builds `out = build(*placeholders)` on float64
placeholders, differentiates `reduce_sum(out * w)` (w a fixed random array, so
every output element matters) with `gf.gradients`, and compares each gradient
with central differences of the forward graph run in a Session on perturbed
feeds. Large inputs are checked at a random subset of coordinates.

`check_hvp(build_loss, *values)` does the same one order up: the Hessian-vector
product d(grad . v)/dx against central differences of the first gradient.
"""
from __future__ import annotations

import numpy as np

import graphflow as gf

EPS = 1e-6
RTOL = 1e-5
ATOL = 1e-7
MAX_COORDS = 20


def reference_session(graph) -> gf.Session:
    """Gradients are checked as graphs: on the numpy interpreter, whatever the default device."""
    return gf.Session(graph, device="reference")


def _placeholders(values, dynamic=()) -> list:
    """float64 placeholders shaped like `values`; those numbered in `dynamic` get dim 0 None."""
    out = []
    for i, v in enumerate(values):
        shape = list(v.shape)
        if i in dynamic and shape:
            shape[0] = None
        out.append(gf.placeholder(gf.float64, shape, name=f"x{i}"))
    return out


def _coords(size: int, rng, max_coords: int) -> np.ndarray:
    if size <= max_coords:
        return np.arange(size)
    return np.sort(rng.choice(size, max_coords, replace=False))


def _assert_close(analytic, numeric, what: str, rtol: float, atol: float) -> None:
    err = np.abs(analytic - numeric)
    bound = atol + rtol * np.abs(numeric)
    if not np.all(err <= bound):
        worst = int(np.argmax(err - bound))
        raise AssertionError(
            f"{what}: analytic and finite-difference gradients differ at {int(np.sum(err > bound))}"
            f" of {err.size} checked coordinates; worst: analytic {analytic.flat[worst]!r}, "
            f"numeric {numeric.flat[worst]!r}\nanalytic {analytic}\nnumeric  {numeric}")


def check_gradients(build, *values, seed: int = 0, eps: float = EPS, rtol: float = RTOL,
                    atol: float = ATOL, max_coords: int = MAX_COORDS, dynamic=(),
                    none_for=()) -> list:
    """Check d reduce_sum(build(*xs) * w) / d xs against central differences.

    `dynamic` lists inputs whose placeholder leaves dim 0 unknown (None) at build time;
    `none_for` lists input indices whose gradient must be None. Returns the analytic
    gradients (numpy arrays, None where none was expected).
    """
    rng = np.random.default_rng(seed)
    values = [np.array(v, dtype=np.float64) for v in values]
    graph = gf.Graph()
    with graph.as_default():
        xs = _placeholders(values, dynamic)
        out = build(*xs)
        assert out.dtype is gf.float64, f"build gave a {out.dtype.name} tensor, not float64"
        w_ph = gf.placeholder(gf.float64, list(out.shape), name="w")
        loss = gf.reduce_sum(out * w_ph)
        grads = gf.gradients(loss, xs)
    sess = reference_session(graph)
    forward = sess.make_callable(out, xs)
    out_value = forward(*values)
    w = rng.standard_normal(out_value.shape)

    def f(*vals) -> float:
        return float(np.sum(forward(*vals) * w))

    feed = dict(zip(xs, values))
    feed[w_ph] = w
    results = []
    for i, g in enumerate(grads):
        if i in none_for:
            assert g is None, f"gradient for input {i} should be None, got {g}"
            results.append(None)
            continue
        assert g is not None, f"gradient for input {i} ({list(values[i].shape)}) is None"
        assert g.dtype is gf.float64, f"gradient for input {i} is {g.dtype.name}"
        analytic = sess.run(g, feed)
        assert analytic.shape == values[i].shape, \
            f"gradient for input {i} has shape {analytic.shape}, input {values[i].shape}"
        coords = _coords(values[i].size, rng, max_coords)
        numeric = np.empty(len(coords))
        for k, c in enumerate(coords):
            plus, minus = values[i].copy(), values[i].copy()
            plus.flat[c] += eps
            minus.flat[c] -= eps
            numeric[k] = (f(*values[:i], plus, *values[i + 1:])
                          - f(*values[:i], minus, *values[i + 1:])) / (2 * eps)
        _assert_close(analytic.reshape(-1)[coords], numeric, f"input {i}", rtol, atol)
        results.append(analytic)
    return results


def check_hvp(build_loss, *values, seed: int = 0, eps: float = EPS, rtol: float = RTOL,
              atol: float = ATOL) -> None:
    """Check the Hessian-vector product of a scalar loss over all inputs jointly.

    hv_i = d(sum_j grad_j . v_j)/dx_i from gf.gradients (a gradient of a gradient),
    against (grad_i(x + eps v) - grad_i(x - eps v)) / (2 eps).
    """
    rng = np.random.default_rng(seed)
    values = [np.array(v, dtype=np.float64) for v in values]
    vs = [rng.standard_normal(v.shape) for v in values]
    graph = gf.Graph()
    with graph.as_default():
        xs = _placeholders(values)
        loss = build_loss(*xs)
        assert tuple(loss.shape) == () and loss.dtype is gf.float64
        grads = gf.gradients(loss, xs)
        assert all(g is not None for g in grads)
        v_consts = [gf.constant(v) for v in vs]
        gv = gf.add_n([gf.reduce_sum(g * v) for g, v in zip(grads, v_consts)])
        hvps = gf.gradients(gv, xs, unconnected_gradients="zero")
    sess = reference_session(graph)
    grad_fn = sess.make_callable(grads, xs)
    analytic = sess.make_callable(hvps, xs)(*values)
    plus = grad_fn(*[x + eps * v for x, v in zip(values, vs)])
    minus = grad_fn(*[x - eps * v for x, v in zip(values, vs)])
    for i, (a, p, m) in enumerate(zip(analytic, plus, minus)):
        assert a.shape == values[i].shape
        _assert_close(a.reshape(-1), ((p - m) / (2 * eps)).reshape(-1), f"Hv for input {i}",
                      rtol, atol)
