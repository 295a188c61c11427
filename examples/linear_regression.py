"""The mini-TensorFlow tutorial: fit a line with placeholders, variables, a session and feed_dict.

    python examples/linear_regression.py [--steps 200] [--device cpu]

Noisy points around y = 1.7 x - 0.5; gradient descent on the mean squared error finds the
slope and intercept, printed last beside numpy's least-squares answer (np.polyfit).
"""
from __future__ import annotations

import sys
import time

import numpy as np
from common import dump_kernels, make_parser, parse_args, progress

import graphflow as gf


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser(__doc__, steps=(200, 40))
    parser.add_argument("--lr", type=float, default=0.1)
    args = parse_args(parser, argv)
    steps = args.steps

    rng = np.random.default_rng(0)
    xs = rng.uniform(-2, 2, size=200).astype(np.float32)
    ys = (1.7 * xs - 0.5 + rng.normal(scale=0.3, size=200)).astype(np.float32)
    start = time.perf_counter()

    with gf.Graph().as_default():
        x = gf.placeholder(gf.float32, [None], name="x")
        y = gf.placeholder(gf.float32, [None], name="y")
        slope = gf.Variable(0.0, name="slope")
        intercept = gf.Variable(0.0, name="intercept")
        prediction = slope * x + intercept
        loss = gf.reduce_mean(gf.square(prediction - y))
        train_op = gf.train.GradientDescentOptimizer(args.lr).minimize(loss)

        losses = []
        with gf.Session(device=args.device) as sess:
            print(f"device: {sess.device}")
            sess.run(gf.global_variables_initializer())
            print(f"loss before training: {sess.run(loss, feed_dict={x: xs, y: ys}):.4f}")
            step = sess.make_callable([train_op, loss], feed_list=[x, y])  # the fast path
            for _ in (bar := progress(steps)):
                losses.append(float(step(xs, ys)[1]))
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            final_loss = float(sess.run(loss, feed_dict={x: xs, y: ys}))
            fitted = [float(v) for v in sess.run([slope, intercept])]
            dump_kernels(step, args.dump_kernels)

    seconds = time.perf_counter() - start
    exact = [float(v) for v in np.polyfit(xs.astype(np.float64), ys.astype(np.float64), 1)]
    print(f"{steps} steps in {seconds:.2f} s; loss after training: {final_loss:.4f}")
    print(f"graphflow:  slope {fitted[0]:.4f}, intercept {fitted[1]:.4f}")
    print(f"np.polyfit: slope {exact[0]:.4f}, intercept {exact[1]:.4f}")
    return {"losses": losses + [final_loss], "fitted": fitted, "exact": exact, "seconds": seconds}


if __name__ == "__main__":
    main(sys.argv[1:])
