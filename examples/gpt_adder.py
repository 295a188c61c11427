"""minGPT's adder project: gpt-nano learns 2-digit addition: >= 99% of 500 held-out problems.

    python examples/gpt_adder.py [--steps 3000] [--device cpu] [--dump-kernels kernels/]

As minGPT's projects/adder/adder.py: 85 + 50 = 135 is the token sequence 8 5 5 0 5 3 1 (the
digits of the sum reversed, so the model writes it from the ones digit up); the loss counts
only the sum's digits; 500 of the 10,000 problems are held out (a seeded permutation, as
minGPT's torch.randperm(generator=1337) but from numpy). gpt-nano, AdamW lr 5e-4, betas (0.9, 0.95),
weight decay 0.1 on matmul weights, clipping at 1.0, batch 64 drawn with replacement.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from common import dump_kernels, make_parser, parse_args, progress
from gpt import GPT, GPTConfig, TrainConfig, fast_configs

import graphflow as gf

NDIGIT = 2


def encode(problems: np.ndarray) -> np.ndarray:
    """Problem ids a * 100 + b -> rows of digits: a, b, then a + b reversed (7 tokens)."""
    a, b = problems // 10**NDIGIT, problems % 10**NDIGIT
    c = a + b
    cols = [a // 10**i % 10 for i in reversed(range(NDIGIT))]
    cols += [b // 10**i % 10 for i in reversed(range(NDIGIT))]
    cols += [c // 10**i % 10 for i in range(NDIGIT + 1)]  # ones digit first
    return np.stack(cols, axis=1).astype(np.int64)


def examples(problems: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs x and targets y (-1 where only the problem is being read)."""
    digits = encode(problems)
    x, y = digits[:, :-1].copy(), digits[:, 1:].copy()
    y[:, :2 * NDIGIT - 1] = -1
    return x, y


def decode_sum(digits: np.ndarray) -> np.ndarray:
    """The generated sum digits (ones digit first) as integers."""
    return sum(digits[:, i] * 10**i for i in range(NDIGIT + 1))


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser(__doc__, steps=(3000, 100))
    parser.add_argument("--seed", type=int, default=1337)
    args = parse_args(parser, argv)
    steps = args.steps

    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(10 ** (2 * NDIGIT))
    test, train = perm[:500], perm[500:]
    if args.fast:
        test = test[:100]
    start = time.perf_counter()

    config, train_cfg = GPTConfig(vocab_size=10, block_size=3 * NDIGIT), TrainConfig()
    if args.fast:
        config, train_cfg = fast_configs(config)
    with gf.Graph().as_default():
        model = GPT(config, train_cfg, args.device, seed=0)
        print(f"device: {model.sess.device}")
        losses = []
        for _ in (bar := progress(steps)):
            batch = rng.choice(train, size=train_cfg.batch_size)
            losses.append(model.train_step(*examples(batch)))
            bar.set_postfix(loss=f"{losses[-1]:.5f}")
        prompts = encode(test)[:, :2 * NDIGIT]
        predicted = decode_sum(model.generate(prompts, NDIGIT + 1)[:, 2 * NDIGIT:])
        dump_kernels(model.step, args.dump_kernels)
        model.close()

    seconds = time.perf_counter() - start
    a, b = test // 10**NDIGIT, test % 10**NDIGIT
    correct = predicted == a + b
    for i in np.flatnonzero(~correct)[:5]:
        print(f"GPT claims that {a[i]} + {b[i]} = {predicted[i]} but it is {a[i] + b[i]}")
    print(f"{steps} steps in {seconds:.1f} s; held-out: {correct.sum()}/{len(correct)} right "
          "(minGPT: 499/500)")
    print(f"held-out accuracy: {100 * correct.mean():.1f}%")
    return {"losses": losses, "accuracy": float(correct.mean()), "seconds": seconds}


if __name__ == "__main__":
    main(sys.argv[1:])
