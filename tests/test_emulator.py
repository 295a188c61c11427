"""The CPU emulator runs real CUDA C: every result is checked against numpy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from graphflow.codegen.devices import CompileFailed, DeviceUnavailable, LaunchFailed, get_driver, prelude
from graphflow.codegen.devices.emulator import SHIM, kernels_needing_fibers

REPO = Path(__file__).resolve().parents[1]

KERNELS = r"""
__global__ void scale_tanh(const float* __restrict__ x, const float* __restrict__ y, float* out, float a,
                           int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a * x[i] + tanhf(y[i]);
}

__global__ void axpy_f64(double a, const double* x, double* y, long long n) {
  long long stride = (long long)blockDim.x * gridDim.x;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = fma(a, x[i], y[i]);
}

// One partial sum per block: warp shuffles, then __shared__ + __syncthreads across warps.
__global__ void block_sum(const float* x, float* partial, int n) {
  __shared__ float warp_sums[32];
  float v = 0.0f;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) v += x[i];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (int)(blockDim.x >> 5) ? warp_sums[lane] : 0.0f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) partial[blockIdx.x] = v;
  }
}

#define TILE 16
__global__ void gemm_tiled(const float* A, const float* B, float* C, int M, int N, int K) {
  __shared__ float As[TILE][TILE];
  __shared__ float Bs[TILE][TILE];
  int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
  float acc = 0.0f;
  for (int t = 0; t < K; t += TILE) {
    As[threadIdx.y][threadIdx.x] = (row < M && t + threadIdx.x < K) ? A[row * K + t + threadIdx.x] : 0.0f;
    Bs[threadIdx.y][threadIdx.x] = (col < N && t + threadIdx.y < K) ? B[(t + threadIdx.y) * N + col] : 0.0f;
    __syncthreads();
    for (int k = 0; k < TILE; k++) acc += As[threadIdx.y][k] * Bs[k][threadIdx.x];
    __syncthreads();
  }
  if (row < M && col < N) C[row * N + col] = acc;
}

__global__ void atomics(const int* x, int n, unsigned* hist, int nbins, float* fsum, double* dsum,
                        int* imax, int* imin, int* ticket, int* order) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  atomicAdd(&hist[(unsigned)x[i] % nbins], 1u);
  atomicAdd(fsum, (float)x[i]);
  atomicAdd(dsum, 0.5 * x[i]);
  atomicMax(imax, x[i]);
  atomicMin(imin, x[i]);
  int t = atomicAdd(ticket, 1);
  int prev = atomicExch(&order[t], i);
  if (prev != -1) atomicCAS(&order[t], i, -2);  // a slot handed out twice would show up as -2
}

// Reverses each block's slice through dynamic shared memory.
__global__ void reverse_blocks(const float* x, float* y, int n) {
  GF_DYNAMIC_SHARED(float, buf);
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  buf[threadIdx.x] = i < n ? x[i] : 0.0f;
  __syncthreads();
  int j = blockIdx.x * blockDim.x + (blockDim.x - 1 - threadIdx.x);
  if (j < n) y[j] = buf[threadIdx.x];
}

__global__ void dyn_shared_f64(const double* x, double* y, int n) {
  GF_DYNAMIC_SHARED(double, s);  // a second element type for the same macro in one unit
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  s[threadIdx.x] = i < n ? 2.0 * x[i] : 0.0;
  __syncthreads();
  if (i < n) y[i] = s[threadIdx.x];
}

__global__ void indices(int* out) {
  int bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  int tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  int code = blockIdx.x + 10 * blockIdx.y + 100 * blockIdx.z
           + 1000 * threadIdx.x + 10000 * threadIdx.y + 100000 * threadIdx.z;
  out[bx * (blockDim.x * blockDim.y * blockDim.z) + tx] = code;
}

__global__ void warp_ops(const int* x, int* up, int* down, int* xr, int* idx, unsigned* ballot, double* dx,
                         int* count, int width) {
  int t = threadIdx.x, lane = t & 31, v = x[t];
  up[t] = __shfl_up_sync(0xffffffffu, v, 1, width);
  down[t] = __shfl_down_sync(0xffffffffu, v, 3, width);
  xr[t] = __shfl_xor_sync(0xffffffffu, v, 5, width);
  idx[t] = __shfl_sync(0xffffffffu, v, (lane * 7) % 32, width);
  ballot[t] = __ballot_sync(0xffffffffu, v % 3 == 0);
  dx[t] = __shfl_xor_sync(0xffffffffu, 0.25 * v, 1);
  count[t] = __syncthreads_count(v % 2 == 0);
}

// Planted bug: no barrier between the write of s and the neighbour's read. Threads running
// in index order hide it; GRAPHFLOW_EMU_SHUFFLE exposes it.
__global__ void neighbour_nobarrier(const float* x, float* y) {
  __shared__ float s[256];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  s[threadIdx.x] = x[i];
  y[i] = threadIdx.x > 0 ? s[threadIdx.x - 1] : 0.0f;
}
__global__ void neighbour_nobarrier_fibers(const float* x, float* y) {
  __shared__ float s[256];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  __syncthreads();  // fiber mode, but the barrier that matters is missing
  s[threadIdx.x] = x[i];
  y[i] = threadIdx.x > 0 ? s[threadIdx.x - 1] : 0.0f;
}
__global__ void neighbour_barrier(const float* x, float* y) {
  __shared__ float s[256];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  s[threadIdx.x] = x[i];
  __syncthreads();
  y[i] = threadIdx.x > 0 ? s[threadIdx.x - 1] : 0.0f;
}

// The barrier hides behind a macro and a __device__ function: it must still run as fibers.
__device__ __forceinline__ void block_barrier() { __syncthreads(); }
#define BARRIER() block_barrier()
__global__ void next_via_helper(const float* x, float* y, int n) {
  __shared__ float s[128];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  s[threadIdx.x] = i < n ? x[i] : 0.0f;
  BARRIER();
  if (i < n) y[i] = threadIdx.x + 1 < blockDim.x ? s[threadIdx.x + 1] : -1.0f;
}

__global__ void mismatched_barriers(int* out) {
  if (threadIdx.x % 2) __syncthreads();
  else out[threadIdx.x] = __shfl_sync(0xffffffffu, (int)threadIdx.x, 0);
}
"""


@pytest.fixture(scope="module")
def drv(tmp_path_factory: pytest.TempPathFactory):
    old = os.environ.get("GRAPHFLOW_CACHE_DIR")
    os.environ["GRAPHFLOW_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield get_driver("cpu")
    if old is None:
        del os.environ["GRAPHFLOW_CACHE_DIR"]
    else:
        os.environ["GRAPHFLOW_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def mod(drv):
    return drv.SourceModule(KERNELS)


def to_dev(drv, a: np.ndarray):
    buf = drv.mem_alloc(a.nbytes)
    drv.memcpy_htod(buf, a)
    return buf


def from_dev(drv, buf, like: np.ndarray) -> np.ndarray:
    out = np.empty_like(like)
    drv.memcpy_dtoh(out, buf)
    return out


@pytest.mark.parametrize("n", [1, 7, 1000, 4099])
def test_elementwise_odd_sizes(drv, mod, n):
    rng = np.random.default_rng(n)
    x, y = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    dx, dy, dout = to_dev(drv, x), to_dev(drv, y), drv.mem_alloc(4 * n)
    mod.get_function("scale_tanh")(
        dx, dy, dout, np.float32(1.5), np.int32(n), block=(128, 1, 1), grid=((n + 127) // 128, 1)
    )
    np.testing.assert_allclose(from_dev(drv, dout, x), np.float32(1.5) * x + np.tanh(y), rtol=1e-6, atol=1e-6)


def test_double_and_int64_arguments(drv, mod):
    n = 3001
    x, y = np.linspace(-1, 1, n), np.cos(np.arange(n, dtype=np.float64))
    dx, dy = to_dev(drv, x), to_dev(drv, y)
    mod.get_function("axpy_f64")(np.float64(-0.75), dx, dy, np.int64(n), block=(64, 1, 1), grid=(5, 1))
    np.testing.assert_allclose(from_dev(drv, dy, y), -0.75 * x + y, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("threads,blocks,n", [(256, 8, 100_003), (1024, 3, 5000), (64, 1, 31)])
def test_block_reduction(drv, mod, threads, blocks, n):
    x = np.random.default_rng(0).random(n, dtype=np.float32)
    dx, dpart = to_dev(drv, x), drv.mem_alloc(4 * blocks)
    mod.get_function("block_sum")(dx, dpart, np.int32(n), block=(threads, 1, 1), grid=(blocks, 1))
    partial = from_dev(drv, dpart, np.zeros(blocks, np.float32))
    assert partial.sum(dtype=np.float64) == pytest.approx(x.sum(dtype=np.float64), rel=1e-5)


@pytest.mark.parametrize("m,n,k", [(37, 45, 29), (16, 16, 16), (1, 33, 70)])
def test_tiled_gemm(drv, mod, m, n, k):
    rng = np.random.default_rng(m * n * k)
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    da, db, dc = to_dev(drv, a), to_dev(drv, b), drv.mem_alloc(4 * m * n)
    mod.get_function("gemm_tiled")(
        da,
        db,
        dc,
        np.int32(m),
        np.int32(n),
        np.int32(k),
        block=(16, 16, 1),
        grid=((n + 15) // 16, (m + 15) // 16),
    )
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(
        from_dev(drv, dc, np.zeros((m, n), np.float32)), expected, rtol=1e-4, atol=1e-4
    )


def test_atomics_from_many_blocks(drv, mod, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_EMU_THREADS", "4")  # more OS threads than cores: real contention
    n, nbins = 50_000, 13
    x = np.random.default_rng(1).integers(-1000, 1000, n).astype(np.int32)
    hist, fsum, dsum = drv.mem_alloc(4 * nbins), drv.mem_alloc(4), drv.mem_alloc(8)
    imax, imin, ticket, order = (
        to_dev(drv, np.array([-(2**31)], np.int32)),
        to_dev(drv, np.array([2**31 - 1], np.int32)),
        drv.mem_alloc(4),
        drv.mem_alloc(4 * n),
    )
    for buf, size in ((hist, 4 * nbins), (fsum, 4), (dsum, 8), (ticket, 4)):
        drv.memset_d8(buf, 0, size)
    drv.memset_d32(order, 0xFFFFFFFF, n)
    mod.get_function("atomics")(
        to_dev(drv, x),
        np.int32(n),
        hist,
        np.int32(nbins),
        fsum,
        dsum,
        imax,
        imin,
        ticket,
        order,
        block=(128, 1, 1),
        grid=((n + 127) // 128, 1),
    )
    get = lambda buf, dtype, count=1: from_dev(drv, buf, np.zeros(count, dtype))  # noqa: E731
    np.testing.assert_array_equal(
        get(hist, np.uint32, nbins), np.bincount(x.astype(np.uint32) % nbins, minlength=nbins)
    )
    assert get(fsum, np.float32)[0] == pytest.approx(x.sum(), abs=64)  # float adds in any order
    assert get(dsum, np.float64)[0] == 0.5 * x.sum()  # exact: halves of small ints
    assert get(imax, np.int32)[0] == x.max() and get(imin, np.int32)[0] == x.min()
    assert get(ticket, np.int32)[0] == n
    np.testing.assert_array_equal(np.sort(get(order, np.int32, n)), np.arange(n))


def test_dynamic_shared_memory(drv, mod):
    n, threads = 1000, 64
    x = np.arange(n, dtype=np.float32)
    dy = drv.mem_alloc(4 * n)
    drv.memset_d8(dy, 0, 4 * n)
    blocks = (n + threads - 1) // threads
    mod.get_function("reverse_blocks")(
        to_dev(drv, x), dy, np.int32(n), block=(threads, 1, 1), grid=(blocks, 1), shared=4 * threads
    )
    padded = np.zeros(blocks * threads, np.float32)
    padded[:n] = x
    np.testing.assert_array_equal(
        from_dev(drv, dy, x), padded.reshape(blocks, threads)[:, ::-1].reshape(-1)[:n]
    )
    xd = np.linspace(0, 1, n)
    dyd = drv.mem_alloc(8 * n)
    mod.get_function("dyn_shared_f64")(
        to_dev(drv, xd), dyd, np.int32(n), block=(threads, 1, 1), grid=(blocks, 1), shared=8 * threads
    )
    np.testing.assert_array_equal(from_dev(drv, dyd, xd), 2 * xd)


def test_multidimensional_grid_and_block(drv, mod):
    grid, block = (3, 2, 2), (4, 3, 2)
    total = np.prod(grid) * np.prod(block)
    dout = drv.mem_alloc(4 * total)
    mod.get_function("indices")(dout, block=block, grid=grid)
    bz, by, bx, tz, ty, tx = np.meshgrid(*(np.arange(d) for d in (*grid[::-1], *block[::-1])), indexing="ij")
    expected = bx + 10 * by + 100 * bz + 1000 * tx + 10000 * ty + 100000 * tz
    np.testing.assert_array_equal(from_dev(drv, dout, np.zeros(total, np.int32)), expected.reshape(-1))


@pytest.mark.parametrize("width", [32, 8])
def test_warp_shuffles_votes_and_barrier_count(drv, mod, width):
    t = 64
    x = np.random.default_rng(width).integers(0, 100, t).astype(np.int32)
    bufs = [drv.mem_alloc(4 * t) for _ in range(6)] + [drv.mem_alloc(8 * t), drv.mem_alloc(4 * t)]
    up, down, xr, idx, ballot, _, dx, count = bufs
    mod.get_function("warp_ops")(
        to_dev(drv, x), up, down, xr, idx, ballot, dx, count, np.int32(width), block=(t, 1, 1), grid=(1, 1)
    )
    lane = np.arange(t) % 32
    warp0, seg = np.arange(t) - lane, (lane // width) * width  # first thread of the warp / lane segment
    within = lane % width
    i_up = np.where(within >= 1, np.arange(t) - 1, np.arange(t))
    i_down = np.where(within + 3 < width, np.arange(t) + 3, np.arange(t))
    src_x = lane ^ 5
    i_xor = np.where(src_x < seg + width, warp0 + src_x, np.arange(t))
    i_idx = warp0 + seg + ((lane * 7) % 32) % width
    get = lambda b: from_dev(drv, b, np.zeros(t, np.int32))  # noqa: E731
    np.testing.assert_array_equal(get(up), x[i_up])
    np.testing.assert_array_equal(get(down), x[i_down])
    np.testing.assert_array_equal(get(xr), x[i_xor])
    np.testing.assert_array_equal(get(idx), x[i_idx])
    bits = (x % 3 == 0).reshape(2, 32) @ (1 << np.arange(32, dtype=np.uint64))
    np.testing.assert_array_equal(from_dev(drv, ballot, np.zeros(t, np.uint32)), np.repeat(bits, 32))
    np.testing.assert_array_equal(from_dev(drv, dx, np.zeros(t)), 0.25 * x[warp0 + (lane ^ 1)])
    np.testing.assert_array_equal(get(count), np.full(t, np.sum(x % 2 == 0)))


@pytest.mark.parametrize("kernel", ["neighbour_nobarrier", "neighbour_nobarrier_fibers"])
def test_shuffle_mode_exposes_missing_barrier(drv, mod, monkeypatch, kernel):
    threads, blocks = 256, 4
    x = np.random.default_rng(2).random(threads * blocks, dtype=np.float32)
    expected = np.concatenate([[0.0], x[:-1]]).reshape(blocks, threads)
    expected[:, 0] = 0.0

    def run(name: str) -> np.ndarray:
        dy = drv.mem_alloc(x.nbytes)
        mod.get_function(name)(to_dev(drv, x), dy, block=(threads, 1, 1), grid=(blocks, 1))
        return from_dev(drv, dy, x).reshape(blocks, threads)

    np.testing.assert_array_equal(run(kernel), expected)  # in index order the bug is hidden
    monkeypatch.setenv("GRAPHFLOW_EMU_SHUFFLE", "1234")
    assert not np.array_equal(run(kernel), expected)
    np.testing.assert_array_equal(run("neighbour_barrier"), expected)


def test_barrier_behind_helper_runs_as_fibers(drv, mod):
    assert kernels_needing_fibers(KERNELS) >= {"next_via_helper", "block_sum", "gemm_tiled", "warp_ops"}
    assert "scale_tanh" not in kernels_needing_fibers(KERNELS)
    n, threads = 300, 128
    x = np.random.default_rng(3).random(n, dtype=np.float32)
    dy = drv.mem_alloc(4 * n)
    mod.get_function("next_via_helper")(to_dev(drv, x), dy, np.int32(n), block=(threads, 1, 1), grid=(3, 1))
    padded = np.concatenate([x, np.zeros(3 * threads - n, np.float32)]).reshape(3, threads)
    expected = np.concatenate([padded[:, 1:], -np.ones((3, 1), np.float32)], axis=1).reshape(-1)[:n]
    np.testing.assert_array_equal(from_dev(drv, dy, x), expected)


def test_launch_errors(drv, mod):
    out = drv.mem_alloc(4 * 64)
    with pytest.raises(LaunchFailed, match="mismatched_barriers.*different barriers"):
        mod.get_function("mismatched_barriers")(out, block=(64, 1, 1), grid=(1, 1))
    f = mod.get_function("indices")
    with pytest.raises(LaunchFailed, match="block"):
        f(out, block=(1025, 1, 1), grid=(1, 1))
    with pytest.raises(LaunchFailed, match="shared"):
        f(out, block=(1, 1, 1), grid=(1, 1), shared=1 << 20)
    g = mod.get_function("scale_tanh")
    with pytest.raises(TypeError, match="numpy scalar"):
        g(out, out, out, 1.5, np.int32(1), block=(1, 1, 1), grid=(1, 1))
    with pytest.raises(TypeError, match="8 bytes given"):
        g(out, out, out, np.float32(1.5), np.int64(1), block=(1, 1, 1), grid=(1, 1))
    with pytest.raises(TypeError, match="takes 5 arguments"):
        g(out, block=(1, 1, 1), grid=(1, 1))
    with pytest.raises(ValueError, match="overruns"):
        drv.memcpy_htod(out, np.zeros(65, np.float32))


def test_compile_error_quotes_source(drv):
    source = (
        "__global__ void broken(float* x) {\n  int i = threadIdx.x;\n  x[i] = undefined_thing * 2.0f;\n}\n"
    )
    with pytest.raises(CompileFailed) as info:
        drv.SourceModule(source)
    err = info.value
    assert "undefined_thing" in err.compiler_output
    assert err.source_path.exists() and source in err.source_path.read_text()
    assert "x[i] = undefined_thing * 2.0f;" in str(err)  # the offending line is quoted
    assert str(err.source_path) in str(err)


def test_sanitize_needs_preloaded_asan(drv, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_EMU_SANITIZE", "1")
    with pytest.raises(DeviceUnavailable, match="LD_PRELOAD"):
        drv.SourceModule("__global__ void k(float* x) {}")


OOB_SCRIPT = """
import numpy as np
from graphflow.codegen.devices import get_driver
drv = get_driver("cpu")
mod = drv.SourceModule('''
__global__ void planted_oob(float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) y[i] = 1.0f;  // writes one element past the end
}''')
y = drv.mem_alloc(4 * 100)
mod.get_function("planted_oob")(y, np.int32(100), block=(64, 1, 1), grid=(2, 1))
print("NOT DETECTED")
"""


def test_sanitizer_reports_kernel_name(tmp_path):
    libasan = subprocess.run(
        ["g++", "-print-file-name=libasan.so"], capture_output=True, text=True
    ).stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        pytest.skip("libasan is not installed")
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        GRAPHFLOW_CACHE_DIR=str(tmp_path),
        GRAPHFLOW_EMU_SANITIZE="1",
        LD_PRELOAD=libasan,
        ASAN_OPTIONS="detect_leaks=0",
    )
    r = subprocess.run(
        [sys.executable, "-c", OOB_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode != 0 and "NOT DETECTED" not in r.stdout
    assert "heap-buffer-overflow" in r.stderr
    assert "in kernel 'planted_oob'" in r.stderr


def test_cuda_driver_unavailable_says_how_to_install():
    try:
        import pycuda.driver  # noqa: F401
    except ImportError:
        with pytest.raises(DeviceUnavailable, match=r"pip install 'graphflow\[cuda\]'"):
            get_driver("cuda")
    else:
        pytest.skip("PyCUDA is installed")


def test_kernels_are_valid_cuda(tmp_path):
    """All kernels of this file, with the CUDA prelude and the shim header, in one nvcc call."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    oob = OOB_SCRIPT.split("'''")[1]
    unit = f'#include "{SHIM.name}"\n{prelude("cuda")}\nextern "C" {{\n{KERNELS}\n{oob}\n}}\n'
    (tmp_path / "all.cu").write_text(unit)
    r = subprocess.run(
        [nvcc, "-arch=sm_80", "-c", "-I", str(SHIM.parent), "all.cu", "-o", "all.o"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, textwrap.indent(r.stdout + r.stderr, "  ")


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of the float32 spacing at want (subnormal spacing below)."""
    w = np.abs(want.astype(np.float32))
    spacing = np.maximum(np.spacing(w).astype(np.float64), 2.0**-149)
    return np.abs(got.astype(np.float64) - want) / spacing


def test_expf_and_tanhf_stay_within_cudas_two_ulp(drv):
    """The shim's vectorizable expf and tanhf, against float64 numpy over a million random bit
    patterns (every exponent) and the edges: NaN, infinities, overflow, subnormal results."""
    mod = drv.SourceModule(r"""
    __global__ void exp_tanh(const float* x, float* e, float* t, int n) {
      int i = blockIdx.x * blockDim.x + threadIdx.x;
      if (i < n) { e[i] = expf(x[i]); t[i] = tanhf(x[i]); }
    }""")
    rng = np.random.default_rng(7)
    x = rng.integers(0, 2**32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edges = np.array([0.0, -0.0, 1e-30, -1e-30, 0.625, -0.625, 0.6249999, 9.1, -9.1, 88.72, 88.73,
                      89.5, -87.3, -100.0, -103.9, -104.5, -200.0, np.inf, -np.inf, np.nan],
                     dtype=np.float32)
    x = np.concatenate([x[~np.isnan(x)], edges])
    n = x.size
    dx, de, dt = to_dev(drv, x), drv.mem_alloc(4 * n), drv.mem_alloc(4 * n)
    mod.get_function("exp_tanh")(dx, de, dt, np.int32(n), block=(256, 1, 1), grid=((n + 255) // 256, 1))
    e, t = from_dev(drv, de, x), from_dev(drv, dt, x)
    with np.errstate(over="ignore", under="ignore"):
        want_e, want_t = np.exp(x.astype(np.float64)), np.tanh(x.astype(np.float64))
    for got, want in ((e, want_e), (t, want_t)):
        with np.errstate(over="ignore"):
            rounded = want.astype(np.float32)  # inf beyond float's range
        special = ~np.isfinite(rounded)
        np.testing.assert_array_equal(got[special], rounded[special])
        assert _ulps(got[~special], want[~special]).max() <= 2.0
    assert np.signbit(t[x == 0]).tolist() == np.signbit(x[x == 0]).tolist()  # tanh(-0) is -0
