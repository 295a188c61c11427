"""Train a TF1-style MLP on scikit-learn's 8x8 digits and report test accuracy.

    python examples/mlp.py [--epochs 15] [--device reference]
"""
import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import graphflow as gf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default=None, help="cuda | cpu | reference (default: best)")
    args = parser.parse_args()

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
    loss = gf.reduce_mean(
        gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    train_op = gf.train.AdamOptimizer(0.01).minimize(loss)
    accuracy = gf.reduce_mean(gf.cast(gf.equal(gf.argmax(logits, 1), labels), gf.float32))
    init = gf.global_variables_initializer()
    gf.get_default_graph().finalize()  # any op built inside the loop is now an error

    rng = np.random.default_rng(0)
    with gf.Session(device=args.device) as sess:
        print(f"device: {sess.device}")
        sess.run(init)
        step = sess.make_callable([train_op, loss], feed_list=[x, labels])
        for _ in (bar := tqdm(range(args.epochs), desc="training")):
            order = rng.permutation(len(x_train))
            losses = [step(x_train[idx], y_train[idx])[1]
                      for idx in np.array_split(order, len(order) // args.batch)]
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        test_acc = sess.run(accuracy, {x: x_test, labels: y_test})
        print(f"final train loss {np.mean(losses):.4f}, test accuracy {test_acc:.3f}")


if __name__ == "__main__":
    main()
