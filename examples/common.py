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


def make_parser(doc: str | None, *, steps: tuple[int, int] | None = None,
                epochs: tuple[int, int] | None = None) -> argparse.ArgumentParser:
    """An argument parser with the shared flags. `steps` or `epochs` is (full run, --fast run):
    the flag's default, without and with --fast; read the result with `parse_args`."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda | cpu | reference (default: best)")
    for flag, lengths in (("steps", steps), ("epochs", epochs)):
        if lengths is not None:
            parser.add_argument(f"--{flag}", type=int, default=None,
                                help=f"training {flag} ({lengths[0]}; {lengths[1]} with --fast)")
            parser.set_defaults(**{f"_{flag}_defaults": lengths})
    parser.add_argument("--fast", action="store_true", help="a short run (what the tests use)")
    parser.add_argument("--dump-kernels", metavar="DIR", default=None,
                        help="write the training step's kernels (.cu) and manifest.json to DIR")
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse argv; an unset --steps/--epochs becomes the full or the --fast default."""
    args = parser.parse_args(argv)
    for flag in ("steps", "epochs"):
        lengths = getattr(args, f"_{flag}_defaults", None)
        if lengths is not None and getattr(args, flag) is None:
            setattr(args, flag, lengths[1] if args.fast else lengths[0])
    return args


def progress(total: int, desc: str = "training", disable: bool = False) -> tqdm:
    """The progress bar every example shows (update it with `bar.set_postfix(loss=...)`)."""
    return tqdm(range(total), desc=desc, file=sys.stderr, dynamic_ncols=True, disable=disable)


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
