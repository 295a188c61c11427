"""Every ```python block of README.md and docs/*.md runs, as written.

Each file's blocks run in order in one namespace (a later block may use names from an
earlier one), on the `cpu` device, in a temporary folder. Shell blocks are documentation.
"""
import glob
import os
import re

import pytest

import graphflow as gf

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DOC_FILES = ["README.md"] + sorted(os.path.relpath(p, ROOT)
                                   for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: str) -> list[tuple[int, str]]:
    """(first line number, code) of each ```python block."""
    with open(path) as f:
        text = f.read()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_blocks_are_found():
    blocks = python_blocks(os.path.join(ROOT, "README.md"))
    assert len(blocks) >= 2 and "import graphflow" in blocks[0][1]


@pytest.mark.parametrize("doc", DOC_FILES)
def test_python_blocks_run(doc, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_DEVICE", "cpu")
    monkeypatch.chdir(tmp_path)
    gf.reset_default_graph()
    namespace = {"__name__": "__doc_example__"}
    path = os.path.join(ROOT, doc)
    for line, code in python_blocks(path):
        # pad so tracebacks and definition sites point at the line in the .md file
        exec(compile("\n" * (line - 1) + code, path, "exec"), namespace)
