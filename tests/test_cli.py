"""The `graphflow` console script, run as a subprocess: every command, --help, bad arguments."""
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import graphflow as gf
from graphflow import registry

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "graphflow"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "graphflow.cli"]
COMMANDS = ["show", "kernels", "stats", "run", "ops"]


def cli(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GRAPHFLOW_DUMP_DIR", None)
    env.pop("GRAPHFLOW_PROFILE", None)
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A small saved model: y = relu(x * 2 + 1) (one fused kernel, three unfused) and a loss."""
    folder = tmp_path_factory.mktemp("cli")
    g = gf.Graph()
    with g.as_default():
        x = gf.placeholder(gf.float32, [None, 3], name="x")
        w = gf.Variable(gf.ones([3]), name="w")
        y = gf.nn.relu(x * 2.0 + 1.0, name="y")
        gf.reduce_sum(y * w, name="loss")
        gf.global_variables_initializer()
    return Path(gf.io.save_graph(g, str(folder / "model.json")))


def test_the_console_script_is_installed():
    assert SCRIPT.exists(), "pip install -e . installs the graphflow script ([project.scripts])"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command):
    proc = cli(*([command] if command else []), "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: graphflow" + (f" {command}" if command else ""))


@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required: COMMAND"),
    (["draw"], "invalid choice: 'draw'"),
    (["show", "{graph}"], "required: -o/--output"),
    (["show", "{graph}", "--stage", "lowered", "-o", "a.svg"], "invalid choice: 'lowered'"),
    (["show", "{graph}", "--fetch", "los:0", "-o", "a.svg"], "no tensor named 'los:0'; did you mean loss:0"),
    (["show", "missing.json", "-o", "a.svg"], "no such graph file: missing.json"),
    (["show", "{graph}", "--scope", "nope", "-o", "a.svg"], "--scope nope: no op under that scope"),
    (["kernels", "{graph}", "-o", "out"], "required: --fetch"),
    (["stats", "{graph}", "--fetch", "loss:0"],
     "placeholder 'x' has shape [None, 3]: give its size with --batch"),
    (["stats", "{graph}", "--fetch", "loss:0", "--feed-shape", "x:2x3"], "write NAME=D1,D2"),
    (["stats", "{graph}", "--fetch", "loss:0", "--feed-shape", "x=2,4"], "does not fit its shape [None, 3]"),
    (["stats", "{graph}", "--fetch", "loss:0", "--batch", "two"], "invalid int value: 'two'"),
    (["run", "missing_script.py"], "no such script: missing_script.py"),
    (["ops", "--all"], "unrecognized arguments: --all"),
])
def test_bad_arguments_give_one_line_and_status_2(saved, tmp_path, args, message):
    proc = cli(*[a.format(graph=saved) for a in args], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphflow"), proc.stderr
    assert message in lines[0]


def test_a_corrupt_graph_file_is_a_bad_argument(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 1, "ops": [')
    proc = cli("show", bad, "-o", tmp_path / "a.dot")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "cannot load" in proc.stderr


@pytest.mark.parametrize("stage", gf.viz.STAGES)
def test_show_writes_each_stage(saved, tmp_path, stage):
    out = tmp_path / f"{stage}.dot"
    proc = cli("show", saved, "--stage", stage, "-o", out)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.startswith("digraph graphflow {") and 'label="y\\nRelu\\n[?, 3] float32"' in text
    if stage == "fused":  # without --fetch: every op nothing consumes (loss and init)
        assert len(re.findall(r"subgraph cluster_", text)) >= 2
    if shutil.which("dot"):
        svg = tmp_path / f"{stage}.svg"
        assert cli("show", saved, "--stage", stage, "-o", svg).returncode == 0
        assert "<svg" in svg.read_text()


def test_kernels_writes_cuda_files_and_manifest(saved, tmp_path):
    proc = cli("kernels", saved, "--fetch", "y:0", "-o", tmp_path / "k")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "k" / "manifest.json").read_text())
    assert len(manifest["kernels"]) == 1  # mul, add and relu fuse into one kernel
    kernel = manifest["kernels"][0]
    assert set(kernel["nodes"]) == {"mul", "add", "y"}
    assert "__global__" in (tmp_path / "k" / kernel["file"]).read_text()
    assert (tmp_path / "k" / "graph.cu").exists()


def test_stats_compares_optimized_and_not(saved):
    proc = cli("stats", saved, "--fetch", "y:0", "--batch", "5")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[1:]}
    assert proc.stdout.splitlines()[0].split() == ["optimized", "not", "optimized"]
    assert rows["kernels"] == ["1", "3"]  # relu(x * 2 + 1): fused, or one kernel per op
    # x and y are 5*3 floats (60 bytes), the constants 4 bytes each: the fused kernel reads x and
    # writes y once (the constants are literals in its code); unfused, each of 3 kernels reads
    # and writes 60 bytes, two of them a constant too
    assert rows["bytes_moved"] == [str(60 + 60), str(3 * 120 + 8)]
    shaped = cli("stats", saved, "--fetch", "loss:0", "--feed-shape", "x=4,3")
    assert shaped.returncode == 0 and "peak_memory_bytes" in shaped.stdout


def test_run_sets_dumping_and_profiling(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import sys
        import numpy as np
        import graphflow as gf
        x = gf.placeholder(gf.float32, [None, 3], name="x")
        y = gf.nn.relu(x - 1.0, name="y")
        with gf.Session(device="cpu") as sess:
            print("result", sess.run(gf.reduce_sum(y), {x: np.full((2, 3), 3.0)}), *sys.argv[1:])
    """))
    proc = cli("run", script, "--dump-kernels", tmp_path / "dumps", "--profile", "--", "a1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "result 12.0 a1"
    assert "graphflow profile:" in proc.stderr and "GB/s" in proc.stderr
    manifests = list((tmp_path / "dumps").glob("*/manifest.json"))
    assert len(manifests) == 1


def test_run_passes_the_scripts_exit_status(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import sys\nsys.exit(3)\n")
    assert cli("run", script).returncode == 3


def test_ops_lists_every_op_with_devices():
    proc = cli("ops")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(registry.OPS)
    table = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    assert table["MatMul"] == "reference, cpu, cuda"
    assert set(table) == set(registry.OPS)
