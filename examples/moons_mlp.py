"""micrograd's demo, as a graph: a 2-16-16-1 MLP separates make_moons: 100% training accuracy.

    python examples/moons_mlp.py [--steps 100] [--device cpu] [--plot moons_mlp.png]

Exactly micrograd's demo.ipynb: `np.random.seed(1337); random.seed(1337)`, 100 moons with
noise 0.1, labels in {-1, 1}, weights drawn with `random.uniform(-1, 1)` neuron by neuron,
layer by layer (micrograd's nn.py), biases 0, relu on the hidden layers, the SVM max-margin
loss mean(relu(1 - y*score)) plus 1e-4 * sum(p*p) over every parameter, and 100 full-batch
SGD steps with lr = 1.0 - 0.9*k/100. Computed in float64, as micrograd's Python floats are,
so the losses match micrograd's printout (first 0.8958, last 0.0110). Writes the decision
boundary as a PNG when matplotlib is installed.
"""
from __future__ import annotations

import random
import sys
import time

import numpy as np
from common import dump_kernels, make_parser, parse_args, progress
from sklearn.datasets import make_moons

import graphflow as gf

MICROGRAD_FIRST_LOSS = 0.8958441028683222  # demo.ipynb, before training
MICROGRAD_FINAL_LOSS = 0.010978370135492717  # demo.ipynb, "step 99 loss ..."
MICROGRAD_SECONDS = 163  # pure-Python micrograd, 100 steps, on this machine


def micrograd_weights(sizes: list[int]) -> list[np.ndarray]:
    """Weight matrices [nin, nout] filled in micrograd's draw order (Neuron, then Layer, then MLP)."""
    weights = []
    for nin, nout in zip(sizes, sizes[1:]):
        draws = [[random.uniform(-1, 1) for _ in range(nin)] for _ in range(nout)]
        weights.append(np.array(draws, dtype=np.float64).T)  # column j = neuron j
    return weights


def plot_boundary(path: str, score_fn, data: np.ndarray, labels: np.ndarray) -> None:
    """Write micrograd's decision-boundary picture to `path` (skipped without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    h = 0.25
    x_min, x_max = data[:, 0].min() - 1, data[:, 0].max() + 1
    y_min, y_max = data[:, 1].min() - 1, data[:, 1].max() + 1
    xx, yy = np.meshgrid(np.arange(x_min, x_max, h), np.arange(y_min, y_max, h))
    zz = (score_fn(np.c_[xx.ravel(), yy.ravel()]) > 0).reshape(xx.shape)
    plt.figure()
    plt.contourf(xx, yy, zz, cmap=plt.cm.Spectral, alpha=0.8)
    plt.scatter(data[:, 0], data[:, 1], c=labels, s=40, cmap=plt.cm.Spectral)
    plt.xlim(xx.min(), xx.max())
    plt.ylim(yy.min(), yy.max())
    plt.savefig(path)
    plt.close()
    print(f"decision boundary written to {path}")


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser(__doc__, steps=(100, 20))
    parser.add_argument("--plot", metavar="PATH", default="moons_mlp.png",
                        help="decision-boundary PNG, written when matplotlib is installed ('' = none)")
    args = parse_args(parser, argv)
    steps = args.steps

    np.random.seed(1337)
    random.seed(1337)
    data, labels = make_moons(n_samples=100, noise=0.1)
    labels = (labels * 2 - 1).astype(np.float64)  # {-1, 1}
    start = time.perf_counter()

    with gf.Graph().as_default():
        x = gf.placeholder(gf.float64, [None, 2], name="x")
        y = gf.placeholder(gf.float64, [None], name="y")
        lr = gf.placeholder(gf.float64, [], name="learning_rate")
        params, h = [], x
        sizes = [2, 16, 16, 1]
        for i, w_init in enumerate(micrograd_weights(sizes)):
            with gf.name_scope(f"layer{i}"):
                w = gf.Variable(w_init, name="w")
                b = gf.Variable(np.zeros(sizes[i + 1]), name="b")
                params += [w, b]
                h = h @ w + b
                if i < len(sizes) - 2:
                    h = gf.nn.relu(h)
        score = gf.squeeze(h, 1)
        data_loss = gf.reduce_mean(gf.nn.relu(1.0 - y * score))
        reg_loss = 1e-4 * gf.add_n([gf.reduce_sum(p * p) for p in params])
        loss = data_loss + reg_loss
        accuracy = gf.reduce_mean(gf.cast(gf.equal(score > 0.0, y > 0.0), gf.float64))
        train_op = gf.train.GradientDescentOptimizer(lr).minimize(loss)
        init = gf.global_variables_initializer()
        gf.get_default_graph().finalize()

        losses = []
        with gf.Session(device=args.device) as sess:
            print(f"device: {sess.device}")
            sess.run(init)
            step = sess.make_callable([train_op, loss, accuracy], feed_list=[x, y, lr])
            for k in (bar := progress(steps)):
                _, value, acc = step(data, labels, 1.0 - 0.9 * k / 100)
                losses.append(float(value))
                bar.set_postfix(loss=f"{value:.4f}", acc=f"{100 * acc:.0f}%")
            final_acc = float(sess.run(accuracy, {x: data, y: labels}))
            dump_kernels(step, args.dump_kernels)
            seconds = time.perf_counter() - start
            if args.plot:
                plot_boundary(args.plot, lambda pts: sess.run(score, {x: pts}), data, labels)

    print(f"{steps} steps in {seconds:.2f} s (micrograd: {MICROGRAD_SECONDS} s for 100)")
    print(f"loss at step 0: {losses[0]:.6f} (micrograd {MICROGRAD_FIRST_LOSS:.6f})")
    final = f" (micrograd {MICROGRAD_FINAL_LOSS:.6f})" if steps == 100 else ""
    print(f"loss at step {steps - 1}: {losses[-1]:.6f}{final}")
    print(f"training accuracy: {100 * final_acc:.1f}%")
    return {"losses": losses, "accuracy": final_acc, "seconds": seconds}


if __name__ == "__main__":
    main(sys.argv[1:])
