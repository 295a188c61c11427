"""Emulator costs: fiber switch, launch overhead, compile time, warm-cache load.

    PYTHONPATH=. python benchmarks/emulator_switch.py

Prints measured numbers (one run on this machine); nothing here is asserted by tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SOURCE = r"""
__global__ void barriers(float* out, int rounds) {
  float v = threadIdx.x;
  for (int r = 0; r < rounds; r++) { v = v * 0.5f + 1.0f; __syncthreads(); }
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}
__global__ void plain(float* out, int rounds) {
  float v = threadIdx.x;
  for (int r = 0; r < rounds; r++) v = v * 0.5f + 1.0f;
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}
__global__ void empty(float* out, int n) {}
"""

LOAD = """
import sys, time
t = time.perf_counter()
from graphflow.codegen.devices import get_driver, cache
drv = get_driver("cpu")
t0 = time.perf_counter()
drv.SourceModule(sys.stdin.read())
print(f"{(time.perf_counter() - t0) * 1e3:.1f} {cache.stats['compiles']}")
"""


def best(f, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    os.environ["GRAPHFLOW_CACHE_DIR"] = tempfile.mkdtemp(prefix="gf-bench-")
    os.environ["GRAPHFLOW_EMU_THREADS"] = "1"
    from graphflow.codegen.devices import get_driver

    drv = get_driver("cpu")
    t = time.perf_counter()
    drv.SourceModule("__global__ void warmup(float* x) {}")  # builds the runtime library too
    print(f"first compile (runtime library + tiny module): {time.perf_counter() - t:.3f} s")
    t = time.perf_counter()
    mod = drv.SourceModule(SOURCE)
    print(f"compile of a 3-kernel module (g++ -O2): {time.perf_counter() - t:.3f} s")

    threads, rounds = 256, 2000
    out = drv.mem_alloc(4 * threads)
    fib = best(
        lambda: mod.get_function("barriers")(out, np.int32(rounds), block=(threads, 1, 1), grid=(1, 1))
    )
    loop = best(lambda: mod.get_function("plain")(out, np.int32(rounds), block=(threads, 1, 1), grid=(1, 1)))
    switches = 2 * threads * rounds  # into each fiber and back, per barrier
    print(
        f"fiber context switch: {(fib - loop) / switches * 1e9:.1f} ns "
        f"({threads} threads x {rounds} barriers: {fib * 1e3:.1f} ms vs {loop * 1e3:.1f} ms without barriers)"
    )
    empty = mod.get_function("empty")
    n = 200
    t = time.perf_counter()
    for _ in range(n):
        empty(out, np.int32(0), block=(1, 1, 1), grid=(1, 1))
    print(f"launch overhead (1 thread, from Python): {(time.perf_counter() - t) / n * 1e6:.1f} us")
    os.environ.pop("GRAPHFLOW_EMU_THREADS")
    t = time.perf_counter()
    for _ in range(n):
        empty(out, np.int32(0), block=(1, 1, 1), grid=(64, 1))
    per_launch = (time.perf_counter() - t) / n * 1e6
    print(f"launch overhead (64 blocks, {os.cpu_count()} OS threads): {per_launch:.1f} us")

    env = dict(os.environ, PYTHONPATH=os.getcwd())
    for _ in range(2):
        r = subprocess.run(
            [sys.executable, "-c", LOAD], input=SOURCE, env=env, capture_output=True, text=True, check=True
        )
    ms, compiles = r.stdout.split()
    print(f"warm-cache SourceModule in a fresh process: {ms} ms ({compiles} compiles)")


if __name__ == "__main__":
    main()
