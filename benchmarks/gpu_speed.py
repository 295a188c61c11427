"""The `cuda` device beside torch eager on the same GPU, in one run (needs PyCUDA and a GPU).

    python benchmarks/gpu_speed.py [--repeat 100]

Per workload (benchmarks/workloads.py): one step on `cuda` against `reference` (the loss and
every fetched value, float32 tolerance), the kernels and launches of the GPU schedules, the
cold compile (empty compile cache, graph to first result), and the warm step beside torch
eager on the same device. Both fetch to the host what the step fetches (graphflow returns
numpy arrays: the loss, and W3's gradients), so each timed step ends synchronized.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads  # noqa: E402
from cpu_speed import best, torch_step  # noqa: E402

import graphflow as gf  # noqa: E402


def flatten(values) -> list:
    """Every fetched array (nested lists of them: W3's gradients), as float64 vectors."""
    out = []
    for v in values:
        if isinstance(v, (list, tuple)):
            out += flatten(v)
        elif v is not None:
            out.append(np.asarray(v, np.float64).ravel())
    return out


def check(name: str) -> tuple[float, dict, float]:
    """(largest error relative to the reference's scale, stats, cold compile seconds)."""
    results = {}
    for device in ("reference", "cuda"):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["GRAPHFLOW_CACHE_DIR"] = cache
            start = time.perf_counter()
            g, x, y, fetches, (xv, yv), init = workloads.build(name)
            with gf.Session(graph=g, device=device) as sess:
                sess.run(init)
                step = sess.make_callable(fetches, feed_list=[x, y])
                first = step(xv, yv)
                cold = time.perf_counter() - start
                second = step(xv, yv)  # after the first update (W1, W2)
                stats = dict(step.stats)
            results[device] = (flatten(first) + flatten(second), stats, cold)
            del os.environ["GRAPHFLOW_CACHE_DIR"]
    ref, got = results["reference"][0], results["cuda"][0]
    err = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12)) for a, b in zip(ref, got))
    return err, results["cuda"][1], results["cuda"][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--workloads", default="W1,W2,W3")
    args = parser.parse_args()
    import pycuda.driver as drv
    gf.Session(device="cuda").close()  # the driver up before anything is timed
    print(f"device: {drv.Device(0).name()}; graphflow cuda vs torch eager (same GPU), "
          f"median of {args.repeat} warm steps")
    print(f"{'':4} {'max rel err':>11} {'kernels':>7} {'launches':>8} {'cold s':>7} "
          f"{'graphflow ms':>12} {'torch ms':>9} {'ratio':>6}")
    for name in args.workloads.split(","):
        err, stats, cold = check(name)
        g, x, y, fetches, (xv, yv), init = workloads.build(name)
        with gf.Session(graph=g, device="cuda") as sess:
            sess.run(init)
            step = sess.make_callable(fetches, feed_list=[x, y])
            ours = best(lambda: step(xv, yv), args.repeat)
        try:
            theirs = torch_step(name, args.repeat, device="cuda")
        except ImportError:
            theirs = float("nan")
        print(f"{name:4} {err:11.2e} {stats['kernels']:7d} {stats['launches']:8d} {cold:7.2f} "
              f"{ours * 1e3:12.3f} {theirs * 1e3:9.3f} {ours / theirs:6.2f}", flush=True)


if __name__ == "__main__":
    main()
