"""docs/ops.md is generated from the op registry and kept up to date."""
import functools

import numpy as np

import graphflow as gf
from graphflow import opdocs, registry


def test_docs_ops_md_matches_the_registry(tmp_path):
    with open(opdocs.DOCS_PATH) as f:
        committed = f.read()
    assert committed == opdocs.generate(), "docs/ops.md is stale: run python -m graphflow.opdocs"
    assert opdocs.main(["--check"]) == 0
    stale = tmp_path / "ops.md"
    stale.write_text(committed.replace("| Conv2D |", "| Conv3D |"))
    assert opdocs.main(["--check", str(stale)]) == 1


@functools.cache
def rows():
    text = opdocs.generate()
    table = [line.split(" | ") for line in text.splitlines() if line.startswith("| ")][2:]
    return {cells[0][2:]: cells for cells in table}


def test_every_op_has_a_row_with_an_example():
    table = rows()
    assert set(table) == set(registry.OPS)
    missing = [t for t, cells in table.items() if "no example" in cells[1]]
    assert not missing, f"add a use of {missing} to graphflow/opdocs.py's _probe()"


def test_rows_say_what_the_registry_says():
    table = rows()
    assert table["Conv2D"][1] == "`gf.nn.conv2d(x, filters, strides, padding, name=None)`"
    assert table["Conv2D"][2] == "x, w; strides, padding"
    assert table["Conv2D"][3] == "float16, float32, float64"
    assert table["LogicalAnd"][3] == "bool"
    assert table["Less"][4] == "none" and table["Exp"][4] == "yes"
    assert table["GatherGrad"][1] == "in gradients of Gather"
    assert table["Exp"][5] == "reference, cpu, cuda |"
    # the probe graph is private: the default graph is untouched
    assert gf.get_default_graph().get_operations() == []
    assert np.all([c[5].startswith("reference") for c in table.values()])
