"""minGPT's sorting demo: gpt-nano learns to sort 6 digits from {0, 1, 2}: >= 99% held out.

    python examples/gpt_sort.py [--steps 2000] [--device cpu] [--dump-kernels kernels/]

As minGPT's demo.ipynb: the input 0 0 2 1 0 1 and its sorted copy 0 0 0 1 1 2 are fed as one
sequence (the last token dropped), the loss counts only the sorted half, and half of the
sampled inputs are redrawn until they hold at most 3 distinct digits. gpt-nano (3 layers,
3 heads, 48-dim), AdamW lr 5e-4, betas (0.9, 0.95), weight decay 0.1 on matmul weights,
clipping at 1.0, batch 64, 2000 steps. minGPT hashes each sequence to pick its split; here a
seeded permutation of all 3^6 sequences holds out a quarter of them, and every held-out
sequence is sorted by greedy generation.
"""
from __future__ import annotations

import itertools
import sys
import time

import numpy as np
from common import dump_kernels, make_parser, parse_args, progress
from gpt import GPT, GPTConfig, TrainConfig, fast_configs

import graphflow as gf

LENGTH, DIGITS = 6, 3
MINGPT_SECONDS = 363  # minGPT with torch, 2000 steps, on this machine's CPU


def split_sequences(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All 3^6 digit sequences, a quarter held out: (train, test)."""
    every = np.array(list(itertools.product(range(DIGITS), repeat=LENGTH)), np.int64)
    order = np.random.default_rng(seed).permutation(len(every))
    cut = len(every) // 4
    return every[order[cut:]], every[order[:cut]]


def sample_batch(rng: np.random.Generator, train: set, size: int) -> tuple[np.ndarray, np.ndarray]:
    """minGPT's SortDataset.__getitem__, `size` times: inputs x and targets y (-1 = ignored)."""
    rows = []
    while len(rows) < size:
        inp = rng.integers(DIGITS, size=LENGTH)
        if rng.random() < 0.5 and len(np.unique(inp)) > LENGTH // 2:
            continue  # boost inputs with many repeats
        if tuple(inp) in train:
            rows.append(np.concatenate([inp, np.sort(inp)]))
    cat = np.array(rows, np.int64)
    x, y = cat[:, :-1].copy(), cat[:, 1:].copy()
    y[:, :LENGTH - 1] = -1
    return x, y


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser(__doc__, steps=(2000, 40))
    parser.add_argument("--seed", type=int, default=0)
    args = parse_args(parser, argv)
    steps = args.steps
    train_seqs, test_seqs = split_sequences(args.seed)
    if args.fast:
        test_seqs = test_seqs[:50]
    train_set = {tuple(s) for s in train_seqs}
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()

    config, train = GPTConfig(vocab_size=DIGITS, block_size=2 * LENGTH - 1), TrainConfig()
    if args.fast:
        config, train = fast_configs(config)
    with gf.Graph().as_default():
        model = GPT(config, train, args.device, seed=args.seed)
        print(f"device: {model.sess.device}")
        losses = []
        for _ in (bar := progress(steps)):
            losses.append(model.train_step(*sample_batch(rng, train_set, train.batch_size)))
            bar.set_postfix(loss=f"{losses[-1]:.5f}")
        predicted = model.generate(test_seqs, LENGTH)[:, LENGTH:]
        dump_kernels(model.step, args.dump_kernels)
        model.close()

    seconds = time.perf_counter() - start
    correct = (predicted == np.sort(test_seqs, axis=1)).all(axis=1)
    for seq, guess in list(zip(test_seqs[~correct], predicted[~correct]))[:3]:
        print(f"GPT claims that {seq.tolist()} sorted is {guess.tolist()}")
    print(f"{steps} steps in {seconds:.1f} s (minGPT with torch: 2000 steps in {MINGPT_SECONDS} s)")
    print(f"held-out: {correct.sum()}/{len(correct)} sorted exactly")
    print(f"held-out accuracy: {100 * correct.mean():.1f}%")
    return {"losses": losses, "accuracy": float(correct.mean()), "seconds": seconds}


if __name__ == "__main__":
    main(sys.argv[1:])
