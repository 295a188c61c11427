"""Train a 64-128-10 MLP with Adam on scikit-learn's 8x8 digits: >= 97% test accuracy.

    python examples/train_digits.py [--epochs 20] [--device cpu] [--dump-kernels kernels/]
    mpirun -np 2 python examples/train_digits.py --distributed     # data-parallel over MPI
    (as root, or with more ranks than cores: mpirun --allow-run-as-root --oversubscribe ...)

The digits ship inside scikit-learn (no download). The split is fixed (25% test,
random_state=0), so every run sees the same test set. Prints the total time, graph building
and compilation included. With --distributed each rank takes its share of every global batch
and gf.distributed averages the gradients over the ranks (one bucketed all-reduce per step),
so the ranks stay identical and train like one process with the whole batch.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from common import dump_kernels, make_parser, parse_args, progress
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import graphflow as gf


def load() -> tuple[np.ndarray, ...]:
    """The digits as float32 features in [0, 1] and int64 labels: x_train, x_test, y_train, y_test."""
    digits = load_digits()
    features = (digits.data / 16.0).astype(np.float32)
    return train_test_split(features, digits.target.astype(np.int64), test_size=0.25, random_state=0)


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser(__doc__, epochs=(20, 2))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel over MPI ranks (run under mpirun; --batch is global)")
    args = parse_args(parser, argv)
    epochs = args.epochs
    rank, ranks = 0, 1
    if args.distributed:
        gf.distributed.init()
        rank, ranks = gf.distributed.rank(), gf.distributed.size()
    per_rank = args.batch // ranks
    x_train, x_test, y_train, y_test = load()
    start = time.perf_counter()

    with gf.Graph().as_default():
        x = gf.placeholder(gf.float32, [None, 64], name="x")
        labels = gf.placeholder(gf.int64, [None], name="labels")
        with gf.name_scope("hidden"):
            w1 = gf.Variable(gf.initializers.he_normal(seed=1)((64, 128)), name="w")
            b1 = gf.Variable(gf.zeros([128]), name="b")
            h = gf.nn.relu(x @ w1 + b1)
        with gf.name_scope("out"):
            w2 = gf.Variable(gf.initializers.glorot_uniform(seed=2)((128, 10)), name="w")
            b2 = gf.Variable(gf.zeros([10]), name="b")
            logits = h @ w2 + b2
        loss = gf.reduce_mean(
            gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        optimizer = gf.train.AdamOptimizer(args.lr)
        if args.distributed:
            optimizer = gf.distributed.DistributedOptimizer(optimizer)
        train_op = optimizer.minimize(loss)
        accuracy = gf.reduce_mean(gf.cast(gf.equal(gf.argmax(logits, 1), labels), gf.float32))
        init = gf.global_variables_initializer()
        broadcast = gf.distributed.broadcast_variables(root=0) if args.distributed else None
        gf.get_default_graph().finalize()  # an op built inside the loop is now an error

        rng = np.random.default_rng(0)
        epoch_losses = []
        with gf.Session(device=args.device) as sess:
            if rank == 0:
                print(f"device: {sess.device}" + (f", {ranks} ranks" if args.distributed else ""))
            sess.run(init)
            if broadcast is not None:
                sess.run(broadcast)  # every rank starts from rank 0's values
            step = sess.make_callable([train_op, loss], feed_list=[x, labels])
            for _ in (bar := progress(epochs, disable=rank != 0)):
                order = rng.permutation(len(x_train))  # the same order on every rank
                losses = [step(x_train[idx[rank * per_rank:(rank + 1) * per_rank]],
                               y_train[idx[rank * per_rank:(rank + 1) * per_rank]])[1]
                          for idx in np.array_split(order, len(order) // args.batch)]
                epoch_losses.append(float(np.mean(losses)))
                bar.set_postfix(loss=f"{epoch_losses[-1]:.4f}")
            test_acc = float(sess.run(accuracy, {x: x_test, labels: y_test}))
            dump_kernels(step, args.dump_kernels)

    seconds = time.perf_counter() - start
    if rank == 0:
        print(f"{epochs} epochs in {seconds:.2f} s (graph building and compilation included); "
              f"final train loss {epoch_losses[-1]:.4f}")
        print(f"test accuracy: {100 * test_acc:.1f}%")
    return {"losses": epoch_losses, "accuracy": test_acc, "seconds": seconds}


if __name__ == "__main__":
    main(sys.argv[1:])
