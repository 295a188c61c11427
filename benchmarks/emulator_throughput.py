"""What the CPU path costs: the emulator's GEMM GFLOP/s and elementwise GB/s next to numpy's.

    python benchmarks/emulator_throughput.py [--size 512] [--elements 4000000]

Both columns are measured in this one run on this machine; the ratio is what matters.
"""
import argparse
import time

import numpy as np

import graphflow as gf


def best_of(fn, repeats: int = 5) -> float:
    fn()  # warm up (and compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512, help="M = N = K of the GEMM")
    parser.add_argument("--elements", type=int, default=4_000_000, help="elementwise length")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, m = args.size, args.elements

    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    x = rng.standard_normal(m).astype(np.float32)
    y = rng.standard_normal(m).astype(np.float32)

    pa, pb = gf.placeholder(gf.float32, [n, n]), gf.placeholder(gf.float32, [n, n])
    px, py = gf.placeholder(gf.float32, [m]), gf.placeholder(gf.float32, [m])
    with gf.Session(device="cpu") as sess:
        gemm = sess.make_callable(pa @ pb, [pa, pb])
        axpy = sess.make_callable(px * 2.0 + py, [px, py])
        # the session copies feeds in and results out: time that separately
        copy = sess.make_callable(px, [px])
        t_gemm = best_of(lambda: gemm(a, b))
        t_axpy = best_of(lambda: axpy(x, y))
        t_copy = best_of(lambda: copy(x))
        kernels, moved = axpy.stats["kernels"], axpy.stats["bytes_moved"]
    t_np_gemm = best_of(lambda: a @ b)
    t_np_axpy = best_of(lambda: x * np.float32(2.0) + y)

    flops = 2.0 * n ** 3
    np_moved = 3 * m * 4  # numpy's two passes fuse nothing either, but count the minimum
    print(f"GEMM {n}x{n}x{n} float32")
    print(f"  emulator (via Session, incl. copies) {flops / t_gemm / 1e9:8.2f} GFLOP/s")
    print(f"  numpy (BLAS)                         {flops / t_np_gemm / 1e9:8.2f} GFLOP/s")
    print(f"  ratio numpy/emulator                 {t_gemm / t_np_gemm:8.1f}x")
    print(f"elementwise y = 2x + y, {m} float32 ({kernels} kernels, {moved / 1e6:.0f} MB moved)")
    print(f"  emulator kernels (less feed/fetch)   {moved / max(t_axpy - t_copy, 1e-9) / 1e9:8.2f} GB/s")
    print(f"  emulator via Session, incl. copies   {t_axpy * 1e3:8.2f} ms")
    print(f"  numpy                                {t_np_axpy * 1e3:8.2f} ms"
          f" ({np_moved / t_np_axpy / 1e9:.2f} GB/s for its minimum traffic)")


if __name__ == "__main__":
    main()
