"""Compile time of W1 as a user meets it: a new process, graph build to first result.

    python benchmarks/cold_compile.py [--device cpu] [--runs 3] [--cold 1]

Each run is a fresh Python process (bytecode caching left on, as users have it) that builds W1
(benchmarks/workloads.py), runs the initializer and one training step. The first run uses an
empty compile cache (cold: g++ compiles the kernels), the later ones the cache it filled
(warm). The time printed is graph build to first result, not the import of graphflow or of
the data set, which are printed beside it. With --cold N, all of that N times, each with its
own empty cache, and the cold and warm medians at the end (this machine's speed drifts by up
to 1.5x within minutes: one cold run says little).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {bench!r})
import graphflow as gf
import workloads
t1 = time.perf_counter()
data = workloads._digits_batch()
workloads._digits_batch = lambda: data
t2 = time.perf_counter()
x, y, fetches, (xv, yv) = workloads.build_w1()
with gf.Session(device={device!r}) as sess:
    sess.run(gf.global_variables_initializer())
    sess.run(fetches, {{x: xv, y: yv}})
t3 = time.perf_counter()
print(f"{{t1 - t0:.3f}} {{t3 - t2:.3f}}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", type=int, default=1, help="repeat with a new empty cache")
    args = parser.parse_args()
    code = CHILD.format(bench=str(Path(__file__).resolve().parent), device=args.device)
    print(f"W1 on {args.device}: graph build to first result in a new process")
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    for _ in range(args.cold):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "GRAPHFLOW_CACHE_DIR": cache}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            for run in range(args.runs):
                out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                     text=True, check=True).stdout.split()
                kind = "cold (empty cache)" if run == 0 else "warm cache"
                times["cold" if run == 0 else "warm"].append(float(out[1]))
                print(f"  {kind:20} {float(out[1]):7.3f} s   (import graphflow {float(out[0]):.3f} s)")
    if args.cold > 1:
        for kind, values in times.items():
            if values:
                print(f"{kind}: median {statistics.median(values):.3f} s over {len(values)} runs "
                      f"(min {min(values):.3f}, max {max(values):.3f})")


if __name__ == "__main__":
    main()
