"""gf.custom_op: a user's CUDA kernel as a graph op, checked against numpy and finite differences.

The kernels are the tutorials' (examples/custom_op.py: vector add, tiled shared-memory matmul,
swish with a backward kernel) plus a block sum over dynamic shared memory. Compile errors must
name this file and the line of the kernel source; bad arguments raise graphflow errors that
name the op and this file.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from gradcheck import check_gradients
from graphflow.codegen.devices import CompileFailed
from graphflow.codegen.emit import custom as custom_emit

import graphflow as gf
from graphflow.errors import CompileError, DTypeError, GraphflowError, ShapeError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "examples"))
import custom_op as ex  # noqa: E402  (the example's kernels)

DEVICES = ["reference", "cpu"]
HERE = os.path.abspath(__file__)

BLOCK_SUM = """
// one sum per block of 64 values, through dynamic shared memory and a tree of barriers
__global__ void block_sum(const float* x, float* out, int n) {
    extern __shared__ float partial[];
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    partial[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) partial[t] += partial[t + s];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}
"""

SCALE = """
__global__ void scale(const float* x, float* y, float factor, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = factor * x[i];
}
"""

BROKEN = """
__global__ void broken(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.0f * x[undeclared_index];
}
"""


def scale_op(**overrides):
    rules = dict(output=lambda x: (x.shape, x.dtype), launch=lambda x, y: (ex.blocks(ex.numel(x)), 256),
                 args=lambda x, y: [3.0, ex.numel(x)])
    rules.update(overrides)
    return gf.custom_op(SCALE, "scale", **rules)


def line_of(text: str) -> int:
    """The line of this file that holds `text`."""
    with open(HERE) as f:
        lines = f.read().split("\n")
    return next(i + 1 for i, line in enumerate(lines) if text in line)


def run(fetches, feeds=None, device="cpu"):
    with gf.Session(device=device) as sess:
        sess.run(gf.global_variables_initializer())
        return sess.run(fetches, feeds)


# ---- results against numpy -----------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_kernels_match_numpy(device):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 1000)).astype(np.float32)
    p, q = rng.normal(size=(37, 50)).astype(np.float32), rng.normal(size=(50, 21)).astype(np.float32)
    x = gf.placeholder(gf.float32, [None])  # the batch dim is known only at run time
    block_sum = gf.custom_op(BLOCK_SUM, "block_sum",
                             output=lambda x: ((None if x.shape[0] is None else ex.blocks(x.shape[0], 64),),
                                               x.dtype),
                             launch=lambda x, out: (out.shape[0], 64, 64 * 4),
                             args=lambda x, out: [x.shape[0]])
    got = run([ex.vector_add(x, b), ex.matmul(p, q), ex.swish(x), block_sum(x),
               scale_op()(x)], {x: a}, device)
    want = [a + b, p @ q, a / (1 + np.exp(-a)),
            np.add.reduceat(a, np.arange(0, 1000, 64)), 3 * a]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_float64_template_instance():
    p, q = np.random.default_rng(1).normal(size=(2, 20, 20))
    np.testing.assert_allclose(run(ex.matmul(p, q)), p @ q, rtol=1e-12)


def test_fixed_rules():
    op = gf.custom_op(SCALE, "scale", output=((6,), gf.float32), launch=(1, 32), args=[0.5, 6])
    x = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(run(op(x)), 0.5 * x)


def test_reference_function_runs_on_reference():
    calls = []

    def reference(x):
        calls.append(x.shape)
        return 3 * x

    x = np.arange(5, dtype=np.float32)
    op = scale_op(reference=reference)
    np.testing.assert_array_equal(run(op(x), device="reference"), 3 * x)
    assert calls == [(5,)]
    np.testing.assert_array_equal(run(op(x), device="cpu"), 3 * x)  # the kernel itself
    assert calls == [(5,)]


# ---- gradients -------------------------------------------------------------------------------
def test_gradients_match_finite_differences():
    """matmul's gradient is graph ops (two more custom matmuls), swish's a backward kernel."""
    rng = np.random.default_rng(2)
    check_gradients(lambda a, b: ex.swish(ex.matmul(a, b)), rng.normal(size=(5, 7)),
                    rng.normal(size=(7, 3)))
    check_gradients(lambda a: ex.swish(a), rng.normal(size=(40,)), dynamic=(0,))


def test_gradients_on_cpu_match_the_reference_device():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(6, 18)), rng.normal(size=(18, 4))
    pa, pb = gf.placeholder(gf.float64, [None, 18]), gf.placeholder(gf.float64, [18, 4])
    loss = gf.reduce_sum(gf.square(ex.swish(ex.matmul(pa, pb))))
    grads = gf.gradients(loss, [pa, pb])
    h = a @ b
    s = 1 / (1 + np.exp(-h))
    dh = 2 * h * s * s * (1 + h * (1 - s))  # d(swish(h)^2)/dh by hand
    for got, want in zip(run(grads, {pa: a, pb: b}), [dh @ b.T, a.T @ dh]):
        np.testing.assert_allclose(got, want, rtol=1e-10)


SIGMOID = """
__global__ void sigmoid_forward(const double* x, double* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 1.0 / (1.0 + exp(-x[i]));
}
__global__ void sigmoid_backward(const double* x, const double* y, const double* dy, double* dx,
                                 int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = dy[i] * y[i] * (1.0 - y[i]);
}
"""


def test_backward_kernel_reading_the_forward_output():
    """grad= a custom op of three inputs gets (x, y, dy): sigmoid's derivative from its output."""
    rules = dict(launch=lambda *s: (ex.blocks(ex.numel(s[0])), 256), args=lambda *s: [ex.numel(s[0])])
    backward = gf.custom_op(SIGMOID, "sigmoid_backward", output=lambda x, y, dy: (x.shape, x.dtype),
                            **rules)
    forward = gf.custom_op(SIGMOID, "sigmoid_forward", output=lambda x: (x.shape, x.dtype),
                           grad=backward, **rules)
    check_gradients(forward, np.random.default_rng(4).normal(size=(3, 30)))
    with pytest.raises(GraphflowError, match=r"grad=sigmoid_forward \(a custom op\) serves an op of "
                                             r"one input.*has 2 inputs"):
        gf.custom_op(ex.VECTOR_ADD, "vector_add", output=lambda a, b: (a.shape, a.dtype),
                     launch=lambda *s: (1, 1), grad=forward)


def test_no_gradient_rule_is_an_error():
    x = gf.placeholder(gf.float32, [4])
    with pytest.raises(GraphflowError, match=r"no gradient is defined for op 'scale'.*pass grad="):
        gf.gradients(gf.reduce_sum(scale_op()(x)), [x])


# ---- fusion, kernels, dumps, pictures ----------------------------------------------------------
def test_fusion_keeps_the_kernel_whole(tmp_path):
    x = gf.placeholder(gf.float32, [None], name="x")
    y = gf.exp(ex.vector_add(gf.nn.relu(x) + 1.0, x)) * 2.0
    with gf.Session(device="cpu") as sess:
        step = sess.make_callable(y, [x])
        xs = np.linspace(-1, 1, 300).astype(np.float32)
        np.testing.assert_allclose(step(xs), np.exp(np.maximum(xs, 0) + 1 + xs) * 2, rtol=1e-6)
        kernels = {k.name: k.nodes for k in step.kernels}
        assert kernels["vector_add_0"] == ["vector_add"]
        assert sum("vector_add" in nodes for nodes in kernels.values()) == 1
        assert len(kernels) == 3 and step.stats["launches"] == 3  # fused before, kernel, fused after
        step.dump(str(tmp_path))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = next(e for e in manifest["kernels"] if e["name"] == "vector_add_0")
    assert entry["nodes"] == ["vector_add"] and entry["block"] == [256, 1, 1]
    text = (tmp_path / "vector_add_0.cu").read_text()
    assert "c[i] = a[i] + b[i];" in text and f"defined at {HERE}:" in text
    dot = gf.viz.to_dot(step, "fused")
    assert 'label="vector_add_0"' in dot


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_dumped_custom_kernels_compile_with_nvcc(tmp_path):
    a = gf.placeholder(gf.float32, [None, 20])
    b = gf.Variable(np.ones((20, 5), np.float32))
    loss = gf.reduce_sum(ex.swish(ex.matmul(a, b)))
    block_sum = gf.custom_op(BLOCK_SUM, "block_sum", output=lambda x: ((1,), x.dtype),
                             launch=lambda x, out: (1, 64, 256), args=lambda x, out: [64])
    with gf.Session(device="cpu") as sess:
        sess.run(gf.global_variables_initializer())
        step = sess.make_callable([loss, block_sum(gf.reshape(a, [-1]))] + gf.gradients(loss, [a, b]),
                                  [a])
        step(np.ones((3, 20), np.float32))
        step.dump(str(tmp_path))
    files = ["graph.cu"] + sorted(f for f in os.listdir(tmp_path)
                                  if f.startswith(("matmul_tiled", "swish", "block_sum")))
    assert len(files) >= 6
    for f in files:
        result = subprocess.run(["nvcc", "-arch=sm_80", "-cubin", "-o", os.devnull, f],
                                cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, f"{f}:\n{result.stderr}"


# ---- compile errors at the user's line -------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_compile_error_points_at_the_users_line(device):
    op = gf.custom_op(BROKEN, "broken", output=lambda x: (x.shape, x.dtype),
                      launch=lambda x, y: (1, 32), args=lambda x, y: [8])
    y = op(np.ones(8, np.float32))
    bad = line_of("x[undeclared_index]")
    with pytest.raises(CompileError) as info:
        run(y, device=device)
    message = str(info.value)
    assert f"{HERE}:{bad}:" in message, message
    assert "undeclared_index" in message and "does not compile" in message
    assert f"{bad:>5} |     if (i < n) y[i] = 2.0f * x[undeclared_index];" in message


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_nvcc_compile_error_points_at_the_users_line():
    from graphflow.codegen.devices.pycuda_driver import compile_cubin
    op = gf.custom_op(BROKEN, "broken", output=lambda x: (x.shape, x.dtype),
                      launch=lambda x, y: (1, 32), args=lambda x, y: [8])
    text, _ = custom_emit.unit_for(op, [gf.float32, gf.float32])
    with pytest.raises(CompileFailed) as info:
        compile_cubin(text, "sm_80", no_extern_c=True)
    message = custom_emit.explain_compile_failure(info.value)
    assert f"{HERE}:{line_of('x[undeclared_index]')}:" in message, message


def test_source_from_a_file_names_that_file(tmp_path):
    path = tmp_path / "broken.cu"
    path.write_text(BROKEN.lstrip("\n"))
    op = gf.custom_op(path, "broken", output=lambda x: (x.shape, x.dtype),
                      launch=lambda x, y: (1, 32), args=lambda x, y: [8])
    with pytest.raises(CompileError, match=rf"{path}:3:"):
        run(op(np.ones(8, np.float32)))


# ---- bad arguments ---------------------------------------------------------------------------------
def test_unknown_kernel_name():
    with pytest.raises(GraphflowError, match=rf"at {HERE}:\d+: no __global__ function named "
                                             r"'scael'.*its kernels are \['scale'\]"):
        gf.custom_op(SCALE, "scael", output=lambda x: (x.shape, x.dtype), launch=lambda x, y: (1, 1))


def test_bad_definitions():
    with pytest.raises(GraphflowError, match=r"launch= must be a function"):
        gf.custom_op(SCALE, "scale", output=lambda x: (x.shape, x.dtype), launch=(0, 1))
    with pytest.raises(GraphflowError, match=r"source must be CUDA C text"):
        gf.custom_op(b"bytes", "scale", output=lambda x: x, launch=lambda x: x)
    with pytest.raises(GraphflowError, match=r"scalar parameter 'n' has type 'short'"):
        gf.custom_op("__global__ void k(float* y, short n) {}", "k", output=lambda: ((1,), "float32"),
                     launch=lambda y: (1, 1))
    with pytest.raises(GraphflowError, match=r"is outside a function"):
        gf.custom_op("extern __shared__ float s[];\n__global__ void k(float* y) {}", "k",
                     output=lambda: ((1,), "float32"), launch=lambda y: (1, 1))


def test_bad_rules_name_the_op_and_site():
    x = gf.placeholder(gf.float32, [4])
    site = rf"{HERE}:\d+"
    with pytest.raises(ShapeError, match=rf"output rule of gf.custom_op\('scale'\) at {site} returned"):
        scale_op(output=lambda x: x.shape)(x)
    with pytest.raises(ShapeError, match=r"output rule .* raised TypeError"):
        scale_op(output=lambda x: (x.shape + 1, x.dtype))(x)
    with pytest.raises(GraphflowError, match=rf"scale at {HERE}:\d+: takes 1 input tensors"):
        scale_op()(x, x)
    with pytest.raises(DTypeError, match=r"input 0 is float64 but kernel parameter 'x' is const float"):
        scale_op()(gf.placeholder(gf.float64, [4]))
    with pytest.raises(DTypeError, match=r"the output is int32 but kernel parameter 'y'"):
        scale_op(output=lambda x: (x.shape, gf.int32))(x)
    with pytest.raises(ShapeError, match=r"launch rule of gf.custom_op\('scale'\).*returned \(0, 256\)"):
        run(scale_op(launch=lambda x, y: (0, 256))(x), {x: np.ones(4)})
    with pytest.raises(ShapeError, match=r"block \(2048, 1, 1\).*beyond CUDA's limits"):
        run(scale_op(launch=lambda x, y: (1, 2048))(x), {x: np.ones(4)})
    with pytest.raises(ShapeError, match=r"scalar parameters are \['factor', 'n'\].*return 2 numbers"):
        run(scale_op(args=lambda x, y: [4])(x), {x: np.ones(4)})
    with pytest.raises(ShapeError, match=r"reference function .* returned shape \[3\]"):
        run(scale_op(reference=lambda x: x[:3])(x), {x: np.ones(4)}, device="reference")


def test_saved_graph_keeps_the_op(tmp_path):
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float32, [None], name="x")
        gf.identity(ex.vector_add(x, x), name="y")
    gf.io.save_graph(g, str(tmp_path / "g.json"))
    g2 = gf.io.load_graph(str(tmp_path / "g.json"))
    with gf.Session(g2, device="cpu") as sess:
        np.testing.assert_array_equal(sess.run("y:0", {"x:0": np.arange(3.0)}), [0, 2, 4])
