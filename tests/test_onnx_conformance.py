"""The ONNX node test cases graphflow claims (tests/onnx_manifest.json) against the expected
outputs shipped with the onnx wheel: all of them on reference, a sample covering every claimed
op on cpu (the full cpu sweep is marked slow). Regenerate the manifest with
`python benchmarks/onnx_conformance.py --write-manifest tests/onnx_manifest.json`."""
import json
import os
import sys

import numpy as np
import pytest

import graphflow as gf

onnx = pytest.importorskip("onnx")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import onnx_conformance as conf  # noqa: E402

MANIFEST = os.path.join(os.path.dirname(__file__), "onnx_manifest.json")


@pytest.fixture(scope="module")
def claimed():
    with open(MANIFEST) as f:
        manifest = json.load(f)
    cases = {c.name: c for c in conf.load_cases(names=list(manifest["cases"]))}
    if not cases:
        pytest.skip(f"none of the claimed cases ship with onnx {onnx.__version__}")
    return manifest["cases"], cases


def _failures(cases, device):
    bad = []
    for case in cases:
        gf.reset_default_graph()
        outcome, detail = conf.run_case(case, device)
        if outcome != "passed":
            bad.append(f"{case.name}: {outcome} {detail[:200]}")
    return bad


def cpu_sample(ops_by_case: dict, available) -> list[str]:
    """Few cases that together use every claimed op (greedy set cover, small cases first)."""
    todo = {op for name in available for op in ops_by_case[name]}
    chosen = []
    names = sorted(available, key=lambda n: (len(ops_by_case[n]), n))
    while todo:
        best = max(names, key=lambda n: len(todo & set(ops_by_case[n])))
        chosen.append(best)
        todo -= set(ops_by_case[best])
    return chosen


def test_manifest_is_large_and_names_ops(claimed):
    ops_by_case, cases = claimed
    assert len(ops_by_case) > 800
    for name in ("test_gemm_default_no_bias", "test_conv_with_strides_padding",
                 "test_layer_normalization_4d_axis1", "test_attention_4d"):
        assert name in ops_by_case


def test_claimed_cases_pass_on_reference(claimed):
    _, cases = claimed
    assert _failures(cases.values(), "reference") == []


def test_claimed_ops_pass_on_cpu_sample(claimed):
    ops_by_case, cases = claimed
    sample = cpu_sample(ops_by_case, cases)
    assert len(sample) < 120
    assert _failures([cases[n] for n in sample], "cpu") == []


@pytest.mark.slow
def test_claimed_cases_pass_on_cpu(claimed):
    _, cases = claimed
    assert _failures(cases.values(), "cpu") == []


def test_resize_with_static_scales_matches_the_shipped_outputs():
    """Resize's node tests feed scales/sizes at run time (refused: graphflow needs static
    shapes); given as initializers, graphflow must reproduce the shipped outputs."""
    from onnx import numpy_helper
    checked = 0
    for case in conf.load_cases(keyword="test_resize_"):
        model = onnx.ModelProto()
        model.CopyFrom(conf.case_model(case))
        (inputs, expected), = conf.case_data(case)
        names = [i.name for i in model.graph.input]
        for name, value in list(zip(names, inputs))[1:]:
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        del model.graph.input[1:]
        gf.reset_default_graph()
        try:
            m = gf.onnx.import_model(model)
        except gf.errors.UnsupportedOpError:
            continue
        got = m.run({names[0]: inputs[0]}, device="reference")
        assert conf.same(next(iter(got.values())), expected[0]) is None, case.name
        checked += 1
    assert checked >= 25
