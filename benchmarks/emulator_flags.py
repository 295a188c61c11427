"""g++ optimization flags for the `cpu` device: warm step time and compile time, side by side.

    python benchmarks/emulator_flags.py [--workloads W1,W2,W3] [--rounds 9] \
        ["-O3" "-O2 -ftree-vectorize ..." ...]

Each flag set replaces the optimization flags (emulator.OPTIMIZE; the rest of emulator.FLAGS
stays) for one session per workload, all in this process; the steps are then timed in turns
(the median of `--rounds` rounds, one OS thread), so the machine's drift hits every flag set
alike. Also printed: g++'s wall time for the whole step's translation unit with those flags.
Without flag sets it compares the current OPTIMIZE with -O3. Nothing here is asserted by tests.
The runtime library is not rebuilt per flag set (one per process, with the flags in force at
the first launch: the first set's), so the GEMM's register tile and packing, which live there
(cuda_shim.h's gf_gemm_*), run with those flags throughout; the sets differ in the kernels.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ["GRAPHFLOW_EMU_THREADS"] = "1"

import workloads  # noqa: E402
from graphflow.codegen.devices import emulator  # noqa: E402

import graphflow as gf  # noqa: E402


def compile_seconds(source: str, flags: list[str]) -> float:
    """g++'s wall time for one translation unit, as the emulator would compile it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "step.cu"
        path.write_text(source)
        start = time.perf_counter()
        subprocess.run([*emulator.cxx(), *flags, "-include", "cuda_shim.h", "-x", "c++",
                        "-o", str(Path(tmp) / "step.so"), str(path)], check=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="W1,W2,W3")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("flag_sets", nargs="*")
    args = parser.parse_args()
    sets = args.flag_sets or [" ".join(emulator.OPTIMIZE), "-O3"]
    print(f"g++ flag sets on the cpu device, one OS thread; median of {args.rounds} rounds")
    for name in args.workloads.split(","):
        steps = []
        for flags in sets:
            emulator.FLAGS = [*flags.split(), *emulator.COMMON]
            g, x, y, fetches, (xv, yv), init = workloads.build(name)
            sess = gf.Session(graph=g, device="cpu")
            sess.run(init)
            step = sess.make_callable(fetches, feed_list=[x, y])
            step(xv, yv)
            seconds = compile_seconds(step.source, emulator.FLAGS)
            steps.append((flags, step, (xv, yv), seconds, []))
        emulator.FLAGS = [*emulator.OPTIMIZE, *emulator.COMMON]
        calls = 200 if name == "W1" else 30
        for _ in range(args.rounds):
            for _, step, feeds, _, times in steps:
                start = time.perf_counter()
                for _ in range(calls):
                    step(*feeds)
                times.append((time.perf_counter() - start) / calls)
        first = statistics.median(steps[0][4])
        for flags, _, _, seconds, times in steps:
            t = statistics.median(times)
            print(f"  {name} [{flags}]: step {t * 1e3:.3f} ms ({t / first:.2f}x of the first set), "
                  f"translation unit compiled in {seconds:.2f} s")


if __name__ == "__main__":
    main()
