"""A small CNN on scikit-learn's 8x8 digits: conv2d + max/avg pooling + dense, >= 98% test accuracy.

    python examples/cnn_digits.py [--epochs 30] [--device cpu] [--dump-kernels kernels/]

conv 3x3x16 + relu -> max pool 2x2 -> conv 3x3x32 + relu -> avg pool 2x2 -> dense 128-10,
Adam, batch 64, on the same fixed split as train_digits.py (25% test, random_state=0).
"""
from __future__ import annotations

import sys
import time

import numpy as np
from common import dump_kernels, make_parser, parse_args, progress
from train_digits import load

import graphflow as gf


def conv_relu(x: gf.Tensor, channels_in: int, channels_out: int, seed: int) -> gf.Tensor:
    """3x3 SAME convolution, bias, relu."""
    filters = gf.Variable(gf.initializers.he_normal(seed=seed)((3, 3, channels_in, channels_out)),
                          name="filters")
    bias = gf.Variable(gf.zeros([channels_out]), name="b")
    return gf.nn.relu(gf.nn.conv2d(x, filters, strides=1, padding="SAME") + bias)


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser(__doc__, epochs=(30, 2))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.005)
    args = parse_args(parser, argv)
    epochs = args.epochs
    x_train, x_test, y_train, y_test = (a.reshape(-1, 8, 8, 1) if a.ndim == 2 else a for a in load())
    start = time.perf_counter()

    with gf.Graph().as_default():
        x = gf.placeholder(gf.float32, [None, 8, 8, 1], name="x")
        labels = gf.placeholder(gf.int64, [None], name="labels")
        with gf.name_scope("conv1"):
            h = gf.nn.max_pool2d(conv_relu(x, 1, 16, seed=1), ksize=2, strides=2, padding="VALID")
        with gf.name_scope("conv2"):
            h = gf.nn.avg_pool2d(conv_relu(h, 16, 32, seed=2), ksize=2, strides=2, padding="VALID")
        with gf.name_scope("dense"):
            w = gf.Variable(gf.initializers.glorot_uniform(seed=3)((2 * 2 * 32, 10)), name="w")
            b = gf.Variable(gf.zeros([10]), name="b")
            logits = gf.reshape(h, [-1, 2 * 2 * 32]) @ w + b
        loss = gf.reduce_mean(
            gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        train_op = gf.train.AdamOptimizer(args.lr).minimize(loss)
        accuracy = gf.reduce_mean(gf.cast(gf.equal(gf.argmax(logits, 1), labels), gf.float32))
        init = gf.global_variables_initializer()
        gf.get_default_graph().finalize()

        rng = np.random.default_rng(0)
        epoch_losses = []
        with gf.Session(device=args.device) as sess:
            print(f"device: {sess.device}")
            sess.run(init)
            step = sess.make_callable([train_op, loss], feed_list=[x, labels])
            for _ in (bar := progress(epochs)):
                order = rng.permutation(len(x_train))
                losses = [step(x_train[idx], y_train[idx])[1]
                          for idx in np.array_split(order, len(order) // args.batch)]
                epoch_losses.append(float(np.mean(losses)))
                bar.set_postfix(loss=f"{epoch_losses[-1]:.4f}")
            test_acc = float(sess.run(accuracy, {x: x_test, labels: y_test}))
            dump_kernels(step, args.dump_kernels)

    seconds = time.perf_counter() - start
    print(f"{epochs} epochs in {seconds:.2f} s (graph building and compilation included); "
          f"final train loss {epoch_losses[-1]:.4f}")
    print(f"test accuracy: {100 * test_acc:.1f}%")
    return {"losses": epoch_losses, "accuracy": test_acc, "seconds": seconds}


if __name__ == "__main__":
    main(sys.argv[1:])
