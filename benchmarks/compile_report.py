"""What the compiler does to W1, W2, W3 (benchmarks/workloads.py): optimize=True beside
optimize=False (one kernel per op), in one run on this machine.

    python benchmarks/compile_report.py [--device cpu] [--workloads W1,W2,W3]

Per workload and setting: kernels, launches (kernel executions in one step), bytes moved beside
the touch-once bound (inputs, parameters and optimizer slots read once; updated variables and
fetched outputs written once; each activation the backward pass needs written and read once),
flops, peak memory beside the max-live bound, and the compile time (graph to first result, with
an empty compile cache).
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

import graphflow as gf  # noqa: E402
from graphflow.ops.state import ASSIGN_OPS  # noqa: E402


def touch_once_bytes(program, shapes: dict) -> int:
    """The touch-once lower bound of bytes moved, from the unoptimized lowered graph."""
    def size(t) -> int:
        return int(np.prod(shapes[t], dtype=np.int64)) * t.dtype.size

    total = 0
    graph = program.graph
    for op in graph.ops:
        if op.type in ("Placeholder", "Variable"):
            total += size(op.outputs[0])  # read once
        if op.type in ASSIGN_OPS:
            total += size(op.outputs[0])  # written once
    total += sum(size(t) for t in graph.live_outputs())
    users = graph.consumers()
    for op in graph.ops:
        forward = op.grad_of is None and op.type not in ("Placeholder", "Variable", "Const") \
            and not op.name.startswith(("gradients", "Adam", "GradientDescent"))
        if forward and op.outputs and any(u.grad_of is not None for u in users.get(op.outputs[0], [])):
            total += 2 * size(op.outputs[0])  # an activation the backward pass reads
    return total


def measure(name: str, device: str, optimize: bool) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        old = os.environ.get("GRAPHFLOW_CACHE_DIR")
        os.environ["GRAPHFLOW_CACHE_DIR"] = cache
        try:
            start = time.perf_counter()
            g, x, y, fetches, (xv, yv), init = workloads.build(name)
            with gf.Session(graph=g, device=device, optimize=optimize) as sess:
                sess.run(init)
                step = sess.make_callable(fetches, feed_list=[x, y])
                loss = float(step(xv, yv)[0])
                compile_s = time.perf_counter() - start
                stats = dict(step.stats)
                program = step._plan.program
                stats["first_loss"] = loss
                stats["compile_s"] = compile_s
                stats["shapes"] = program.shapes_for({x: xv.shape, y: yv.shape})
                stats["program"] = program
        finally:
            if old is None:
                del os.environ["GRAPHFLOW_CACHE_DIR"]
            else:
                os.environ["GRAPHFLOW_CACHE_DIR"] = old
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workloads", default="W1,W2,W3")
    args = parser.parse_args()
    head = (f"{'':4} {'optimize':8} {'kernels':>7} {'launches':>8} {'bytes moved':>12} {'touch-once':>11} "
            f"{'ratio':>6} {'flops':>11} {'peak mem':>10} {'max-live':>10} {'ratio':>6} {'compile':>8}")
    print(f"graphflow compile report, device {args.device}")
    print(head)
    for name in args.workloads.split(","):
        rows = {opt: measure(name, args.device, opt) for opt in (False, True)}
        bound = touch_once_bytes(rows[False]["program"], rows[False]["shapes"])
        for opt, r in rows.items():
            print(f"{name:4} {str(opt):8} {r['kernels']:7d} {r['launches']:8d} {r['bytes_moved']:12,d} "
                  f"{bound:11,d} {r['bytes_moved'] / bound:6.2f} {r['flops']:11,d} "
                  f"{r['peak_memory_bytes']:10,d} {r['peak_memory_bound']:10,d} "
                  f"{r['peak_memory_bytes'] / max(1, r['peak_memory_bound']):6.2f} {r['compile_s']:7.2f}s")
        on, off = rows[True]["first_loss"], rows[False]["first_loss"]
        assert abs(on - off) <= 1e-4 * abs(off) + 1e-5, f"{name}: fused loss {on} vs unfused {off}"


if __name__ == "__main__":
    main()
