"""docs/tour.md and its pictures are what `python -m graphflow.tour` generates now."""
import os
import shutil

from graphflow import tour

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def test_the_committed_tour_is_up_to_date():
    assert tour.stale(DOCS) == [], "run python -m graphflow.tour and commit docs/tour.md, docs/tour/"


def test_every_picture_is_committed_and_linked():
    text = open(os.path.join(DOCS, "tour.md")).read()
    for stage in ("built", "grad", "optimized", "fused"):
        assert f"](tour/{stage}.svg)" in text
        svg = open(os.path.join(DOCS, "tour", f"{stage}.svg")).read()
        assert "<svg" in svg and "graphviz version" not in svg
    assert "/work/" not in text and os.path.expanduser("~") + "/" not in text  # no absolute paths


def test_a_changed_tour_is_found_stale(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    with open(docs / "tour.md", "a") as f:
        f.write("an edit by hand\n")
    (docs / "tour" / "fused.dot").write_text("digraph {}\n")
    assert tour.stale(str(docs)) == ["tour.md", os.path.join("tour", "fused.dot")]
