"""Every op, forward and gradient, on the cpu device against the reference device.

Each group builds one graph holding many ops (so it compiles once), with odd
sizes, size-1 dims, non-multiples of the kernels' tiles and unknown batch dims,
and compares every output and every gradient. The same translation units are
then compiled by nvcc for sm_80 in one call, and the dumped kernels of a
training step each compile by themselves with no register spills in the GEMM
and reduction kernels.
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import graphflow as gf

RNG = np.random.default_rng(7)
SOURCES: dict[str, str] = {}  # group name -> translation unit, for the nvcc test


def normal(*shape):
    return RNG.standard_normal(shape)


def positive(*shape):
    return RNG.uniform(0.5, 2.0, shape)


def distinct(*shape):
    n = int(np.prod(shape))
    return (RNG.permutation(n).reshape(shape) - n / 2) * 0.01


def ints(high, *shape):
    return RNG.integers(0, high, shape)


# name -> (build, inputs); an input is an array, or (array, True) for a None batch dim
UNARY_CASES = {
    name: (fn, [normal(3, 17)]) for name, fn in [
        ("neg", gf.negative), ("abs", gf.abs), ("square", gf.square), ("exp", gf.exp),
        ("sin", gf.sin), ("cos", gf.cos), ("tanh", gf.tanh), ("sigmoid", gf.sigmoid),
        ("erf", gf.erf), ("relu", gf.nn.relu), ("gelu", gf.nn.gelu),
        ("gelu_tanh", lambda x: gf.nn.gelu(x, approximate=True)), ("silu", gf.nn.silu),
        ("softplus", gf.nn.softplus)]
} | {
    "sqrt": (gf.sqrt, [positive(65)]), "rsqrt": (gf.rsqrt, [positive(65)]),
    "log": (gf.log, [positive(1, 5)]),
}
BINARY_CASES = {
    f"{name}_{i}": (fn, [gen_a(*sa), gen_b(*sb)])
    for name, fn, gen_a, gen_b in [
        ("add", gf.add, normal, normal), ("sub", gf.subtract, normal, normal),
        ("mul", gf.multiply, normal, normal), ("div", gf.divide, normal, positive),
        ("pow", gf.pow, positive, normal), ("max", gf.maximum, normal, normal),
        ("min", gf.minimum, normal, normal)]
    for i, (sa, sb) in enumerate([((3, 17), (3, 17)), ((3, 1, 17), (1, 5, 1)), ((65,), ())])
} | {
    "where": (lambda a, b: gf.where(a > b, a, b * 2.0), [normal(3, 1, 5), normal(4, 1)]),
    "add_n": (lambda a: gf.add_n([a, a * a, a]), [normal(2, 3)]),
    "batch_bias": (lambda x, b: x + b, [(normal(5, 17), True), normal(17)]),
}
REDUCE_CASES = {
    f"{name}_{axis}_{keep}": (lambda x, f=fn, a=axis, k=keep: f(x, a, keepdims=k),
                              [distinct(3, 17, 5)])
    for name, fn in [("sum", gf.reduce_sum), ("mean", gf.reduce_mean), ("max", gf.reduce_max),
                     ("min", gf.reduce_min)]
    for axis in [None, 1, -1, (0, 2)] for keep in (False, True)
} | {
    "sum_batch": (lambda x: gf.reduce_sum(x, 0), [(normal(7, 65), True)]),
    "mean_batch": (lambda x: gf.reduce_mean(x), [(normal(7, 3), True)]),
    "long_row": (lambda x: gf.reduce_sum(x, -1), [normal(2, 5000)]),
    "softmax": (gf.nn.softmax, [normal(5, 17)]),
    "softmax_axis0": (lambda x: gf.nn.softmax(x, axis=0), [normal(5, 17)]),
    "log_softmax": (gf.nn.log_softmax, [(normal(3, 65), True)]),
    "sparse_xent": (lambda x: gf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=gf.constant(np.array([0, 16, 3, 3])), logits=x), [normal(4, 17)]),
    "xent": (lambda x: gf.nn.softmax_cross_entropy_with_logits(
        labels=gf.nn.softmax(gf.constant(normal(4, 17))), logits=x), [normal(4, 17)]),
    "layer_norm": (lambda x, g, b: gf.nn.layer_norm(x, g, b), [normal(3, 17), normal(17),
                                                               normal(17)]),
    "layer_norm_axis1": (lambda x, g, b: gf.nn.layer_norm(x, g, b, axis=1),
                         [normal(2, 5, 3), normal(5), normal(5)]),
    "cumsum": (lambda x: gf.cumsum(x, 1), [normal(3, 65)]),
    "cumsum_excl_rev": (lambda x: gf.cumsum(x, 0, exclusive=True, reverse=True),
                        [normal(17, 3)]),
    "cumsum_long": (lambda x: gf.cumsum(x, -1), [normal(2, 3000)]),
}
MATMUL_CASES = {
    f"matmul_{ta}{tb}": (lambda a, b, ta=ta, tb=tb: gf.matmul(a, b, ta, tb),
                         [normal(65, 17) if ta else normal(17, 65),
                          normal(3, 65) if tb else normal(65, 3)])
    for ta in (False, True) for tb in (False, True)
} | {
    "matmul_batch_bcast": (lambda a, b: a @ b, [normal(2, 1, 3, 4), normal(5, 4, 7)]),
    "matmul_batch_none": (lambda a, b: a @ b, [(normal(9, 33), True), normal(33, 70)]),
    "matmul_vectorish": (lambda a, b: a @ b, [normal(1, 7), normal(7, 1)]),
    "conv_same": (lambda x, w: gf.nn.conv2d(x, w, 1, "SAME"), [normal(2, 7, 9, 3),
                                                               normal(3, 3, 3, 4)]),
    "conv_valid_s2": (lambda x, w: gf.nn.conv2d(x, w, 2, "VALID"), [normal(1, 9, 8, 2),
                                                                    normal(3, 2, 2, 5)]),
    "max_pool": (lambda x: gf.nn.max_pool2d(x, 3, 2, "SAME"), [distinct(2, 7, 9, 2)]),
    "avg_pool": (lambda x: gf.nn.avg_pool2d(x, 2, 2, "SAME"), [normal(1, 5, 5, 3)]),
    "avg_pool_valid": (lambda x: gf.nn.avg_pool2d(x, 3, 1, "VALID"), [normal(1, 5, 6, 1)]),
    "max_pool_second_order": (lambda x: gf.gradients(gf.reduce_sum(gf.square(
        gf.nn.max_pool2d(x, 2, 2, "SAME"))), x)[0], [distinct(1, 5, 5, 2)]),
}
MOVEMENT_CASES = {
    "transpose": (gf.transpose, [normal(33, 65)]),
    "transpose_perm": (lambda x: gf.transpose(x, [1, 2, 0]), [normal(2, 3, 5)]),
    "reshape": (lambda x: gf.reshape(x, [-1, 5]) * 2.0, [normal(3, 5, 2)]),
    "expand_squeeze": (lambda x: gf.squeeze(gf.expand_dims(x, 1) * 2.0, 1), [normal(3, 4)]),
    "broadcast_to": (lambda x: gf.broadcast_to(x, [2, 3, 5]), [normal(3, 1)]),
    "slice": (lambda x: x[1:, ::-1], [normal(3, 17)]),
    "slice_batch": (lambda x: x[:, 2:5:2], [(normal(4, 17), True)]),
    "slice_index": (lambda x: x[..., 0] + x[-1], [normal(3, 3)]),
    "slice_newaxis": (lambda x: x[None, -3:-1, 5:-4:4], [normal(3, 17)]),
    "concat": (lambda a, b: gf.concat([a, b, a], 1), [normal(2, 3), normal(2, 5)]),
    "concat_batch": (lambda a, b: gf.concat([a, b], 0), [(normal(2, 3), True),
                                                        (normal(4, 3), True)]),
    "stack": (lambda a, b: gf.stack([a, b], -1), [normal(3, 4), normal(3, 4)]),
    "gather": (lambda p: gf.gather(p, gf.constant(np.array([[0, 2], [2, 4]]))), [normal(5, 3)]),
    "gather_axis1": (lambda p: gf.gather(p, gf.constant(np.array([3, 3, 0])), axis=1),
                     [normal(2, 4, 3)]),
    "embedding": (lambda p: gf.nn.embedding_lookup(p, gf.constant(ints(10, 6, 2))),
                  [normal(10, 4)]),
}

BREADTH_CASES = {
    "tile": (lambda x: gf.tile(x, [2, 1, 3]), [(normal(3, 1, 5), True)]),
    "pad": (lambda x: gf.pad(x, [[1, 2], [0, 3]], constant_values=0.5), [(normal(3, 5), True)]),
    "pad_reflect": (lambda x: gf.pad(x, [[2, 1], [1, 3]], "REFLECT"), [normal(4, 5)]),
    "split_unstack": (lambda x: gf.split(x, [2, -1], 1)[1] * gf.unstack(x, axis=1)[0][:, None],
                      [(normal(3, 7), True)]),
    "slice_clip": (lambda x: gf.clip_by_value(gf.slice(x, [1, 0], [-1, 3]), -0.5, 0.5),
                   [(normal(4, 5), True)]),
    "logsumexp": (lambda x: gf.reduce_logsumexp(x, -1), [(normal(3, 17), True)]),
    "reduce_prod": (lambda x: gf.reduce_prod(x, 0), [positive(5, 3)]),
    "rounding": (lambda x: gf.floor(x) * x + gf.ceil(x) + gf.round(x) * x, [normal(3, 5) * 3]),
    "log1p_elu_leaky": (lambda x: gf.log1p(gf.abs(x)) + gf.nn.elu(x) + gf.nn.leaky_relu(x),
                        [normal(3, 17)]),
    "sigmoid_xent": (lambda x: gf.nn.sigmoid_cross_entropy_with_logits(
        labels=gf.sigmoid(gf.constant(normal(4, 5))), logits=x), [(normal(4, 5), True)]),
    "moments_bn_l2": (lambda x: gf.nn.batch_normalization(x, *gf.nn.moments(x, [0]), 0.5, 2.0,
                                                          1e-3) + gf.nn.l2_loss(x),
                      [(normal(6, 5), True)]),
    "selective_scan": (lambda u, dt, b, c: gf.nn.selective_scan(
        u, dt, gf.constant(-positive(3, 4)), b, c, D=gf.constant(normal(3)),
        delta_bias=gf.constant(normal(3))), [(normal(2, 37, 3), True), (normal(2, 37, 3), True),
                                              (normal(2, 37, 4), True), (normal(2, 37, 4), True)]),
}


def run_group(name: str, cases: dict, dtype=gf.float64, rtol=1e-10, atol=1e-10) -> None:
    graph = gf.Graph()
    feeds, fetches = {}, []
    with graph.as_default():
        for case, (build, inputs) in cases.items():
            with gf.name_scope(case):
                xs = []
                for i, spec in enumerate(inputs):
                    value, dynamic = spec if isinstance(spec, tuple) else (spec, False)
                    shape = [None if dynamic and j == 0 else d for j, d in enumerate(value.shape)]
                    x = gf.placeholder(dtype, shape, name=f"x{i}")
                    feeds[x] = value.astype(dtype.np)
                    xs.append(x)
                out = build(*xs)
                # a random weight per element (1 along unknown dims, which it broadcasts over)
                w = gf.constant(RNG.standard_normal([d or 1 for d in out.shape]).astype(dtype.np))
                grads = gf.gradients(gf.reduce_sum(out * w), xs)
                fetches.append((case, [out] + [g for g in grads if g is not None]))
    flat = [t for _, ts in fetches for t in ts]
    with gf.Session(graph, device="cpu") as s:
        compiled = s.make_callable(flat, list(feeds))
        cpu = compiled(*feeds.values())
        SOURCES[name] = compiled.source
    with gf.Session(graph, device="reference") as s:
        ref = s.run(flat, feeds)
    i = 0
    for case, ts in fetches:
        for t in ts:
            np.testing.assert_allclose(cpu[i], ref[i], rtol=rtol, atol=atol,
                                       err_msg=f"{case}: {t.name}")
            i += 1


@pytest.mark.parametrize("name,cases", [("elementwise", UNARY_CASES | BINARY_CASES),
                                        ("reduce", REDUCE_CASES), ("matmul", MATMUL_CASES),
                                        ("movement", MOVEMENT_CASES),
                                        ("breadth", BREADTH_CASES)])
def test_group_float64(name, cases):
    run_group(name, cases)


def test_float32_training_ops():
    cases = {k: MATMUL_CASES[k] for k in ("matmul_FalseFalse", "matmul_batch_none", "conv_same")}
    cases |= {k: REDUCE_CASES[k] for k in ("softmax", "layer_norm", "sparse_xent", "sum_batch")}
    cases |= {"relu_bias": BINARY_CASES["batch_bias"]}
    run_group("float32", cases, gf.float32, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("dtype", [gf.int32, gf.int64])
def test_integer_ops(dtype):
    """Forward kernels in integer dtypes (no gradients): exact agreement."""
    a_val, b_val = ints(7, 3, 17) - 3, ints(5, 17, 4) + 1
    graph = gf.Graph()
    with graph.as_default():
        a = gf.placeholder(dtype, [None, 17])
        b = gf.placeholder(dtype, [17, 4])
        fetches = [a @ b, gf.reduce_sum(a, 1), gf.reduce_max(a, 0), gf.reduce_min(a),
                   gf.reduce_mean(a, -1), gf.argmax(a, 1), gf.argmin(a, 0, output_type=gf.int32),
                   gf.cumsum(a, 1), gf.cumsum(a, 0, exclusive=True, reverse=True),
                   gf.transpose(a), a[:, ::3], gf.concat([a, a * 2], 0), gf.gather(b, a[:, 0] + 3),
                   gf.one_hot(a[0], 5), a // 2, a ** 2,
                   gf.where(a > 0, a, -a), gf.cast(a, gf.float32), gf.equal(a, 1),
                   gf.logical_and(a > 0, a < 3), gf.cast(a > 1, gf.int32)]
        feeds = {a: a_val, b: b_val}
        with gf.Session(graph, device="cpu") as s:
            compiled = s.make_callable(fetches, [a, b])
            cpu = compiled(a_val, b_val)
            SOURCES[f"int_{dtype.name}"] = compiled.source
        with gf.Session(graph, device="reference") as s:
            ref = s.run(fetches, feeds)
    for c, r, t in zip(cpu, ref, fetches):
        assert c.dtype == r.dtype, t.name
        np.testing.assert_array_equal(c, r, err_msg=t.name)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_nvcc_compiles_every_kernel_variant_and_dumped_training_step(tmp_path):
    """One nvcc call over every group's translation unit plus each dumped kernel file."""
    if len(SOURCES) < 7:
        pytest.skip("run with the other tests of this file (they produce the sources)")
    files = []
    for name, source in SOURCES.items():
        path = tmp_path / f"{name}.cu"
        path.write_text(source)
        files.append(str(path))
    x = gf.placeholder(gf.float32, [None, 20])
    y = gf.placeholder(gf.int64, [None])
    w1 = gf.Variable(gf.initializers.glorot_uniform(seed=1)((20, 33)))
    w2 = gf.Variable(gf.initializers.glorot_uniform(seed=2)((33, 5)))
    h = gf.nn.dropout(gf.nn.relu(x @ w1), 0.1, seed=3)
    logits = gf.nn.layer_norm(h, gf.ones([33]), gf.zeros([33])) @ w2
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    train = gf.train.AdamOptimizer(0.01).minimize(loss)
    dump = tmp_path / "step"
    with gf.Session(device="cpu") as s:
        s.run(gf.global_variables_initializer())
        step = s.make_callable([train, loss], [x, y])
        step(normal(8, 20), ints(5, 8))
        step.dump(str(dump))
    manifest = json.loads((dump / "manifest.json").read_text())
    kernel_files = [str(dump / k["file"]) for k in manifest["kernels"]]
    # device code only (-cubin): the host side of these files is just kernel stubs; two
    # processes, one per core of the CI machine
    everything = files + kernel_files
    procs = [subprocess.Popen(["nvcc", "-arch=sm_80", "-cubin", "--resource-usage"] + part,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=tmp_path)
             for part in (everything[0::2], everything[1::2])]
    outputs = [p.communicate()[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-5000:]
    from graphflow.codegen.dump import parse_ptxas
    usage = parse_ptxas("\n".join(outputs))
    heavy = [k for k in usage if k.startswith(("gemm", "reduce", "softmax", "layer_norm"))]
    assert heavy, sorted(usage)
    spills = {k: v for k, v in usage.items() if k in heavy and v.get("spill_stores", 0)}
    assert not spills, spills
    for k in manifest["kernels"]:
        assert os.path.exists(dump / k["file"])
