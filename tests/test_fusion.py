"""Fusion and memory planning on the cpu device, against the numpy reference: that fusion
happened (kernel counts), that it is right, and what it must never do."""
import numpy as np
import pytest
from graphflow.codegen.emit.gemm import cpu_tiling_for

import graphflow as gf

CPU_GEMM = "gemm_" + cpu_tiling_for(gf.float32).name  # the cpu schedule's kernel names


def compiled(fetches, feeds, optimize=True):
    s = gf.Session(device="cpu", optimize=optimize)
    s.run(gf.global_variables_initializer())
    return s, s.make_callable(fetches, feeds)


def reference(fetches, feed):
    with gf.Session(device="reference") as s:
        s.run(gf.global_variables_initializer())
        return s.run(fetches, feed)


def test_elementwise_chain_with_fan_out_is_one_kernel():
    x = gf.placeholder(gf.float32, [None, 16])
    b = gf.constant(np.linspace(-1, 1, 16, dtype=np.float32))
    h = gf.tanh(x * 2.0 + b)
    outs = [gf.nn.relu(h), gf.exp(h) - h, gf.sigmoid(x) * h]
    xv = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    s, f = compiled(outs, [x])
    got = f(xv)
    assert [k.name for k in f.kernels] == ["fused_mul_add_tanh_relu_0"]
    assert f.stats["launches"] == 1
    for a, b_ in zip(got, reference(outs, {x: xv})):
        np.testing.assert_allclose(a, b_, rtol=1e-6, atol=1e-6)
    s.close()


def test_fused_kernel_comment_names_every_user_op():
    x = gf.placeholder(gf.float32, [4], name="x")
    y = gf.nn.relu(x * 3.0 + 1.0, name="act")
    s, f = compiled(y, [x])
    f(np.ones(4, np.float32))
    for name in ("mul", "add", "act"):
        assert f"computes {name} (" in f.source
    assert __file__ in f.source
    s.close()


def test_optimizer_updates_fuse_into_gemms_or_horizontally_and_update_in_place():
    """A weight's update runs in the epilogue of the GEMM computing its gradient; the other
    variables' updates (b1, whose gradient is summed while the relu gradient is computed, and a)
    fuse into one kernel; c's gradient is a column sum of the values w2's gradient GEMM loads,
    so that GEMM sums and updates it; the beta powers get another kernel (every update reads
    their old values). All in place."""
    x = gf.placeholder(gf.float32, [None, 6])
    y = gf.placeholder(gf.int32, [None])
    w1 = gf.Variable(gf.initializers.glorot_uniform(seed=1)((6, 8)))
    b1 = gf.Variable(np.zeros(8, np.float32))
    w2 = gf.Variable(gf.initializers.glorot_uniform(seed=2)((8, 3)))
    a = gf.Variable(np.linspace(0.5, 1.5, 8, dtype=np.float32))
    c = gf.Variable(np.linspace(0.8, 1.2, 3, dtype=np.float32))
    logits = ((gf.nn.relu(x @ w1 + b1) * a) @ w2) * c
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    train = gf.train.AdamOptimizer(0.05).minimize(loss)
    rng = np.random.default_rng(1)
    xv, yv = rng.standard_normal((10, 6)).astype(np.float32), rng.integers(0, 3, 10).astype(np.int32)
    with gf.Session(device="reference") as ref:
        ref.run(gf.global_variables_initializer())
        want = [ref.run([loss, train], {x: xv, y: yv})[0] for _ in range(4)] + ref.run([w1, a, c])
    s, f = compiled([loss, train], [x, y])
    buffers = {v.op: s._values[v.op] for v in gf.global_variables()}
    got = [f(xv, yv)[0] for _ in range(4)] + s.run([w1, a, c])
    np.testing.assert_allclose(got[:4], want[:4], rtol=1e-5)
    for g_, w_ in zip(got[4:], want[4:]):
        np.testing.assert_allclose(g_, w_, rtol=1e-5, atol=1e-6)
    updates = sorted(k.name for k in f.kernels if "update" in k.name)
    assert updates == ["adam_update_all_0", "adam_update_all_1",  # b1 and a; the beta powers
                       f"{CPU_GEMM}_adam_update_0",  # w1
                       f"{CPU_GEMM}_adam_update_sum_to_like_0"], updates  # w2, and c's column sum
    assert all(s._values[op] is buf for op, buf in buffers.items())  # updated in place
    s.close()


def test_fetching_a_variable_and_its_update_in_one_run_keeps_start_of_run_value():
    v = gf.Variable(np.arange(3, dtype=np.float32))
    upd = v.assign(v * 2.0 + 1.0)
    s, f = compiled([v, upd], [])
    old, new = f()
    np.testing.assert_array_equal(old, [0, 1, 2])
    np.testing.assert_array_equal(new, [1, 3, 5])
    np.testing.assert_array_equal(s.run(v), [1, 3, 5])
    s.close()


def test_one_element_chains_are_computed_once_not_per_variable():
    x = gf.placeholder(gf.float32, [None, 4])
    ws = [gf.Variable(np.full((4, 4), i + 1.0, np.float32)) for i in range(3)]
    loss = gf.add_n([gf.reduce_sum(x @ w) for w in ws])
    train = gf.train.AdamOptimizer(0.01).minimize(loss)
    s, f = compiled([train], [x])
    f(np.ones((2, 4), np.float32))
    # lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t): CSE makes it one chain, inlined once per
    # kernel (here each weight's update runs in the GEMM computing its gradient)
    updates = [k for k in f._plan.program.kernels if "adam_update" in k.name and k.name.startswith("gemm")]
    assert len(updates) == 3
    for k in updates:
        assert k.body.count("sqrtf(") == 1 + 1, k.name  # the lr_t chain once, then sqrt(v)
    s.close()


def test_memory_plan_reuses_buffers_and_reports_the_bound():
    x = gf.placeholder(gf.float32, [64, 64])
    h = x
    for _ in range(6):
        h = gf.tanh(gf.matmul(h, h) * 0.01 + 1.0)
    s_on, f_on = compiled(h, [x])
    s_off, f_off = compiled(h, [x], optimize=False)
    xv = np.eye(64, dtype=np.float32)
    np.testing.assert_allclose(f_on(xv), f_off(xv), rtol=1e-6)
    on, off = f_on.stats, f_off.stats
    assert on["launches"] < off["launches"] and on["bytes_moved"] < off["bytes_moved"]
    assert on["peak_memory_bound"] <= on["peak_memory_bytes"] <= 1.2 * on["peak_memory_bound"]
    assert on["peak_memory_bytes"] < 6 * 64 * 64 * 4  # six layers' outputs share two buffers
    s_on.close()
    s_off.close()


def test_fusion_never_crosses_a_broadcast_of_a_runtime_size_one_dim():
    a = gf.placeholder(gf.float32, [None])
    b = gf.placeholder(gf.float32, [None])
    y = gf.exp(a) + b
    s, f = compiled(y, [a, b])
    with pytest.raises(gf.errors.ShapeError):
        f(np.ones(1, np.float32), np.ones(4, np.float32))
    np.testing.assert_allclose(f(np.zeros(3, np.float32), np.ones(3, np.float32)), 2.0)
    s.close()


def test_debug_fusion_explains_decisions(monkeypatch, capsys):
    monkeypatch.setenv("GRAPHFLOW_DEBUG", "fusion")
    x = gf.placeholder(gf.float32, [3, 4])
    y = gf.reduce_sum(gf.exp(x) * 2.0, axis=1) + gf.constant(np.ones(3, np.float32))
    s, f = compiled(y, [x])
    f(np.ones((3, 4), np.float32))
    out = capsys.readouterr().out
    assert "[fusion] fuse exp -> mul: elementwise, same iteration space" in out
    s.close()


def test_no_fusion_is_one_kernel_per_op():
    x = gf.placeholder(gf.float32, [8])
    y = gf.exp(x * 2.0) + 1.0
    s, f = compiled(y, [x], optimize=False)
    f(np.ones(8, np.float32))
    assert [k.name for k in f.kernels] == ["mul_0", "exp_0", "add_0"]
    s.close()


def test_loss_and_its_gradient_fuse_into_fewer_kernels():
    """The mean's gradient broadcast to the batch is inlined (the same value everywhere), the
    cross-entropy, its mean, its gradient's softmax and `(p - onehot) * g` share one row kernel, and each
    bias gradient is summed by the GEMM that reads the same data (dW = X^T dY); values match
    the reference."""
    rng = np.random.default_rng(3)
    x = gf.placeholder(gf.float32, [None, 7])
    y = gf.placeholder(gf.int32, [None])
    w1 = gf.Variable(rng.standard_normal((7, 9)).astype(np.float32))
    b1 = gf.Variable(rng.standard_normal(9).astype(np.float32))
    w2 = gf.Variable(rng.standard_normal((9, 5)).astype(np.float32))
    b2 = gf.Variable(rng.standard_normal(5).astype(np.float32))
    h = gf.nn.relu(gf.matmul(x, w1) + b1)
    logits = gf.matmul(h, w2) + b2
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    grads = gf.gradients(loss, [w1, b1, w2, b2])
    xv = rng.standard_normal((13, 7)).astype(np.float32)
    yv = rng.integers(0, 5, 13).astype(np.int32)
    s, f = compiled([loss, *grads], [x, y])
    got = f(xv, yv)
    names = [k.name for k in f.kernels]
    # the loss, its mean, the softmax and the gradient's (p - onehot) * g: one row kernel
    assert "sparse_softmax_xent_softmax_reduce_mean_one_hot_sub_mul_0" in names, names
    assert not any(n.startswith(("softmax", "fused", "reduce")) or "broadcast_like" in n
                   for n in names), names
    assert sum(n.count(f"{CPU_GEMM}_sum_to_like") for n in names) == 2, names  # db1, db2 (maybe in a combo)
    for a, b_ in zip(got, reference([loss, *grads], {x: xv, y: yv})):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-5)
    s.close()


def test_bias_gradient_summed_by_the_gemm_matches_reference_on_odd_sizes():
    """Column sums of B done while the GEMM packs it: more columns than one tile, rows not a
    multiple of the register tile, and a K longer than one packed panel."""
    rng = np.random.default_rng(4)
    for k, n in ((300, 200), (5, 3), (257, 193)):
        a = gf.placeholder(gf.float32, [k, 11])
        dy = gf.placeholder(gf.float32, [k, n])
        dw = gf.matmul(a, dy, transpose_a=True)
        db = gf.reduce_sum(dy, axis=0)
        av = rng.standard_normal((k, 11)).astype(np.float32)
        dv = rng.standard_normal((k, n)).astype(np.float32)
        s, f = compiled([dw, db], [a, dy])
        got = f(av, dv)
        assert len(f.kernels) == 1 and f.kernels[0].name.startswith("gemm"), [k.name for k in f.kernels]
        np.testing.assert_allclose(got[0], av.T.astype(np.float64) @ dv, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got[1], dv.astype(np.float64).sum(0), rtol=1e-4, atol=1e-4)
        s.close()


def test_uniform_value_read_by_a_reduction_is_computed_before_it():
    """The gradient of reduce_sum(log_softmax(h) * 0.5) is a uniform value (0.5 everywhere)
    that a reduction also reads: it is then a kernel's output, ordered before its readers
    (inlining it for the elementwise readers alone once hid that dependency)."""
    rng = np.random.default_rng(5)
    x = gf.placeholder(gf.float32, [None, 36])
    loss = gf.reduce_sum(gf.nn.log_softmax(x * 1.5) * 0.5)
    g = gf.gradients(loss, x)[0]
    xv = rng.standard_normal((3, 36)).astype(np.float32)
    s, f = compiled([loss, g], [x])
    got = f(xv)
    for a, b_ in zip(got, reference([loss, g], {x: xv})):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-5)
    s.close()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_variable_updates_run_in_the_epilogue_of_their_gradient_gemm(optimizer):
    """W -= lr * dW is applied by the GEMM computing dW = X^T dY, and the bias's update by the
    same GEMM as it stores the column sums of dY: no separate update kernel for them. The
    forward and backward GEMMs still read each weight's start-of-step value (also when it is
    fetched in the same run); three steps match the reference."""
    rng = np.random.default_rng(6)
    x = gf.placeholder(gf.float32, [None, 5])
    y = gf.placeholder(gf.int32, [None])
    w1 = gf.Variable(rng.standard_normal((5, 7)).astype(np.float32) * 0.5)
    b1 = gf.Variable(rng.standard_normal(7).astype(np.float32) * 0.1)
    w2 = gf.Variable(rng.standard_normal((7, 3)).astype(np.float32) * 0.5)
    b2 = gf.Variable(rng.standard_normal(3).astype(np.float32) * 0.1)
    logits = gf.matmul(gf.nn.relu(gf.matmul(x, w1) + b1), w2) + b2
    loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    opt = gf.train.GradientDescentOptimizer(0.3) if optimizer == "sgd" else gf.train.AdamOptimizer(0.05)
    train = opt.minimize(loss)
    xv = rng.standard_normal((9, 5)).astype(np.float32)
    yv = rng.integers(0, 3, 9).astype(np.int32)
    results = {}
    for device in ("reference", "cpu"):
        with gf.Session(device=device) as s:
            s.run(gf.global_variables_initializer())
            step = s.make_callable([loss, w2, train], [x, y])
            results[device] = [step(xv, yv)[:2] for _ in range(3)] + [s.run([w1, b1, w2, b2])]
            if device == "cpu":
                names = [k.name for k in step.kernels]
                assert sum("_update_sum_to_like" in n for n in names) == 2, names
                assert not any(n.startswith("gradientdescent_update") for n in names), names
    for ref, cpu in zip(results["reference"], results["cpu"]):
        for a, b_ in zip(ref, cpu):
            np.testing.assert_allclose(b_, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("total", ["mean", "sum"])
def test_loss_total_taken_by_the_thread_done_last_over_many_blocks_and_runs(total):
    """The loss kernel's thread done last totals every row (a ticket counter reset each
    launch): right over many blocks run by several OS threads, run after run, and for each
    batch size."""
    rng = np.random.default_rng(5)
    logits = gf.placeholder(gf.float32, [None, 6])
    labels = gf.placeholder(gf.int32, [None])
    xent = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    loss = gf.reduce_mean(xent) if total == "mean" else gf.reduce_sum(xent)
    s, f = compiled(loss, [logits, labels])
    assert [k.name for k in f.kernels] == [f"sparse_softmax_xent_reduce_{total}_0"]
    for rows in (1, 3000, 37, 3000):
        xv = rng.standard_normal((rows, 6)).astype(np.float32)
        yv = rng.integers(0, 6, rows).astype(np.int32)
        want = reference(loss, {logits: xv, labels: yv})
        np.testing.assert_allclose(f(xv, yv), want, rtol=1e-5)
    s.close()


def test_transposes_and_slices_read_by_gemms_make_no_kernel():
    """Attention-style views (a slice of a projection, reshaped into heads and transposed; the
    heads merged back) are loaded in place by the GEMMs; odd sizes, stepped slices, integer
    indices and transposed GEMMs; forward and gradients match the reference."""
    rng = np.random.default_rng(7)
    B, T, H, hd = 3, 5, 2, 3
    D = H * hd
    x = gf.placeholder(gf.float32, [B * T, D])
    w = gf.Variable(rng.standard_normal((D, 3 * D)).astype(np.float32))
    wo = gf.Variable(rng.standard_normal((D, 7)).astype(np.float32))
    qkv = gf.matmul(x, w) * 1.0

    def heads(t):
        return gf.transpose(gf.reshape(t, [B, T, H, hd]), [0, 2, 1, 3])

    q, k, v = heads(qkv[:, 0:D]), heads(qkv[:, D:2 * D]), heads(qkv[:, 2 * D:3 * D])
    att = gf.nn.softmax(gf.matmul(q, k, transpose_b=True), axis=-1)
    y = gf.reshape(gf.transpose(gf.matmul(att, v), [0, 2, 1, 3]), [B * T, D])
    every_other = gf.matmul(qkv[1::2, ::3], gf.transpose(qkv[2, 0:D][None, :] * 1.0), transpose_a=False)
    loss = gf.reduce_sum(gf.matmul(y, wo) ** 2) + gf.reduce_sum(every_other)
    grads = gf.gradients(loss, [x, w, wo])
    xv = rng.standard_normal((B * T, D)).astype(np.float32)
    s, f = compiled([loss, *grads], [x])
    views = {op.name for op in gf.get_default_graph()._ops
             if op.type in ("Transpose", "StridedSlice") and op.grad_of is None}
    computed = [n for kn in f.kernels for n in kn.nodes if n in views]
    assert len(views) == 11 and computed == [], computed  # every forward view is read in place
    for a, b_ in zip(f(xv), reference([loss, *grads], {x: xv})):
        np.testing.assert_allclose(a, b_, rtol=2e-4, atol=2e-4)
    s.close()


def test_a_fetched_or_variable_view_is_still_computed():
    """A view that is fetched, or of a variable, keeps its kernel (and stays right)."""
    rng = np.random.default_rng(8)
    x = gf.placeholder(gf.float32, [4, 6])
    w = gf.Variable(rng.standard_normal((5, 6)).astype(np.float32))
    xt = gf.transpose(x * 2.0)
    out = gf.matmul(xt, gf.transpose(w), transpose_a=True)  # w^T: a view of a variable is not taken
    xv = rng.standard_normal((4, 6)).astype(np.float32)
    s, f = compiled([out, xt], [x])
    assert sum(k.name.startswith("transpose") for k in f.kernels) == 2
    for a, b_ in zip(f(xv), reference([out, xt], {x: xv})):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-5)
    s.close()


def test_gradients_of_head_slices_are_stored_by_their_gemms_into_one_tensor():
    """q, k, v sliced from one projection: their gradients tile it, so their sum is a
    concatenation (the simplify pass), and each gradient GEMM stores its part of it in place
    through the head transposes: no slice-gradient, transpose, add or concat kernel."""
    rng = np.random.default_rng(9)
    B, T, H, hd = 2, 5, 3, 2
    D = H * hd
    x = gf.placeholder(gf.float32, [B * T, D])
    w = gf.Variable(rng.standard_normal((D, 3 * D)).astype(np.float32))
    qkv = gf.matmul(x, w)

    def heads(t):
        return gf.transpose(gf.reshape(t, [B, T, H, hd]), [0, 2, 1, 3])

    q, k, v = heads(qkv[:, 0:D]), heads(qkv[:, D:2 * D]), heads(qkv[:, 2 * D:])
    y = gf.matmul(gf.nn.softmax(gf.matmul(q, k, transpose_b=True)), v)
    loss = gf.reduce_sum(gf.tanh(y))
    grads = gf.gradients(loss, [x, w])
    xv = rng.standard_normal((B * T, D)).astype(np.float32)
    s, f = compiled([loss, *grads], [x])
    names = [kn.name for kn in f.kernels]
    assert not any(n.startswith(("strided_slice", "transpose", "concat", "add_n")) for n in names), names
    for a, b_ in zip(f(xv), reference([loss, *grads], {x: xv})):
        np.testing.assert_allclose(a, b_, rtol=2e-4, atol=2e-5)
    s.close()


def test_an_embedding_and_its_position_term_are_one_gather_kernel():
    rng = np.random.default_rng(10)
    table = gf.Variable(rng.standard_normal((11, 6)).astype(np.float32))
    pos = gf.Variable(rng.standard_normal((4, 6)).astype(np.float32))
    ids = gf.placeholder(gf.int32, [None, 4])
    h = gf.gather(table, ids) + pos
    loss = gf.reduce_sum(gf.tanh(h) * 3.0)
    grads = gf.gradients(loss, [table, pos])
    idv = rng.integers(0, 11, (5, 4)).astype(np.int32)
    s, f = compiled([h, *grads], [ids])
    assert any("gather_add" in k.name for k in f.kernels)  # the add runs in the gather
    for a, b_ in zip(f(idv), reference([h, *grads], {ids: idv})):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-5)
    s.close()


def test_independent_gemms_share_a_launch_and_dependent_ones_do_not():
    """Two GEMMs of the same input (a layer's dX and dW read the same dY) are one launch;
    a GEMM of another's result, and a weight's update beside a read of the weight, are not."""
    rng = np.random.default_rng(11)
    x = gf.placeholder(gf.float32, [5, 7])
    w1 = gf.constant(rng.standard_normal((7, 3)).astype(np.float32))
    w2 = gf.constant(rng.standard_normal((7, 4)).astype(np.float32))
    w3 = gf.constant(rng.standard_normal((3, 2)).astype(np.float32))
    a, b = gf.matmul(x, w1), gf.matmul(x, w2)
    c = gf.matmul(a, w3)
    xv = rng.standard_normal((5, 7)).astype(np.float32)
    s, f = compiled([a, b, c], [x])
    names = [k.name for k in f.kernels]
    assert names == [f"combo_{CPU_GEMM}_0__{CPU_GEMM}_1", f"{CPU_GEMM}_2"], names
    for got, want in zip(f(xv), reference([a, b, c], {x: xv})):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    s.close()


@pytest.mark.parametrize("rows", [37, 70_000])  # the long case splits rows over chunks
def test_reductions_of_one_geometry_share_a_launch(rows):
    """Two column sums over the same rows (layer norm's gamma and beta gradients) are one
    launch, also when each is two passes (the second passes stay their own kernels)."""
    rng = np.random.default_rng(12)
    x = gf.placeholder(gf.float32, [rows, 5])
    a = gf.reduce_sum(x, axis=0)
    b = gf.reduce_sum(x * gf.tanh(x), axis=0)
    xv = rng.standard_normal((rows, 5)).astype(np.float32)
    s, f = compiled([a, b], [x])
    assert f.kernels[0].name.startswith("combo_reduce_sum_"), [k.name for k in f.kernels]
    for got, want in zip(f(xv), reference([a, b], {x: xv})):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    s.close()


def test_a_thin_gemm_is_recomputed_by_the_gemm_that_reads_it():
    """The hidden layer's gradient dH = relu'(.) * (dlogits @ W2^T) has K = the 5 classes: the
    GEMM dW1 = X^T dH (and the bias gradient it sums) computes it as it loads it, so dH never
    reaches memory; a thick K (40 classes) keeps its own kernel, and so does a thin one that two
    GEMMs read (the gradient of x too: dX = dH W1^T), which would compute it twice. All match
    the reference."""
    rng = np.random.default_rng(13)
    for classes, recomputed, wrt_x in ((5, True, False), (40, False, False), (5, False, True)):
        x = gf.placeholder(gf.float32, [None, 7])
        y = gf.placeholder(gf.int32, [None])
        w1 = gf.Variable(rng.standard_normal((7, 9)).astype(np.float32))
        b1 = gf.Variable(rng.standard_normal(9).astype(np.float32))
        w2 = gf.Variable(rng.standard_normal((9, classes)).astype(np.float32))
        logits = gf.matmul(gf.nn.relu(gf.matmul(x, w1) + b1), w2)
        loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = gf.gradients(loss, [w1, b1, w2] + ([x] if wrt_x else []))
        xv = rng.standard_normal((11, 7)).astype(np.float32)
        yv = rng.integers(0, classes, 11).astype(np.int32)
        s, f = compiled(grads, [x, y])
        names = [k.name for k in f.kernels]
        assert any("select" in n for n in names) != recomputed, names
        for a, b_ in zip(f(xv, yv), reference(grads, {x: xv, y: yv})):
            np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-5)
        s.close()


@pytest.mark.parametrize("gpu_launch", [False, True])
def test_broadcasting_loads_walked_by_rows_match_reference(gpu_launch, monkeypatch):
    """On the cpu, a fused kernel whose loads broadcast walks rows of the last dim (each row's
    offsets computed once, then unit stride); every broadcast pattern is right, over several
    tiles, and for any grid and block (`gpu_launch`: the GPU's launch shapes run the source)."""
    monkeypatch.setenv("GRAPHFLOW_PLAN_CACHE", "0")  # the launches are patched below
    rng = np.random.default_rng(11)
    x = gf.placeholder(gf.float32, [None, 3, 9])
    y = gf.placeholder(gf.float32, [3, 1])
    z = gf.placeholder(gf.float32, [9])
    w = gf.placeholder(gf.float32, [None, 1, 9])
    v = gf.placeholder(gf.float64, [None, 40])
    u = gf.placeholder(gf.float64, [40])
    n = gf.placeholder(gf.int32, [None, 8])
    m = gf.placeholder(gf.int32, [8])
    ids = gf.placeholder(gf.int32, [None, 3])
    k = gf.placeholder(gf.int32, [None, 5])
    q = gf.placeholder(gf.float32, [None, 5, 9])
    outs = [x * y + z, gf.tanh(x - w) * 2.0, x + w * y, v * u - 1.0, gf.exp(u) + v, n * m + 3,
            gf.one_hot(ids, 9) * z, gf.one_hot(k, 9) * 2.0 + q]  # one-hots read by row too
    feeds = [x, y, z, w, v, u, n, m, ids, k, q]
    s, f = compiled(outs, feeds)
    if gpu_launch:
        for k in f._plan.program.kernels:
            k.launch = (lambda launch: lambda shapes, device: launch(shapes, "cuda"))(k.launch)
    assert any("const long long len" in k.source or "const int len" in k.source
               for k in f._plan.program.kernels)  # some kernel walks rows
    for batch in (1, 5, 300):  # 300: several tiles of rows
        vals = [rng.standard_normal((batch, 3, 9)), rng.standard_normal((3, 1)), rng.standard_normal(9),
                rng.standard_normal((batch, 1, 9)), rng.standard_normal((batch, 40)),
                rng.standard_normal(40), rng.integers(-9, 9, (batch, 8)), rng.integers(-9, 9, 8),
                rng.integers(-1, 10, (batch, 3)), rng.integers(-1, 10, (batch, 5)),
                rng.standard_normal((batch, 5, 9))]
        vals = [np.asarray(a, dtype=t.dtype.np) for a, t in zip(vals, feeds)]
        for a, b_ in zip(f(*vals), reference(outs, dict(zip(feeds, vals)))):
            np.testing.assert_allclose(a, b_, rtol=1e-6, atol=1e-6)
    if gpu_launch:
        assert any(info.block != (1, 1, 1) for info in f.kernels)
    s.close()
