"""Data-parallel W2 (MLP 784-256-256-10, batch 128 per rank, SGD 0.01) over MPI.

    python benchmarks/distributed_w2.py [--steps 30] [--device cpu]      # runs the table below
    python benchmarks/distributed_w2.py --dims 16,16,16,16,16,16,10 --batch 8   # a small MLP:
        the per-step cost of the collectives themselves shows
    mpirun -np 2 python benchmarks/distributed_w2.py --worker --bucket-bytes 0   # one cell

Prints, at 1 and 2 ranks, with bucketing (one 16 MiB bucket: the default) and without
(bucket_bytes=0: one all-reduce per gradient): steps/s, all-reduce calls per step, and the
bytes all-reduced per step against the gradient-size lower bound. On cpu each cell runs twice:
collectives as native entries of the step's one launch sequence (built with mpicc), and as
Python host steps between native sequences (GRAPHFLOW_MPICC pointing nowhere, the fallback).
Each rank sends the whole buffer once per all-reduce at 2 ranks (ring or recursive doubling
alike: 2(n-1)/n of it), so at n=2 the bytes each rank sends equal the bytes all-reduced.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads  # noqa: E402

import graphflow as gf  # noqa: E402

W2_DIMS = (784, 256, 256, 10)


def worker(args) -> None:
    gf.distributed.init()
    rank, ranks = gf.distributed.rank(), gf.distributed.size()
    g = gf.Graph()
    with g.as_default():
        x, y, loss, params = workloads._mlp(args.dims, args.batch)
        opt = gf.distributed.DistributedOptimizer(gf.train.GradientDescentOptimizer(0.01),
                                                  bucket_bytes=args.bucket_bytes)
        train = opt.minimize(loss, var_list=params)
        init = gf.global_variables_initializer()
        bcast = gf.distributed.broadcast_variables()
    rng = np.random.default_rng(workloads.SEED + 2 + rank)  # each rank its own shard
    data = (rng.standard_normal((args.batch, args.dims[0])).astype(np.float32),
            rng.integers(0, args.dims[-1], args.batch).astype(np.int32))
    grad_bytes = sum(p.shape.num_elements() * p.dtype.size for p in params)
    comm = gf.distributed.init()
    with gf.Session(graph=g, device=args.device) as sess:
        sess.run(init)
        sess.run(bcast)
        step = sess.make_callable([loss, train], [x, y])
        for _ in range(3):
            step(*data)
        comm.Barrier()
        stats = gf.distributed.STATS
        calls, sent, python = stats["allreduce_calls"], stats["allreduce_bytes"], stats["host_step_calls"]
        start = time.perf_counter()
        for _ in range(args.steps):
            step(*data)
        comm.Barrier()
        took = time.perf_counter() - start
    if rank == 0:
        print(json.dumps({"ranks": ranks, "bucket_bytes": args.bucket_bytes, "steps_per_s": args.steps / took,
                          "calls_per_step": (stats["allreduce_calls"] - calls) / args.steps,
                          "bytes_per_step": (stats["allreduce_bytes"] - sent) / args.steps,
                          "host_steps_per_step": (stats["host_step_calls"] - python) / args.steps,
                          "native": stats["native"], "gradient_bytes": grad_bytes}))


def launch(args) -> None:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        sys.exit("needs Open MPI's mpirun (apt-get install openmpi-bin libopenmpi-dev) and mpi4py")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    name = "W2" if args.dims == W2_DIMS else "MLP " + "-".join(map(str, args.dims))
    print(f"{name} data-parallel on {args.device}, {args.steps} timed steps, batch {args.batch} per rank")
    print(f"{'ranks':>5} {'buckets':>12} {'collectives':>12} {'steps/s':>8} {'all-reduces/step':>17} "
          f"{'Python steps/step':>18} {'bytes/step':>11} {'gradient bytes':>15} {'ratio':>6}")
    ways = [("native", "mpicc"), ("host steps", "no-mpicc")] if args.device == "cpu" else [("", "mpicc")]
    for ranks in (1, 2):
        for bucket_bytes in (gf.distributed.DEFAULT_BUCKET_BYTES, 0):
            for way, mpicc in ways:
                cmd = [mpirun, "--oversubscribe", "-np", str(ranks), sys.executable, __file__, "--worker",
                       "--steps", str(args.steps), "--device", args.device, "--bucket-bytes",
                       str(bucket_bytes), "--dims", ",".join(map(str, args.dims)), "--batch", str(args.batch)]
                threads = str(max(1, (os.cpu_count() or 1) // ranks))  # the cores shared among the ranks
                out = subprocess.run(cmd, capture_output=True, text=True,
                                     env=dict(env, GRAPHFLOW_EMU_THREADS=threads, GRAPHFLOW_MPICC=mpicc))
                if out.returncode:
                    sys.exit(out.stdout + out.stderr)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if way == "native" and r["native"] != "yes":
                    way = "host steps"  # no usable mpicc here: r["native"] says why
                    print(f"(native collectives unavailable: {r['native']})")
                kind = "16 MiB" if bucket_bytes else "per gradient"
                print(f"{ranks:>5} {kind:>12} {way:>12} {r['steps_per_s']:>8.1f} "
                      f"{r['calls_per_step']:>17.0f} {r['host_steps_per_step']:>18.0f} "
                      f"{r['bytes_per_step']:>11.0f} {r['gradient_bytes']:>15} "
                      f"{r['bytes_per_step'] / r['gradient_bytes']:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--dims", type=lambda text: tuple(int(d) for d in text.split(",")), default=W2_DIMS,
                        help="the MLP's layer widths (default W2's: 784,256,256,10)")
    parser.add_argument("--batch", type=int, default=128, help="examples per rank and step")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", action="store_true", help="run as one rank (under mpirun)")
    parser.add_argument("--bucket-bytes", type=int, default=gf.distributed.DEFAULT_BUCKET_BYTES)
    args = parser.parse_args()
    (worker if args.worker else launch)(args)


if __name__ == "__main__":
    main()
