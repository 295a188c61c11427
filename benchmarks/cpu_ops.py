"""One op at a time on the `cpu` device beside the numpy `reference` device, in one run.

    python benchmarks/cpu_ops.py [--repeat 30] [--threads N]

Each row is a graph of one op (or one gradient) on a 256x1024 float32 feed (images: 8x32x32x16),
timed per `make_callable` call on both devices (median of `repeat` warm calls): what a user of
that op pays, feed copy and fetch included. A row marked `<--` is an op the compiled device runs
slower than the numpy interpreter: the list of kernels whose cpu schedule still needs work.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_speed import best  # noqa: E402  (median of warm calls)

import graphflow as gf  # noqa: E402

ROWS, COLS = 256, 1024


def cases(rng) -> dict:
    """name -> (graph builder of the placeholder, feed)."""
    x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    image = rng.standard_normal((8, 32, 32, 16)).astype(np.float32)
    ids = rng.integers(0, ROWS, ROWS * 4).astype(np.int32)
    kernel = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)

    def ln(p):
        return gf.nn.layer_norm(p, gf.constant(np.ones(COLS, np.float32)),
                                gf.constant(np.zeros(COLS, np.float32)))

    return {
        "exp": (gf.exp, x),
        "tanh": (gf.tanh, x),
        "x + row": (lambda p: p + gf.constant(x[0]), x),
        "x + column": (lambda p: p + gf.constant(x[:, :1]), x),
        "reduce_sum axis 0": (lambda p: gf.reduce_sum(p, 0), x),
        "reduce_sum axis 1": (lambda p: gf.reduce_sum(p, 1), x),
        "reduce_max axis 1": (lambda p: gf.reduce_max(p, 1), x),
        "reduce_mean": (gf.reduce_mean, x),
        "argmax axis 1": (lambda p: gf.argmax(p, 1), x),
        "cumsum axis 1": (lambda p: gf.cumsum(p, 1), x),
        "softmax": (gf.nn.softmax, x),
        "layer_norm": (ln, x),
        "transpose": (gf.transpose, x),
        "concat axis 1": (lambda p: gf.concat([p, p], 1), x),
        "strided slice": (lambda p: p[:, 100:900:2], x),
        "pad": (lambda p: gf.pad(p, [[1, 1], [2, 2]]), x),
        "tile": (lambda p: gf.tile(p, [2, 1]), x),
        "gather": (lambda p: gf.gather(gf.constant(x), p), ids),
        "one_hot": (lambda p: gf.one_hot(p, COLS), ids),
        "matmul 256x1024x256": (lambda p: gf.matmul(p, gf.constant(x[:256].T.copy())), x),
        "conv2d 3x3 SAME": (lambda p: gf.nn.conv2d(p, gf.constant(kernel), [1, 1, 1, 1], "SAME"), image),
        "max_pool2d 2x2": (lambda p: gf.nn.max_pool2d(p, [1, 2, 2, 1], [1, 2, 2, 1], "VALID"), image),
        "gradient of tanh": (lambda p: gf.gradients(gf.reduce_sum(gf.tanh(p)), [p])[0], x),
        "gradient of layer_norm": (lambda p: gf.gradients(gf.reduce_sum(ln(p) * gf.constant(x)), [p])[0], x),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="GRAPHFLOW_EMU_THREADS")
    args = parser.parse_args()
    if args.threads:
        os.environ["GRAPHFLOW_EMU_THREADS"] = str(args.threads)
    rng = np.random.default_rng(0)
    print(f"graphflow cpu vs reference, one op per graph, per call; median of {args.repeat}")
    print(f"  {'':24} {'cpu':>10} {'reference':>10} {'cpu/ref':>8}")
    slower = 0
    for name, (build, feed) in cases(rng).items():
        g = gf.Graph()
        with g.as_default():
            p = gf.placeholder(gf.int32 if feed.dtype == np.int32 else gf.float32, list(feed.shape))
            y = build(p)
        seconds = {}
        for device in ("cpu", "reference"):
            with gf.Session(graph=g, device=device) as sess, np.errstate(all="ignore"):
                f = sess.make_callable(y, [p])
                seconds[device] = best(lambda: f(feed), args.repeat)
        ratio = seconds["cpu"] / seconds["reference"]
        slower += ratio > 1
        print(f"  {name:24} {seconds['cpu'] * 1e6:8.1f}us {seconds['reference'] * 1e6:8.1f}us "
              f"{ratio:7.2f}x{'  <--' if ratio > 1 else ''}")
    print(f"{slower} op(s) slower on cpu than on reference")


if __name__ == "__main__":
    main()
