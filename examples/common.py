"""What every example shares: its command-line flags, the progress bar and the kernel dump.

Each example is `main(argv) -> dict` so the tests can run its fast mode in-process; run as a
script it parses `sys.argv`. The flags every example takes:

    --device cuda|cpu|reference     default: graphflow's default device
    --steps N  (or --epochs N)      how long to train; the default is the full run
    --fast                          the short run the tests use
    --dump-kernels DIR              write the training step's CUDA C (graph.cu, one .cu per kernel)
"""
from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

import graphflow as gf


def make_parser(doc: str | None, *, steps: int | None = None,
                epochs: int | None = None) -> argparse.ArgumentParser:
    """An argument parser with the shared flags; `steps` or `epochs` sets that flag's default."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda | cpu | reference (default: best)")
    if steps is not None:
        parser.add_argument("--steps", type=int, default=steps, help=f"training steps ({steps})")
    if epochs is not None:
        parser.add_argument("--epochs", type=int, default=epochs, help=f"training epochs ({epochs})")
    parser.add_argument("--fast", action="store_true", help="a short run (what the tests use)")
    parser.add_argument("--dump-kernels", metavar="DIR", default=None,
                        help="write the training step's kernels (.cu) and manifest.json to DIR")
    return parser


def progress(total: int, desc: str = "training") -> tqdm:
    """The progress bar every example shows (update it with `bar.set_postfix(loss=...)`)."""
    return tqdm(range(total), desc=desc, file=sys.stderr, dynamic_ncols=True)


def dump_kernels(step: gf.Compiled, directory: str | None) -> None:
    """Write the compiled training step's kernels to `directory` (no-op when it is None)."""
    if directory is None:
        return
    try:
        path = step.dump(directory)
    except gf.errors.DeviceError as err:
        print(f"--dump-kernels: {err}")
    else:
        print(f"kernels written to {path}")
