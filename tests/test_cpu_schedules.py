"""The cpu device's own schedules: every kernel of the benchmark workloads W1, W2, W3 runs
without fibers (no barrier or shuffle left in what the cpu device launches), the step still
matches the numpy reference, and every kernel (either schedule) is valid CUDA that does not
spill."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from graphflow.codegen.compile import assemble, emit_kernels
from graphflow.codegen.dump import ptxas_usage

import graphflow as gf
from graphflow.passes import PIPELINE, lower, run_passes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import workloads  # noqa: E402


@pytest.mark.parametrize("name", ["W1", "W2", "W3"])
def test_workload_kernels_run_without_fibers_and_match_reference(name):
    pytest.importorskip("sklearn")
    results = {}
    for device in ("reference", "cpu"):
        g, x, y, fetches, (xv, yv), init = workloads.build(name)
        with gf.Session(graph=g, device=device) as sess:
            sess.run(init)
            step = sess.make_callable(fetches, feed_list=[x, y])
            out = [step(xv, yv) for _ in range(2)]
            results[device] = (out, [sess.run(v) for v in g.collections["trainable_variables"]])
            if device == "cpu":
                program = step._plan.program
                assert program.kernels and program.fiber_kernels == []
    (ref_out, ref_vars), (cpu_out, cpu_vars) = results["reference"], results["cpu"]
    for r, c in zip(ref_out, cpu_out):
        np.testing.assert_allclose(c[0], r[0], rtol=1e-5)
        if name == "W3":  # the gradients of every parameter
            for gr, gc in zip(r[1], c[1]):
                np.testing.assert_allclose(gc, gr, rtol=1e-3, atol=1e-5 * np.abs(gr).max())
    for r, c in zip(ref_vars, cpu_vars):
        np.testing.assert_allclose(c, r, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_workload_kernels_compile_with_nvcc_without_spills(tmp_path):
    """Every kernel of the fused W1, W2, W3 steps, in the GPU's schedules and in the cpu
    device's own, is valid CUDA for sm_80, and none spills registers (ptxas's report)."""
    pytest.importorskip("sklearn")
    for name in ("W1", "W2", "W3"):
        g, x, y, fetches, _, _ = workloads.build(name)
        flat = [t for f in fetches for t in (f if isinstance(f, list) else [f])]
        order = g.subgraph_order([t.op if isinstance(t, gf.Tensor) else t for t in flat], {x, y})
        lowered = run_passes(lower(order, flat, (x, y)), PIPELINE)
        for device in ("cuda", "cpu"):
            _, _, kernels = emit_kernels(lowered, device)
            path = tmp_path / f"{name}_{device}.cu"
            path.write_text(assemble(kernels))
            usage = ptxas_usage(str(path))
            assert set(usage) == {k.name for k in kernels}, (name, device)
            spills = {k: u for k, u in usage.items() if u["spill_stores"] or u["spill_loads"]}
            assert not spills, (name, device, spills)
