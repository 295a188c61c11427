"""Data-parallel training of the 64-128-10 digits MLP over MPI: each rank trains on its shard.

    mpirun -np 2 python examples/train_digits_distributed.py [--epochs 20] [--device cpu]
    (as root, or with more ranks than cores: mpirun --allow-run-as-root --oversubscribe ...)

Every step, each rank takes its share of one global batch of 64; gf.distributed averages the
gradients over the ranks (one bucketed all-reduce per step), so the ranks stay identical and
train like one process with the whole batch. Run without mpirun, it is one rank.
"""
from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import graphflow as gf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64, help="global batch (split over the ranks)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--device", default=None, help="cuda | cpu | reference (default: best)")
    args = parser.parse_args()
    gf.distributed.init()
    rank, ranks = gf.distributed.rank(), gf.distributed.size()

    digits = load_digits()
    features = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        features, digits.target.astype(np.int64), test_size=0.25, random_state=0)

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
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    train_op = gf.distributed.DistributedOptimizer(gf.train.AdamOptimizer(args.lr)).minimize(loss)
    accuracy = gf.reduce_mean(gf.cast(gf.equal(gf.argmax(logits, 1), labels), gf.float32))
    init = gf.global_variables_initializer()
    broadcast = gf.distributed.broadcast_variables(root=0)
    gf.get_default_graph().finalize()

    per_rank = args.batch // ranks
    rng = np.random.default_rng(0)  # the same order on every rank: each takes its part of a batch
    with gf.Session(device=args.device) as sess:
        if rank == 0:
            print(f"device: {sess.device}, {ranks} rank(s), {per_rank} examples per rank and step")
        sess.run(init)
        sess.run(broadcast)
        step = sess.make_callable([train_op, loss], feed_list=[x, labels])
        for epoch in range(args.epochs):
            order = rng.permutation(len(x_train))
            losses = []
            for start in range(0, len(order) - args.batch + 1, args.batch):
                mine = order[start:start + args.batch][rank * per_rank:(rank + 1) * per_rank]
                losses.append(step(x_train[mine], y_train[mine])[1])
            if rank == 0 and (epoch + 1) % 5 == 0:
                print(f"epoch {epoch + 1}: rank 0 shard loss {np.mean(losses):.4f}")
        test_acc = sess.run(accuracy, {x: x_test, labels: y_test})
    if rank == 0:
        print(f"digits test accuracy: {100 * test_acc:.2f}%")


if __name__ == "__main__":
    main()
