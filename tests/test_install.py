"""The package installs as `graphflow` with `graphflow.codegen` inside: a user's own
codegen.py never shadows it, and a plain (non-editable) install runs compiled graphs."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
import numpy as np, graphflow as gf
x = gf.placeholder(gf.float32, [None])
with gf.Session(device="cpu") as s:
    print(s.run(gf.exp(x) + 1.0, {x: np.zeros(3, np.float32)}).tolist())
import graphflow.codegen.devices as d
print(d.__file__)
"""


def _run(cwd, env=None):
    return subprocess.run([sys.executable, "-c", SCRIPT], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


def test_a_users_codegen_module_does_not_shadow_graphflows(tmp_path):
    (tmp_path / "codegen.py").write_text("raise ImportError('the user module was imported')\n")
    (tmp_path / "codegen").mkdir()  # a package of that name too
    (tmp_path / "codegen" / "__init__.py").write_text("")
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "[2.0, 2.0, 2.0]"


def test_non_editable_install_runs_a_compiled_graph(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                            str(target), str(REPO)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    assert (target / "graphflow" / "codegen" / "devices" / "cuda_shim.h").exists()
    assert (target / "graphflow" / "codegen" / "devices" / "mpi_collectives.c").exists()
    assert (target / "graphflow" / "codegen" / "devices" / "emu_runtime.so").exists()  # setup.py
    assert (target / "graphflow" / "codegen" / "devices" / "pch" / "cuda_shim.h.gch").exists()
    assert not (target / "codegen").exists()  # never a top-level package named codegen
    # every package of the source tree is installed (the list in pyproject.toml is explicit)
    source = {p.parent.relative_to(REPO) for p in REPO.glob("graphflow/**/__init__.py")}
    source |= {Path("graphflow") / p.parent.relative_to(REPO) for p in REPO.glob("codegen/**/__init__.py")}
    installed = {p.parent.relative_to(target) for p in target.glob("graphflow/**/__init__.py")}
    assert source <= installed, sorted(map(str, source - installed))
    env = dict(os.environ, PYTHONPATH=str(target), GRAPHFLOW_CACHE_DIR=str(tmp_path / "cache"))
    work = tmp_path / "elsewhere"
    work.mkdir()
    result = _run(work, env)
    assert result.returncode == 0, result.stderr
    value, where = result.stdout.splitlines()
    assert value == "[2.0, 2.0, 2.0]" and where.startswith(str(target))
    # the runtime built at install time was used: the compile cache holds only the kernels
    built = [p for p in (tmp_path / "cache").rglob("*.cu") if "#define GF_EMU_RUNTIME_IMPL" in p.read_text()]
    assert built == [] and list((tmp_path / "cache").rglob("*.cu"))
