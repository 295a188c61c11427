"""Kept plans (codegen/plan_cache.py): a new process with a warm cache runs what the compiler
would, without running it, and gets the same numbers."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from graphflow.codegen import plan_cache

import graphflow as gf

# A training step with a fresh dropout mask each run, Adam, a fetched placeholder and constant,
# and an initializer; run in new processes that share one compile cache.
SCRIPT = r"""
import json, sys
import numpy as np
import graphflow as gf

batch, skip_init = int(sys.argv[1]), sys.argv[2] == "skip-init"
rng = np.random.default_rng(0)
x = gf.placeholder(gf.float32, [None, 8], name="x")
y = gf.placeholder(gf.int64, [None], name="y")
w1 = gf.Variable(rng.standard_normal((8, 16)).astype(np.float32) * 0.3, name="w1")
w2 = gf.Variable(rng.standard_normal((16, 3)).astype(np.float32) * 0.3, name="w2")
h = gf.nn.dropout(gf.nn.relu(gf.matmul(x, w1)), rate=0.25, seed=3)
loss = gf.reduce_mean(gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=gf.matmul(h, w2)))
train = gf.train.AdamOptimizer(0.05).minimize(loss)
scale = gf.constant(np.float32(2.5), name="scale")
xv = rng.standard_normal((batch, 8)).astype(np.float32)
yv = rng.integers(0, 3, batch)
out = {"losses": []}
with gf.Session(device=sys.argv[3]) as sess:
    if not skip_init:
        sess.run(gf.global_variables_initializer())
    step = sess.make_callable([loss, train, x, scale], feed_list=[x, y])
    try:
        for _ in range(3):
            l, _, fed, s = step(xv, yv)
            out["losses"].append(float(l))
        out["fed"] = bool(np.array_equal(fed, xv)) and float(s) == 2.5
        out["w1"] = sess.run(w1).tolist()
        out["launches"] = step.stats["launches"]
    except gf.errors.GraphflowError as e:
        out["error"] = str(e)
out["compiler_imported"] = "graphflow.codegen.compile" in sys.modules
print(json.dumps(out))
"""


def _run(tmp_path, batch: int, device: str = "cpu", skip_init: bool = False, **env) -> dict:
    script = tmp_path / "train_step.py"
    script.write_text(SCRIPT)
    environ = {**os.environ, "GRAPHFLOW_CACHE_DIR": str(tmp_path / "cache"), **env}
    environ.pop("GRAPHFLOW_PLAN_CACHE", None)
    proc = subprocess.run([sys.executable, str(script), str(batch),
                           "skip-init" if skip_init else "init", device],
                          env=environ, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_a_warm_process_runs_the_kept_plan_without_the_compiler(tmp_path):
    reference = _run(tmp_path, 6, device="reference")
    cold = _run(tmp_path, 6)
    assert cold["compiler_imported"] and list((tmp_path / "cache").glob("*.plan"))
    warm = _run(tmp_path, 6)
    assert not warm["compiler_imported"]
    # the same numbers as the compiled plan and as numpy, dropout's fresh masks included
    assert warm["losses"] == cold["losses"]
    np.testing.assert_allclose(warm["losses"], reference["losses"], rtol=1e-5)
    np.testing.assert_allclose(warm["w1"], reference["w1"], rtol=1e-4, atol=1e-6)
    assert len(set(warm["losses"])) == 3  # each step moved the weights
    assert warm["fed"] and warm["launches"] == cold["launches"]


def test_a_new_feed_shape_compiles_and_is_kept_beside_the_first(tmp_path):
    _run(tmp_path, 6)
    other = _run(tmp_path, 5)  # a new signature of a kept plan: the compiler runs for it
    assert other["compiler_imported"]
    again = _run(tmp_path, 5)
    assert not again["compiler_imported"] and again["losses"] == other["losses"]
    np.testing.assert_allclose(again["losses"], _run(tmp_path, 5, device="reference")["losses"],
                               rtol=1e-5)


def test_a_kept_plan_still_names_an_uninitialized_variable_and_its_reader(tmp_path):
    _run(tmp_path, 6)
    warm = _run(tmp_path, 6, skip_init=True)
    assert not warm["compiler_imported"]
    assert "variable 'w1'" in warm["error"] and "is read before it is initialized" in warm["error"]
    assert "train_step.py" in warm["error"]  # the reader's definition site


def test_a_damaged_plan_file_compiles_again(tmp_path):
    cold = _run(tmp_path, 6)
    for plan in (tmp_path / "cache").glob("*.plan"):
        plan.write_bytes(b"not a pickle")
    again = _run(tmp_path, 6)
    assert again["compiler_imported"] and again["losses"] == cold["losses"]
    assert not _run(tmp_path, 6)["compiler_imported"]  # rewritten


def test_settings_that_show_the_compile_keep_nothing(tmp_path):
    _run(tmp_path, 6, GRAPHFLOW_DEBUG="fusion")
    _run(tmp_path, 6, GRAPHFLOW_VERIFY="1")
    assert not list((tmp_path / "cache").glob("*.plan"))


def _key(**changes) -> str | None:
    gf.reset_default_graph()
    x = gf.placeholder(gf.float32, [None, 4], name="x")
    c = gf.constant(np.full(4, changes.get("fill", 1.0), np.float32), name=changes.get("name", "c"))
    out = x * c
    graph = gf.get_default_graph()
    order = graph.subgraph_order([out.op], {x})
    return plan_cache.plan_key(order, [out], (x,), changes.get("settings", ([], True, "cpu", 1)))


def test_the_key_follows_the_graph_and_the_settings(monkeypatch):
    monkeypatch.delenv("GRAPHFLOW_PLAN_CACHE", raising=False)
    base = _key()
    assert base is not None and base == _key()
    assert _key(fill=2.0) != base  # a constant's value
    assert _key(name="d") != base  # a name (kernel comments and errors carry it)
    assert _key(settings=([], False, "cpu", 1)) != base  # optimize=
    assert _key(settings=([], True, "cpu", 2)) != base  # GRAPHFLOW_EMU_THREADS
    monkeypatch.setenv("GRAPHFLOW_PLAN_CACHE", "0")
    assert _key() is None


def test_an_attribute_the_key_cannot_spell_keeps_nothing(monkeypatch):
    monkeypatch.delenv("GRAPHFLOW_PLAN_CACHE", raising=False)
    x = gf.placeholder(gf.float32, [4], name="x")
    out = x + 1.0
    out.op.attrs["callback"] = lambda: None  # as a custom op's Python function would be
    order = gf.get_default_graph().subgraph_order([out.op], {x})
    assert plan_cache.plan_key(order, [out], (x,), ([], True, "cpu", 1)) is None


@pytest.mark.parametrize("value", [np.arange(3), (1, None, slice(0, 2)), {"a": 1.5}, gf.float32])
def test_attribute_values_are_spelled_exactly(value):
    assert plan_cache._spell(value) == plan_cache._spell(value)
    assert plan_cache._spell(value) != plan_cache._spell(np.arange(4))
