"""gf.distributed under real MPI: `mpirun -np 2|3 --oversubscribe` runs of a small training script.

The oracle: one process (the numpy `reference` device, no MPI) training on the concatenated
batch from rank 0's initial values. Faults: a killed rank, a stalled rank, mismatched graphs.
Needs Open MPI (`mpirun`) and mpi4py; .ci/run installs both.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import graphflow as gf
from graphflow.distributed.optimizer import make_buckets

MPIRUN = shutil.which("mpirun")
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(
    MPIRUN is None or not HAVE_MPI4PY,
    reason="needs Open MPI's mpirun and mpi4py (apt-get install openmpi-bin libopenmpi-dev; "
           "pip install mpi4py)")

WORKER = r'''
import json, os, signal, sys, time
import numpy as np
import graphflow as gf

BATCH = 6  # examples per rank and step


def train(device, opt, steps, ranks, rank, distributed, bucket_bytes=None, hidden=8, fault="none"):
    """Train a 5-h-3 MLP for `steps` steps; return the weights and the all-reduce count."""
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float32, [None, 5])
        y = gf.placeholder(gf.int32, [None])
        seed = 10 + rank  # ranks start from different values; the broadcast fixes that
        w1 = gf.Variable(gf.initializers.glorot_uniform(seed=seed)((5, hidden)), name="W1")
        b1 = gf.Variable(gf.initializers.random_normal(0.0, 0.1, seed=seed)((hidden,)), name="b1")
        w2 = gf.Variable(gf.initializers.glorot_uniform(seed=seed + 100)((hidden, 3)), name="W2")
        b2 = gf.Variable(gf.initializers.random_normal(0.0, 0.1, seed=seed + 100)((3,)), name="b2")
        logits = gf.tanh(x @ w1 + b1) @ w2 + b2
        loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        optimizer = (gf.train.GradientDescentOptimizer(0.5) if opt == "sgd"
                     else gf.train.AdamOptimizer(0.05))
        if distributed:
            kw = {} if bucket_bytes is None else {"bucket_bytes": bucket_bytes}
            optimizer = gf.distributed.DistributedOptimizer(optimizer, **kw)
        step = optimizer.minimize(loss)
        init = gf.global_variables_initializer()
        bcast = gf.distributed.broadcast_variables() if distributed else None
    rng = np.random.RandomState(0)
    X = rng.randn(steps, BATCH * ranks, 5).astype(np.float32)
    Y = rng.randint(0, 3, (steps, BATCH * ranks)).astype(np.int32)
    shard = slice(BATCH * rank, BATCH * (rank + 1)) if distributed else slice(None)
    with gf.Session(graph=g, device=device) as sess:
        sess.run(init)
        if bcast is not None:
            sess.run(bcast)
        before = gf.distributed.STATS["allreduce_calls"] if distributed else 0
        for i in range(steps):
            if rank == 1 and i == 2 and fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if rank == 1 and i == 2 and fault == "stall":
                time.sleep(120)
            sess.run(step, {x: X[i, shard], y: Y[i, shard]})
        calls = (gf.distributed.STATS["allreduce_calls"] - before) / steps if distributed else 0
        return {v.op.name: sess.run(v) for v in (w1, b1, w2, b2)}, calls


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    gf.distributed.init()
    rank, ranks = gf.distributed.rank(), gf.distributed.size()
    hidden = 9 if args.get("fault") == "mismatch" and rank == 1 else 8
    weights, calls = train(args["device"], args["opt"], args["steps"], ranks, rank, True,
                           args.get("bucket_bytes"), hidden, args.get("fault", "none"))
    np.savez(f"{args['out']}.{rank}.npz", calls=calls, **weights)
'''


def _load_worker(tmp_path):
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    namespace: dict = {"__name__": "worker"}
    exec(compile(WORKER, str(path), "exec"), namespace)
    return path, namespace


def _mpirun(tmp_path, ranks: int, args: dict, timeout_s: float = 40.0, mpi_timeout: float = 30.0):
    path, _ = _load_worker(tmp_path)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               GRAPHFLOW_MPI_TIMEOUT=str(mpi_timeout), OMPI_MCA_btl_vader_single_copy_mechanism="none")
    cmd = [MPIRUN, "--oversubscribe", "-np", str(ranks), sys.executable, str(path), json.dumps(args)]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    return proc, time.monotonic() - start


@needs_mpi
@pytest.mark.parametrize("device,opt,ranks,bucket_bytes,calls", [
    ("cpu", "sgd", 2, None, 1),          # one bucket: every gradient packed into one message
    ("cpu", "adam", 2, 0, 4),            # no bucketing: one all-reduce per gradient
    ("reference", "adam", 3, 128, 3),    # 128-byte buckets: [b2, W2] packed, [b1], [W1]
    ("reference", "sgd", 2, None, 1),
])
def test_weights_equal_one_process_on_the_concatenated_batch(tmp_path, device, opt, ranks,
                                                             bucket_bytes, calls):
    steps = 4
    out = tmp_path / "weights"
    proc, _ = _mpirun(tmp_path, ranks, {"device": device, "opt": opt, "steps": steps,
                                        "bucket_bytes": bucket_bytes, "out": str(out)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, worker = _load_worker(tmp_path)
    expected, _ = worker["train"]("reference", opt, steps, ranks, 0, False)
    for r in range(ranks):
        got = np.load(f"{out}.{r}.npz")
        for name, value in expected.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5,
                                       err_msg=f"rank {r}, variable {name}")
        assert got["calls"] == calls
