"""gf.viz: DOT text per stage (checked structurally) and rendering through Graphviz's dot."""
import re
import shutil
import struct

import pytest

import graphflow as gf
from graphflow.viz import VizError

HAS_DOT = shutil.which("dot") is not None


def model():
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float32, [None, 4], name="x")
        y = gf.placeholder(gf.int64, [None], name="y")
        with gf.name_scope("dense"):
            w = gf.Variable(gf.initializers.glorot_uniform(seed=1)((4, 3)), name="w")
            b = gf.Variable(gf.zeros([3]), name="b")
            logits = gf.nn.relu(x @ w + b)
        xent = gf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        loss = gf.reduce_mean(xent, name="loss")
        train = gf.train.GradientDescentOptimizer(0.1).minimize(loss)
    return g, x, y, loss, train


def nodes(dot: str) -> dict:
    """node id -> label of every op node."""
    return {m[1]: m[2] for m in re.finditer(r'^\s*(n\d+) \[label="((?:[^"\\]|\\.)*)"', dot, re.M)}


def clusters(dot: str) -> list[tuple[str, list[str]]]:
    """(label, node ids) per cluster."""
    out = []
    for m in re.finditer(r"subgraph cluster_\w+ \{\n\s*label=\"([^\"]*)\";(.*?)\n  \}", dot, re.S):
        out.append((m[1], re.findall(r"^\s*(n\d+) \[", m[2], re.M)))
    return out


def test_built_stage_is_the_forward_graph_with_shapes_and_dtypes():
    g, *_ = model()
    dot = gf.viz.to_dot(g, "built")
    labels = nodes(dot).values()
    assert "dense/matmul\\nMatMul\\n[?, 3] float32" in labels
    assert "y\\nPlaceholder\\n[?] int64" in labels
    assert not any(label.startswith(("gradients/", "GradientDescent/")) for label in labels)
    assert dot.startswith("digraph graphflow {") and dot.rstrip().endswith("}")


def test_grad_stage_draws_gradient_ops_distinct():
    g, *_ = model()
    dot = gf.viz.to_dot(g, "grad")
    grad_lines = [ln for ln in dot.splitlines() if 'label="gradients/' in ln]
    forward = [ln for ln in dot.splitlines() if 'label="dense/matmul\\n' in ln]
    assert grad_lines and all("dashed" in ln for ln in grad_lines)
    assert forward and "dashed" not in forward[0]
    # every graph op is drawn once, and an edge enters each gradient op
    assert len(nodes(dot)) == len(g.get_operations())


def test_optimized_stage_is_the_lowered_graph():
    g, x, y, loss, train = model()
    dot = gf.viz.to_dot(g, "optimized", fetches=["loss:0"])
    labels = list(nodes(dot).values())
    assert any(label.startswith("loss\\nReduceMean") for label in labels)
    assert not any("Assign" in label or label.startswith("gradients/") for label in labels)


def test_fused_stage_has_one_cluster_per_kernel():
    g, x, y, loss, train = model()
    with gf.Session(g, device="cpu") as sess:
        step = sess.make_callable([train, loss], feed_list=[x, y])
        program = step._plan.program
        for source in (step, g):
            dot = gf.viz.to_dot(source, "fused", fetches=None if source is step else [train, loss])
            found = clusters(dot)
            assert [name for name, _ in found] == [k.name for k in program.kernels]
            ids = nodes(dot)
            for (name, members), kernel in zip(found, program.kernels):
                shown = {ids[n].split("\\n")[0] for n in members}
                assert shown <= {op.name for op in kernel.nodes}, name
            in_clusters = [n for _, members in found for n in members]
            assert len(in_clusters) == len(set(in_clusters))  # an op is drawn in one kernel only


def test_large_scopes_collapse_and_one_scope_can_be_shown():
    g, *_ = model()
    dot = gf.viz.to_dot(g, "grad", collapse=5)
    assert re.search(r'"scope:gradients" \[label="gradients/ \(\d+ ops\)"', dot)
    assert not any(label.startswith("gradients/") for label in nodes(dot).values())
    only = gf.viz.to_dot(g, "grad", scope="dense")
    assert all(label.startswith("dense/") for label in nodes(only).values())
    assert 'label="x", shape=plaintext' in only  # an input from outside the scope
    with pytest.raises(VizError, match="no op under scope 'nope'"):
        gf.viz.to_dot(g, "grad", scope="nope")


def test_bad_arguments_are_clear():
    g, *_ = model()
    with pytest.raises(VizError, match="unknown stage 'fusedd'"):
        gf.viz.to_dot(g, "fusedd")
    with pytest.raises(VizError, match="no tensor or op named 'nope:0'"):
        gf.viz.to_dot(g, "optimized", fetches=["nope:0"])
    with pytest.raises(VizError, match=r"\.svg, \.png"):
        gf.viz.render("digraph {}", "out.txt")


def test_missing_graphviz_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(VizError, match="apt-get install graphviz"):
        gf.viz.render("digraph { a }", str(tmp_path / "a.svg"))
    assert gf.viz.render("digraph { a }", str(tmp_path / "a.dot")) == str(tmp_path / "a.dot")


def png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read(32)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("stage", gf.viz.STAGES)
def test_each_stage_renders_to_png_and_svg(stage, tmp_path):
    g, x, y, loss, train = model()
    png = gf.viz.draw(g, str(tmp_path / f"{stage}.png"), stage=stage, fetches=[train, loss])
    width, height = png_size(png)
    assert 100 < width < 20000 and 100 < height < 20000
    svg = gf.viz.draw(g, str(tmp_path / f"{stage}.svg"), stage=stage, fetches=[train, loss])
    text = open(svg).read()
    assert "<svg" in text and "graphviz version" not in text and "dense/relu" in text


def test_dot_text_is_deterministic():
    texts = set()
    for _ in range(2):
        g, x, y, loss, train = model()
        texts.add(gf.viz.to_dot(g, "fused", fetches=[train, loss]))
    assert len(texts) == 1
