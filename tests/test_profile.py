"""Per-kernel profiles: Compiled.profile, run_metadata, $GRAPHFLOW_PROFILE."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphflow as gf
from graphflow.errors import DeviceError, NotSupportedError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def mlp():
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float32, [None, 8], name="x")
        w = gf.Variable(gf.initializers.glorot_uniform(seed=3)((8, 5)), name="w")
        loss = gf.reduce_mean(gf.square(gf.nn.relu(x @ w) - 1.0), name="loss")
        train = gf.train.GradientDescentOptimizer(0.1).minimize(loss)
        init = gf.global_variables_initializer()
    return g, x, w, loss, train, init


DATA = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)


def test_profile_table_covers_every_kernel(capsys):
    g, x, w, loss, train, init = mlp()
    with gf.Session(g, device="cpu") as sess:
        sess.run(init)
        step = sess.make_callable([train, loss], feed_list=[x])
        prof = step.profile(DATA, repeat=3)
        printed = capsys.readouterr().out
        infos = {k.name: k for k in step.kernels}
        launches = step.stats["launches"]
    # every launch of a call, once (a reduction's unused second pass is not launched)
    assert {r.name for r in prof.rows} <= set(infos) and len(prof.rows) == launches
    assert prof.calls == 3 and all(r.calls == 3 for r in prof.rows)
    assert [r.seconds for r in prof.rows] == sorted((r.seconds for r in prof.rows), reverse=True)
    assert abs(sum(r.share for r in prof.rows) - 1) < 1e-9
    for r in prof.rows:
        info = infos[r.name]
        assert r.seconds > 0
        assert r.bytes_moved == info.bytes_read + info.bytes_written and r.flops == info.flops
    assert prof.total_seconds == pytest.approx(sum(r.seconds for r in prof.rows))
    assert printed.strip() == str(prof)
    header = printed.splitlines()[1].split()
    assert header == ["kernel", "time", "us", "share", "bytes", "GB/s", "GFLOP/s"]
    assert all(r.name in printed for r in prof.rows)


def test_profiled_launches_use_the_steps_own_thread_counts(monkeypatch):
    """Each timed launch runs on the OS threads the step gives it (one for small work), not
    on every core: a profile must time the launches the step runs."""
    from graphflow.codegen import compile as program_module
    from graphflow.codegen.devices import emulator

    monkeypatch.setenv("GRAPHFLOW_EMU_THREADS", "2")
    monkeypatch.setenv("GRAPHFLOW_PLAN_CACHE", "0")  # the patched compiler runs: no kept plan
    monkeypatch.setattr(program_module, "SMALL_WORK", 300_000)  # the big GEMM is not small
    seen = []
    launch = emulator.Function.__call__

    def recording(self, *args, **kwargs):
        seen.append((self.name, kwargs.get("threads")))
        return launch(self, *args, **kwargs)

    monkeypatch.setattr(emulator.Function, "__call__", recording)
    g, x, w, loss, train, init = mlp()
    data = np.random.default_rng(1).normal(size=(4096, 8)).astype(np.float32)
    with gf.Session(g, device="cpu") as sess:
        sess.run(init)
        step = sess.make_callable([train, loss], feed_list=[x])
        step.profile(data, repeat=1, warmup=0, show=False)
        kernels = step.kernels
    sizes = {k.name: k.bytes_read + k.bytes_written + k.flops for k in kernels}
    assert seen and seen == [(name, 1 if sizes[name] < 300_000 else 2) for name, _ in seen]
    assert {threads for _, threads in seen} == {1, 2}


def test_profiled_calls_compute_what_reference_computes():
    g, x, w, loss, train, init = mlp()
    with gf.Session(g, device="reference") as ref:
        ref.run(init)
        losses = [ref.run([train, loss], {x: DATA})[1] for _ in range(4)]
        expected_w = ref.run(w)
    with gf.Session(g, device="cpu") as sess:
        sess.run(init)
        step = sess.make_callable([train, loss], feed_list=[x])
        step.profile(DATA, repeat=3, warmup=1, show=False)  # 4 real training steps
        np.testing.assert_allclose(sess.run(w), expected_w, rtol=1e-5, atol=1e-6)
        meta = gf.RunMetadata()
        _, value = sess.run([train, loss], {x: DATA}, options=gf.RunOptions(trace_level=3),
                            run_metadata=meta)
    with gf.Session(g, device="reference") as ref:
        ref.run(init)
        for _ in range(4):
            ref.run(train, {x: DATA})
        expected_loss = ref.run(loss, {x: DATA})
    assert len(losses) == 4
    np.testing.assert_allclose(value, expected_loss, rtol=1e-5)
    assert meta.profile is not None and meta.profile.calls == 1
    assert meta.profile.rows and all(r.seconds > 0 for r in meta.profile.rows)
    assert "graphflow profile" in str(meta)


def test_run_metadata_on_reference_and_bad_arguments():
    g, x, w, loss, train, init = mlp()
    with gf.Session(g, device="reference") as ref:
        ref.run(init)
        meta = gf.RunMetadata()
        ref.run(loss, {x: DATA}, run_metadata=meta)
        assert meta.profile is None and "no kernels" in str(meta)
        with pytest.raises(NotSupportedError, match="gf.RunMetadata"):
            ref.run(loss, {x: DATA}, run_metadata={})
        with pytest.raises(DeviceError, match="runs no kernels to profile"):
            ref.make_callable(loss, feed_list=[x]).profile(DATA)
    with gf.Session(g, device="cpu") as sess:
        sess.run(init)
        with pytest.raises(ValueError, match="repeat at least once"):
            sess.make_callable(loss, feed_list=[x]).profile(DATA, repeat=0)


def test_graphflow_profile_prints_tables_at_exit(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        import graphflow as gf
        x = gf.placeholder(gf.float32, [None, 4], name="x")
        w = gf.Variable(gf.ones([4, 2]), name="w")
        loss = gf.reduce_sum(gf.nn.relu(x @ w), name="loss")
        with gf.Session(device="cpu") as sess:
            sess.run(gf.global_variables_initializer())
            for _ in range(3):
                value = sess.run(loss, {x: np.ones((3, 4), np.float32)})
        print("loss", value)
    """))
    env = dict(os.environ, GRAPHFLOW_PROFILE="1", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "loss 24.0"
    assert "graphflow profile: loss:0 on cpu, 3 call(s)" in proc.stderr
    assert "gemm" in proc.stderr and "GB/s" in proc.stderr
