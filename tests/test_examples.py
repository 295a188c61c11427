"""Each example's fast mode, on `reference` and `cpu`: it learns (the loss falls clearly, the metric
rises well above chance). Plus micrograd's README expression and its gradients."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import graphflow as gf

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)
DEVICES = ["reference", "cpu"]

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")


def run_example(module: str, *argv: str) -> dict:
    return __import__(module).main(list(argv))


@pytest.mark.parametrize("device", DEVICES)
def test_train_digits_learns(device, capsys):
    result = run_example("train_digits", "--fast", "--device", device)
    assert result["losses"][-1] < 0.5 * result["losses"][0]
    assert result["accuracy"] > 0.8  # chance is 10%
    assert capsys.readouterr().out.splitlines()[-1].startswith("test accuracy: ")


@pytest.mark.parametrize("device", DEVICES)
def test_moons_mlp_matches_micrograd(device, capsys):
    """Same data, same weights, same float64 arithmetic: micrograd's own printed losses."""
    result = run_example("moons_mlp", "--fast", "--device", device, "--plot", "")
    assert result["losses"][0] == pytest.approx(0.8958441028683222, rel=1e-9)  # demo.ipynb
    assert result["losses"][19] == pytest.approx(0.1845374874688392, rel=1e-9)  # "step 19 loss"
    assert result["accuracy"] > 0.8  # chance is 50%
    assert capsys.readouterr().out.splitlines()[-1].startswith("training accuracy: ")


@pytest.mark.parametrize("device", DEVICES)
def test_micrograd_readme_expression(device):
    """micrograd's README example in float64: g and its gradients as micrograd prints them."""
    a = gf.placeholder(gf.float64, [], name="a")
    b = gf.placeholder(gf.float64, [], name="b")
    relu = gf.nn.relu
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + relu(b + a)
    d += 3 * d + relu(b - a)
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    grads = gf.gradients(g, [a, b])
    with gf.Session(device=device) as sess:
        g_val, da, db = sess.run([g, *grads], {a: -4.0, b: 2.0})
    assert round(float(g_val), 4) == 24.7041
    assert round(float(da), 4) == 138.8338
    assert round(float(db), 4) == 645.5773


@pytest.mark.parametrize("device", DEVICES)
def test_linear_regression_finds_least_squares(device, capsys):
    result = run_example("linear_regression", "--fast", "--device", device)
    assert result["losses"][-1] < 0.1 * result["losses"][0]
    np.testing.assert_allclose(result["fitted"], result["exact"], atol=0.01)  # np.polyfit's line
    assert capsys.readouterr().out.splitlines()[-1].startswith("np.polyfit: slope ")


@pytest.mark.parametrize("device", DEVICES)
def test_cnn_digits_learns(device, capsys):
    result = run_example("cnn_digits", "--fast", "--device", device)
    assert result["losses"][-1] < 0.6 * result["losses"][0]
    assert result["accuracy"] > 0.7  # chance is 10%
    assert capsys.readouterr().out.splitlines()[-1].startswith("test accuracy: ")
