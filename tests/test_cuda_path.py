"""The `cuda` device's own path, run on the emulator: the GPU schedules (blocks, shared
memory, barriers as fibers) behind a driver with exactly the PyCUDA API that
codegen/devices/pycuda_driver.py offers (no host views, no native launch table, one thread,
allocations that are only an address). No GPU or PyCUDA here, so this is how the host side
of the cuda device is tested: what it leans on that PyCUDA lacks fails here first."""
import sys
from pathlib import Path

import numpy as np
import pytest
from graphflow.codegen import devices
from pycuda_shaped import PycudaShaped

import graphflow as gf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import workloads  # noqa: E402


@pytest.fixture
def cuda_on_emulator(monkeypatch):
    monkeypatch.setitem(devices._drivers, "cuda", PycudaShaped())


def steps(name: str, device: str, count: int = 2):
    g, x, y, fetches, (xv, yv), init = workloads.build(name)
    with gf.Session(graph=g, device=device) as sess:
        sess.run(init)
        step = sess.make_callable(fetches, feed_list=[x, y])
        out = [step(xv, yv) for _ in range(count)]
        return out, [sess.run(v) for v in g.collections["trainable_variables"]], step


@pytest.mark.parametrize("name", ["W1", "W2", "W3"])
def test_workload_steps_on_the_cuda_path_match_reference(name, cuda_on_emulator):
    pytest.importorskip("sklearn")
    ref_out, ref_vars, _ = steps(name, "reference")
    out, variables, step = steps(name, "cuda")
    assert step._plan.program.fiber_kernels, "the GPU schedules (barriers) were not used"
    for r, c in zip(ref_out, out):
        np.testing.assert_allclose(c[0], r[0], rtol=1e-5)
    for r, c in zip(ref_vars, variables):
        np.testing.assert_allclose(c, r, rtol=1e-4, atol=1e-6)
    stats = step.stats() if callable(getattr(step, "stats", None)) else None
    assert stats is None or stats["peak_memory_bytes"] > 0


def test_reductions_feeds_fetches_and_assigns_on_the_cuda_path(cuda_on_emulator):
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((300, 37)).astype(np.float32)
    results = {}
    for device in ("reference", "cuda"):
        gf.reset_default_graph()
        x = gf.placeholder(gf.float32, [None, 37])
        v = gf.Variable(np.ones(37, np.float32))
        total = gf.reduce_sum(x * v)  # over the batch dim: a two-pass (ticket) reduction
        col = gf.reduce_mean(x, axis=0)
        row = gf.reduce_max(x, axis=1)
        sm = gf.nn.softmax(x)
        upd = gf.assign_add(v, col)
        with gf.Session(device=device) as sess:
            sess.run(gf.global_variables_initializer())
            first = sess.run([total, col, row, sm, upd], {x: xv})
            second = sess.run([total, v], {x: xv[:7]})  # another shape: another table
            results[device] = first + second
    for r, c in zip(results["reference"], results["cuda"]):
        np.testing.assert_allclose(c, r, rtol=1e-4, atol=1e-5)
