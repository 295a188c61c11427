"""Speed of the `cpu` device beside torch eager and graphflow's `reference`, in one run.

    python benchmarks/cpu_speed.py [--threads 1,2] [--repeat 50]

Per thread count: the warm step of W1, W2, W3 (benchmarks/workloads.py; torch builds the same
models with the same initial values), the per-call cost of `y = x + 1` through make_callable,
an elementwise chain with a broadcast operand (`relu(x * 2 + b)`, x 256x1024, b one row), and
GEMM GFLOP/s (512^3, 128x784x256, and 128x4096x192: one 132x192 tile, cut when there are
more threads; float32) beside numpy. torch is optional (the `bench`
extra installs torch==2.13.0); its columns are left out without it. Thread counts pin every
framework: GRAPHFLOW_EMU_THREADS, torch.set_num_threads, and numpy's BLAS through threadpoolctl
when installed (else numpy's row says "BLAS threads not pinned").
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads  # noqa: E402

import graphflow as gf  # noqa: E402


def best(fn, repeat: int) -> float:
    """Median seconds per call after a warm-up."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def graphflow_step(name: str, device: str, repeat: int) -> float:
    g, x, y, fetches, (xv, yv), init = workloads.build(name)
    with gf.Session(graph=g, device=device) as sess:
        sess.run(init)
        step = sess.make_callable(fetches, feed_list=[x, y])
        return best(lambda: step(xv, yv), repeat)


def graphflow_add_one(repeat: int) -> float:
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float32, [None])
        y = x + 1.0
    with gf.Session(graph=g, device="cpu") as sess:
        f = sess.make_callable(y, [x])
        v = np.ones(16, np.float32)
        return best(lambda: f(v), repeat * 20)


CHAIN_SHAPE = (256, 1024)  # relu(x * 2 + b), b one row: 1 MiB in, 1 MiB out


def graphflow_chain(device: str, repeat: int) -> float:
    """An elementwise chain with a broadcast operand, x a variable (no feed to copy in)."""
    rng = np.random.default_rng(0)
    g = gf.Graph()
    with g.as_default():
        x = gf.Variable(rng.standard_normal(CHAIN_SHAPE, np.float32))
        b = gf.Variable(rng.standard_normal(CHAIN_SHAPE[1:], np.float32))
        y = gf.nn.relu(x * 2.0 + b)
        init = gf.global_variables_initializer()
    with gf.Session(graph=g, device=device) as sess:
        sess.run(init)
        f = sess.make_callable(y)
        return best(f, repeat)


# ---- torch eager: the same models and initial values ----------------------------------
def torch_step(name: str, repeat: int, device: str = "cpu") -> float:
    """torch eager's warm step; on "cuda" the fetched values come back to the host as
    graphflow's fetches do (the loss; W3's gradients too)."""
    import torch
    g, x, y, fetches, (xv, yv), init = workloads.build(name)
    with gf.Session(graph=g, device="reference") as sess:
        sess.run(init)
        values = {v.op.name: torch.tensor(sess.run(v)) for v in g.collections["trainable_variables"]}
    params = {k: v.clone().to(device).requires_grad_(True) for k, v in values.items()}
    xt, yt = torch.tensor(xv).to(device), torch.tensor(yv).long().to(device)
    F = torch.nn.functional  # noqa: N806
    if name in ("W1", "W2"):
        layers = len(params) // 2
        opt = (torch.optim.Adam(params.values(), lr=1e-3) if name == "W1"
               else torch.optim.SGD(params.values(), lr=0.01))

        def step():
            h = xt
            for i in range(layers):
                h = h @ params[f"W{i}"] + params[f"b{i}"]
                if i < layers - 1:
                    h = torch.relu(h)
            loss = F.cross_entropy(h, yt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.item()
        return best(step, repeat)
    B, T, D, H = 16, 32, 64, 2  # noqa: N806
    hd = D // H
    mask = torch.triu(torch.full((T, T), -1e9), diagonal=1).to(device)
    P = params  # noqa: N806

    def ln(t, n):
        return F.layer_norm(t, (D,), P[n + "_g"], P[n + "_b"], eps=1e-5)

    def heads(t):
        return t.reshape(B, T, H, hd).transpose(1, 2)

    def step():
        h = P["tok_emb"][xt.long()] + P["pos_emb"]
        qkv = ln(h, "ln1").reshape(B * T, D) @ P["w_qkv"] + P["b_qkv"]
        q, k, v = heads(qkv[:, :D]), heads(qkv[:, D:2 * D]), heads(qkv[:, 2 * D:])
        att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / np.sqrt(hd)) + mask, dim=-1)
        yy = (att @ v).transpose(1, 2).reshape(B * T, D)
        h = h + (yy @ P["w_o"] + P["b_o"]).reshape(B, T, D)
        m = F.gelu(ln(h, "ln2").reshape(B * T, D) @ P["w_fc"] + P["b_fc"], approximate="tanh")
        h = h + (m @ P["w_proj"] + P["b_proj"]).reshape(B, T, D)
        logits = ln(h, "lnf").reshape(B * T, D) @ P["w_head"]
        loss = F.cross_entropy(logits, yt.reshape(-1))
        grads = torch.autograd.grad(loss, [P[n] for n in workloads.GPT_PARAMS])
        return loss.item(), [t.cpu() for t in grads]
    return best(step, repeat)


def torch_add_one(repeat: int) -> float:
    import torch
    x = torch.ones(16)
    return best(lambda: (x + 1).numpy(), repeat * 20)


def torch_chain(repeat: int) -> float:
    import torch
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal(CHAIN_SHAPE, np.float32))
    b = torch.tensor(rng.standard_normal(CHAIN_SHAPE[1:], np.float32))
    return best(lambda: torch.relu(x * 2.0 + b).numpy(), repeat)


def gemm_gflops(m: int, k: int, n: int, repeat: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    g = gf.Graph()
    with g.as_default():
        pa, pb = gf.placeholder(gf.float32, [m, k]), gf.placeholder(gf.float32, [k, n])
        c = gf.matmul(pa, pb)
    with gf.Session(graph=g, device="cpu") as sess:
        f = sess.make_callable(c, [pa, pb])
        ours = best(lambda: f(a, b), max(3, repeat // 5))
    theirs = best(lambda: a @ b, max(3, repeat // 5))
    flops = 2.0 * m * n * k
    return flops / ours / 1e9, flops / theirs / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    print(f"graphflow cpu speed, this machine ({os.cpu_count()} cores); median of {args.repeat}")
    for threads in [int(t) for t in args.threads.split(",")]:
        os.environ["GRAPHFLOW_EMU_THREADS"] = str(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        limit = threadpool_limits(threads) if threadpool_limits else None
        print(f"\n{threads} thread(s)")
        print(f"  {'':22} {'cpu':>10} {'reference':>10} {'torch':>10} {'cpu/torch':>10} {'cpu/ref':>8}")
        for name in ("W1", "W2", "W3"):
            cpu = graphflow_step(name, "cpu", args.repeat)
            ref = graphflow_step(name, "reference", max(5, args.repeat // 5))
            tor = torch_step(name, args.repeat) if torch is not None else float("nan")
            print(f"  {name + ' warm step':22} {cpu * 1e3:8.3f}ms {ref * 1e3:8.3f}ms "
                  f"{tor * 1e3:8.3f}ms {cpu / tor:9.2f}x {cpu / ref:7.2f}x")
        cpu = graphflow_add_one(args.repeat)
        tor = torch_add_one(args.repeat) if torch is not None else float("nan")
        print(f"  {'y = x + 1 per call':22} {cpu * 1e6:8.2f}us {'':>10} {tor * 1e6:8.2f}us "
              f"{cpu / tor:9.2f}x")
        cpu, ref = graphflow_chain("cpu", args.repeat), graphflow_chain("reference", args.repeat)
        tor = torch_chain(args.repeat) if torch is not None else float("nan")
        print(f"  {'relu(x * 2 + b)':22} {cpu * 1e6:8.1f}us {ref * 1e6:8.1f}us {tor * 1e6:8.1f}us "
              f"{cpu / tor:9.2f}x {cpu / ref:7.2f}x")
        for m, k, n in ((512, 512, 512), (128, 784, 256), (128, 4096, 192)):  # the last: one tile
            ours, numpy_ = gemm_gflops(m, k, n, args.repeat)
            pinned = "" if limit else " (BLAS threads not pinned)"
            print(f"  GEMM {m}x{k}x{n}: cpu {ours:7.1f} GFLOP/s, numpy {numpy_:7.1f} GFLOP/s{pinned}, "
                  f"ratio {ours / numpy_:.2f}")
        if limit is not None:
            limit.restore_original_limits()


if __name__ == "__main__":
    main()
