"""Your own CUDA kernels as graph ops: the tutorials' kernels with gf.custom_op.

    python examples/custom_op.py [--steps 300] [--device cpu]

Three kernels as the "writing CUDA kernels" tutorials write them: a vector add, a tiled
shared-memory matmul (__syncthreads between the tile loads and the products) whose gradient is
given as graph ops (two more custom matmuls), and a swish activation with a hand-written
backward kernel. Each is checked against numpy, both gradients against float64 central
finite differences, and then a two-layer network built from the custom matmul and swish
learns the 8x8 digits of scikit-learn. The same kernel text runs on `cpu` (the emulator), on
`cuda`, and on `reference` (through the emulator, as no numpy reference= is given here).
"""
from __future__ import annotations

import sys
import time

import numpy as np
from common import dump_kernels, make_parser, parse_args, progress

import graphflow as gf

VECTOR_ADD = """
__global__ void vector_add(const float* a, const float* b, float* c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}
"""

MATMUL = """
#define TILE 16

// C[M, N] = A[M, K] @ B[K, N], one 16x16 tile of C per block, staged through shared memory
template <typename T>
__global__ void matmul_tiled(const T* A, const T* B, T* C, int M, int N, int K) {
    __shared__ T As[TILE][TILE];
    __shared__ T Bs[TILE][TILE];
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * TILE + ty;
    int col = blockIdx.x * TILE + tx;
    T acc = 0;
    for (int t = 0; t < (K + TILE - 1) / TILE; ++t) {
        int ka = t * TILE + tx, kb = t * TILE + ty;
        As[ty][tx] = (row < M && ka < K) ? A[row * K + ka] : T(0);
        Bs[ty][tx] = (kb < K && col < N) ? B[kb * N + col] : T(0);
        __syncthreads();
        for (int k = 0; k < TILE; ++k) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();
    }
    if (row < M && col < N) C[row * N + col] = acc;
}
"""

SWISH = """
// swish(x) = x * sigmoid(x), and its derivative times the incoming gradient
template <typename T>
__global__ void swish_forward(const T* x, T* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        T s = T(1) / (T(1) + exp(-x[i]));
        y[i] = x[i] * s;
    }
}

template <typename T>
__global__ void swish_backward(const T* x, const T* dy, T* dx, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        T s = T(1) / (T(1) + exp(-x[i]));
        dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
    }
}
"""


def blocks(n: int, size: int = 256) -> int:
    return max(1, (n + size - 1) // size)


def numel(spec) -> int:
    return int(np.prod(spec.shape, dtype=np.int64))


vector_add = gf.custom_op(
    VECTOR_ADD, "vector_add",
    output=lambda a, b: (a.shape, a.dtype),
    launch=lambda a, b, c: (blocks(numel(a)), 256),
    args=lambda a, b, c: [numel(a)])


def _matmul_grad(op, dc):
    a, b = op.inputs
    return [matmul(dc, gf.transpose(b)), matmul(gf.transpose(a), dc)]


matmul = gf.custom_op(
    MATMUL, "matmul_tiled",
    output=lambda a, b: ((a.shape[0], b.shape[1]), a.dtype),
    launch=lambda a, b, c: ((blocks(c.shape[1], 16), blocks(c.shape[0], 16)), (16, 16)),
    args=lambda a, b, c: [a.shape[0], b.shape[1], a.shape[1]],
    grad=_matmul_grad,
    flops=lambda a, b, c: 2 * a.shape[0] * a.shape[1] * b.shape[1])

swish_backward = gf.custom_op(
    SWISH, "swish_backward",
    output=lambda x, dy: (x.shape, x.dtype),
    launch=lambda x, dy, dx: (blocks(numel(x)), 256),
    args=lambda x, dy, dx: [numel(x)])

swish = gf.custom_op(
    SWISH, "swish_forward",
    output=lambda x: (x.shape, x.dtype),
    launch=lambda x, y: (blocks(numel(x)), 256),
    args=lambda x, y: [numel(x)],
    grad=swish_backward)  # a custom op as the gradient: dx = swish_backward(x, dy)


def check_forward(device: str) -> float:
    """The three kernels against numpy; the largest relative error."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(1000,)).astype(np.float32), rng.normal(size=(1000,)).astype(np.float32)
    p, q = rng.normal(size=(37, 50)).astype(np.float32), rng.normal(size=(50, 21)).astype(np.float32)
    with gf.Graph().as_default():
        fetches = [vector_add(a, b), matmul(p, q), swish(a)]
        with gf.Session(device=device) as sess:
            got = sess.run(fetches)
    want = [a + b, p @ q, a / (1 + np.exp(-a))]
    return max(float(np.max(np.abs(g - w)) / (1 + np.max(np.abs(w)))) for g, w in zip(got, want))


def check_gradients(device: str, eps: float = 1e-6) -> float:
    """d sum(w * swish(a @ b)) / d(a, b) in float64 against central differences."""
    rng = np.random.default_rng(1)
    values = [rng.normal(size=(5, 7)), rng.normal(size=(7, 3))]
    w = rng.normal(size=(5, 3))
    with gf.Graph().as_default():
        a = gf.placeholder(gf.float64, [5, 7])
        b = gf.placeholder(gf.float64, [7, 3])
        loss = gf.reduce_sum(swish(matmul(a, b)) * w)
        grads = gf.gradients(loss, [a, b])
        with gf.Session(device=device) as sess:
            f = sess.make_callable(loss, [a, b])
            analytic = sess.run(grads, {a: values[0], b: values[1]})
            worst = 0.0
            for k, value in enumerate(values):
                numeric = np.zeros_like(value)
                for i in np.ndindex(value.shape):
                    args = [v.copy() for v in values]
                    args[k][i] += eps
                    up = f(*args)
                    args[k][i] -= 2 * eps
                    numeric[i] = (up - f(*args)) / (2 * eps)
                worst = max(worst, float(np.max(np.abs(analytic[k] - numeric))))
    return worst


def main(argv: list[str] | None = None) -> dict:
    parser = make_parser(__doc__, steps=(300, 60))
    parser.add_argument("--lr", type=float, default=0.01)
    args = parse_args(parser, argv)
    start = time.perf_counter()
    forward_error = check_forward(args.device)
    print(f"kernels vs numpy: largest relative error {forward_error:.2e}")
    gradient_error = check_gradients(args.device)
    print(f"gradients vs finite differences: largest error {gradient_error:.2e}")

    from sklearn.datasets import load_digits
    digits = load_digits()
    xs = (digits.data / 16.0).astype(np.float32)
    ys = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(xs))
    train, test = order[:1500], order[1500:]
    with gf.Graph().as_default():
        x = gf.placeholder(gf.float32, [None, 64], name="x")
        y = gf.placeholder(gf.int64, [None], name="y")
        init = gf.initializers.glorot_uniform(seed=3)
        w1, b1 = gf.Variable(init((64, 64)), name="w1"), gf.Variable(gf.zeros([64]), name="b1")
        w2, b2 = gf.Variable(init((64, 10)), name="w2"), gf.Variable(gf.zeros([10]), name="b2")
        logits = matmul(swish(matmul(x, w1) + b1), w2) + b2
        loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train_op = gf.train.AdamOptimizer(args.lr).minimize(loss)
        predict = gf.argmax(logits, 1)
        losses = []
        rng = np.random.default_rng(1)
        with gf.Session(device=args.device) as sess:
            sess.run(gf.global_variables_initializer())
            step = sess.make_callable([train_op, loss], feed_list=[x, y])
            for _ in (bar := progress(args.steps)):
                batch = rng.choice(train, 64, replace=False)
                losses.append(float(step(xs[batch], ys[batch])[1]))
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            names = [k.name for k in step.kernels if k.name.startswith(("matmul", "swish"))]
            dump_kernels(step, args.dump_kernels)
            accuracy = float(np.mean(sess.run(predict, {x: xs[test]}) == ys[test]))
    seconds = time.perf_counter() - start
    print(f"custom kernels in the training step: {', '.join(names)}")
    print(f"{args.steps} steps in {seconds:.2f} s; loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    print(f"test accuracy: {100 * accuracy:.1f}%")
    return {"forward_error": forward_error, "gradient_error": gradient_error, "losses": losses,
            "accuracy": accuracy, "kernels": names, "seconds": seconds}


if __name__ == "__main__":
    main(sys.argv[1:])
