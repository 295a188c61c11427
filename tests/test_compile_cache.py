"""The compile cache: hits without recompiling, private folders only, atomic concurrent writes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from graphflow.codegen.devices import CompileFailed, cache, get_driver

REPO = Path(__file__).resolve().parents[1]

# Prints the kernel's output and how many times this process ran the compiler.
SCRIPT = """
import os, sys, time
import numpy as np
ready, go = os.environ.get("GF_READY"), os.environ.get("GF_GO")
if go:
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
from graphflow.codegen.devices import get_driver, cache
drv = get_driver("cpu")
mod = drv.SourceModule(os.environ["GF_SOURCE"])
out = drv.mem_alloc(16)
mod.get_function("fill")(out, np.int32(7), block=(4, 1, 1), grid=(1, 1))
host = np.zeros(4, np.int32)
drv.memcpy_dtoh(host, out)
print(*host, cache.stats["compiles"])
"""


def fill_source(tag: str) -> str:
    # A unique comment makes a source no earlier test has compiled.
    return (
        f"// {tag}\n__global__ void fill(int* out, int v) {{ out[threadIdx.x] = v * SCALE + threadIdx.x; }}\n"
    )


def run_script(cache_dir: Path, source: str, **env: str) -> subprocess.Popen:
    full = dict(os.environ, PYTHONPATH=str(REPO), GRAPHFLOW_CACHE_DIR=str(cache_dir), GF_SOURCE=source, **env)
    full.pop("GRAPHFLOW_EMU_SANITIZE", None)
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def fill(drv, source: str, options=None) -> np.ndarray:
    mod = drv.SourceModule(source, options=options or ["-DSCALE=3"])
    out = drv.mem_alloc(16)
    mod.get_function("fill")(out, np.int32(7), block=(4, 1, 1), grid=(1, 1))
    host = np.zeros(4, np.int32)
    drv.memcpy_dtoh(host, out)
    return host


@pytest.fixture
def drv(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_CACHE_DIR", str(tmp_path / "cache"))
    return get_driver("cpu")


def test_warm_cache_does_not_recompile(drv, tmp_path):
    source = fill_source(uuid.uuid4().hex)
    np.testing.assert_array_equal(fill(drv, source), 21 + np.arange(4))
    compiles = cache.stats["compiles"]
    np.testing.assert_array_equal(fill(drv, source), 21 + np.arange(4))
    assert cache.stats["compiles"] == compiles
    # A fresh process finds both the runtime and the module on disk.
    p = run_script(tmp_path / "cache", source.replace("SCALE", "3"))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert out.split()[:4] == ["21", "22", "23", "24"]
    p = run_script(tmp_path / "cache", source.replace("SCALE", "3"))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert out.split() == ["21", "22", "23", "24", "0"]  # no compiler run at all


def test_flags_are_part_of_the_key(drv):
    source = fill_source(uuid.uuid4().hex)
    np.testing.assert_array_equal(fill(drv, source, ["-DSCALE=3"]), 21 + np.arange(4))
    np.testing.assert_array_equal(fill(drv, source, ["-DSCALE=5"]), 35 + np.arange(4))


def test_cache_folder_is_created_private(drv, tmp_path):
    fill(drv, fill_source("private"))
    folder = tmp_path / "cache"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    libraries = list(folder.glob("*.so"))
    assert libraries and all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in libraries)


def test_xdg_cache_home_is_respected(monkeypatch, tmp_path):
    monkeypatch.delenv("GRAPHFLOW_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "graphflow"


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_folder_writable_by_others_is_not_used(monkeypatch, tmp_path, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    monkeypatch.setenv("GRAPHFLOW_CACHE_DIR", str(shared))
    with pytest.warns(cache.UnsafeCacheDirWarning, match="other users can write"):
        result = fill(get_driver("cpu"), fill_source(f"unsafe {mode}"))
    np.testing.assert_array_equal(result, 21 + np.arange(4))  # still works, from a private folder
    assert list(shared.iterdir()) == []


def test_sticky_shared_folder_is_used(monkeypatch, tmp_path):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    monkeypatch.setenv("GRAPHFLOW_CACHE_DIR", str(sticky))
    fill(get_driver("cpu"), fill_source("sticky"))
    assert list(sticky.glob("*.so"))


def test_library_others_could_have_changed_is_rebuilt(drv, tmp_path):
    source = fill_source(uuid.uuid4().hex)
    fill(drv, source)
    compiles = cache.stats["compiles"]
    for lib in (tmp_path / "cache").glob("*.so"):
        lib.chmod(0o666)
    np.testing.assert_array_equal(fill(drv, source), 21 + np.arange(4))
    assert cache.stats["compiles"] > compiles


def test_a_warm_lookup_runs_neither_the_analysis_nor_the_compiler(drv, monkeypatch):
    from graphflow.codegen.devices import emulator
    source = fill_source(uuid.uuid4().hex)
    fill(drv, source)

    def forbidden(*args, **kwargs):
        raise AssertionError("a warm lookup ran the analysis or the compiler")
    for name in ("find_kernels", "kernels_needing_fibers"):
        monkeypatch.setattr(emulator, name, forbidden)
    monkeypatch.setattr(cache.subprocess, "run", forbidden)
    np.testing.assert_array_equal(fill(drv, source), 21 + np.arange(4))


@pytest.mark.parametrize("damage", ["garbage", "library gone", "others can write it"])
def test_a_damaged_index_entry_is_rebuilt(drv, tmp_path, damage):
    source = fill_source(uuid.uuid4().hex)
    fill(drv, source)
    folder = tmp_path / "cache"
    index = next(p for p in folder.glob("*.json")
                 if json.loads(p.read_text())["facts"]["kernels"] == ["fill"])
    if damage == "garbage":
        index.write_text("{not json")
    elif damage == "library gone":
        (folder / json.loads(index.read_text())["library"]).unlink()
    else:
        index.chmod(0o666)
    np.testing.assert_array_equal(fill(drv, source), 21 + np.arange(4))
    entry = json.loads(index.read_text())  # rewritten, naming a library that is there
    assert (folder / entry["library"]).exists() and entry["facts"]["kernels"] == ["fill"]


def test_failed_compile_leaves_no_library(drv, tmp_path):
    with pytest.raises(CompileFailed):
        drv.SourceModule("__global__ void bad(float* x) { x[0] = ; }")
    folder = tmp_path / "cache"
    assert not [p for p in folder.iterdir() if ".tmp" in p.name]
    broken = [p for p in folder.glob("*.cu") if "bad(float* x)" in p.read_text()]
    assert len(broken) == 1 and not broken[0].with_suffix(".so").exists()


def test_concurrent_compiles_of_the_same_source(tmp_path):
    folder, go = tmp_path / "cache", tmp_path / "go"
    source = fill_source(uuid.uuid4().hex).replace("SCALE", "3")
    procs = [
        run_script(folder, source, GF_READY=str(tmp_path / f"ready{i}"), GF_GO=str(go)) for i in range(2)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)) and time.monotonic() < deadline:
        time.sleep(0.005)
    go.touch()  # both start compiling now, into an empty cache
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.split()[:4] == ["21", "22", "23", "24"]
    names = [p.name for p in folder.iterdir()]
    assert not [n for n in names if ".tmp" in n]
    from graphflow.codegen.devices import toolchain

    runtime = toolchain.installed_runtime(toolchain.FLAGS) is None  # else setup.py built it
    assert len([n for n in names if n.endswith(".so")]) == 1 + runtime  # each once


def test_nvcc_errors_quote_the_source(monkeypatch, tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH")
    from graphflow.codegen.devices.pycuda_driver import compile_cubin

    monkeypatch.setenv("GRAPHFLOW_CACHE_DIR", str(tmp_path))
    with pytest.raises(CompileFailed) as info:
        compile_cubin("__global__ void k(float* x) {\n  x[0] = missing_name;\n}\n", "sm_80")
    assert "missing_name" in info.value.compiler_output
    assert ">    3 |   x[0] = missing_name;" in str(info.value)  # line 3: after PyCUDA's extern "C" line


# ---- the key ignores comments; the folder is bounded ---------------------------------------


def test_a_comment_does_not_recompile(drv, tmp_path):
    source = fill_source(uuid.uuid4().hex)
    fill(drv, source)
    compiles = cache.stats["compiles"]
    commented = "// a new comment line at the top\n" + source.replace("{ out", "{ /* a block\ncomment */ out")
    np.testing.assert_array_equal(fill(drv, commented), 21 + np.arange(4))
    assert cache.stats["compiles"] == compiles
    # a change to the code itself (even inside what looks like a comment in a string) recompiles
    fill(drv, source.replace("threadIdx.x;", "threadIdx.x + 0;"))
    assert cache.stats["compiles"] == compiles + 1


def test_comments_stay_in_the_compiled_file(drv, tmp_path):
    source = "// kernel comment kept for the reader\n__global__ void broken(int* out) { out[0] = nope; }\n"
    with pytest.raises(CompileFailed) as e:
        drv.SourceModule(source)
    assert "kernel comment kept for the reader" in e.value.source_path.read_text()


def test_strip_comments_keeps_strings():
    code = cache.strip_comments('// top\nint a; /* x */ const char* s = "a//b /* c */";\n\n  // end\n')
    assert code == 'int a; const char* s = "a//b /* c */";'


def _entry(folder: Path, key: str, size: int, age: float) -> None:
    for suffix in (".so", ".cu"):
        path = folder / f"{key}{suffix}"
        path.write_bytes(b"x" * size)
        os.utime(path, (age, age))


def test_prune_removes_the_least_recently_used(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    now = time.time()
    keys = [f"{i:064x}" for i in range(5)]
    for i, key in enumerate(keys):  # keys[0] is the oldest
        _entry(folder, key, 1000, now - 100 + i)
    (folder / "notes.txt").write_text("not ours")  # a user's file in the folder is never touched
    removed = cache.prune(folder, max_mb=1000, max_files=6)
    assert removed == keys[:2]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["notes.txt"] + [f"{k}{s}" for k in keys[2:] for s in (".so", ".cu")])


def test_prune_by_size_and_keep(tmp_path, monkeypatch):
    folder = tmp_path / "c"
    folder.mkdir()
    now = time.time()
    keys = [f"{i:064x}" for i in range(3)]
    for i, key in enumerate(keys):
        _entry(folder, key, 200_000, now - 100 + i)  # 0.4 MB per entry
    monkeypatch.setenv("GRAPHFLOW_CACHE_MAX_MB", "1")
    assert cache.prune(folder, keep=keys[0]) == [keys[1]]
    assert {p.name[:64] for p in folder.iterdir()} == {keys[0], keys[2]}


def test_a_hit_is_recently_used_and_compiles_prune(drv, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    first = fill_source(uuid.uuid4().hex + "a")
    fill(drv, first)
    old = time.time() - 1000
    for path in folder.iterdir():
        os.utime(path, (old, old))
    fill(drv, first)  # a hit touches its files
    assert all(p.stat().st_mtime > old + 500 for p in folder.glob("*.so"))
    monkeypatch.setenv("GRAPHFLOW_CACHE_MAX_FILES", "2")
    second = fill_source(uuid.uuid4().hex).replace("threadIdx.x;", "threadIdx.x * 2;")
    fill(drv, second)  # over the limit: the least recently used entries go, the new one stays
    names = sorted(p.name for p in folder.iterdir() if len(p.name.split(".")[0]) == 64)
    # the new entry's library and source, and its index entry (written after the pruning)
    assert sorted(n.split(".")[1] for n in names) == ["cu", "json", "so"]
    index = json.loads((folder / next(n for n in names if n.endswith(".json"))).read_text())
    assert index["library"] in names and index["facts"]["kernels"]
    np.testing.assert_array_equal(fill(drv, second), 21 + 2 * np.arange(4))


MODEL = """
import graphflow as gf
g = gf.Graph()
with g.as_default():
    x = gf.placeholder(gf.float32, [None, 3], name="x")
    y = gf.nn.relu(x * 2.0 + 1.0)
"""


def test_a_comment_line_in_the_user_script_does_not_recompile(drv):
    def compile_model(prefix: str):
        namespace = {}
        exec(compile(prefix + MODEL, "user_script.py", "exec"), namespace)
        with __import__("graphflow").Session(namespace["g"], device="cpu") as sess:
            f = sess.make_callable(namespace["y"], feed_list=[namespace["x"]])
            return f.source, f(np.ones((2, 3), np.float32))
    source1, out1 = compile_model("")
    compiles = cache.stats["compiles"]
    source2, out2 = compile_model("# a comment line added at the top\n")
    assert source1 != source2  # the kernel comments name the new line numbers...
    assert cache.stats["compiles"] == compiles  # ...and nothing recompiles
    np.testing.assert_array_equal(out2, np.full((2, 3), 3.0, np.float32))


def test_an_initializer_of_constants_compiles_nothing(drv):
    """Variables set to constants are device-to-device copies: no compiler runs."""
    import graphflow as gf

    g = gf.Graph()
    values = [np.arange(6, dtype=np.float32).reshape(2, 3) + 0.5, np.array([3, -1], np.int64)]
    with g.as_default():
        variables = [gf.Variable(v) for v in values]
        slot = gf.Variable(np.zeros((2, 3), np.float32))  # shares its zeros with nothing else
        init = gf.global_variables_initializer()
    fill(drv, fill_source(uuid.uuid4().hex))  # the emulator's runtime is built (once) here
    with gf.Session(graph=g, device="cpu") as s:
        compiles = cache.stats["compiles"]
        s.run(init)
        assert cache.stats["compiles"] == compiles
        got = s.run(variables + [slot])
    for a, b in zip(got, values + [np.zeros((2, 3), np.float32)]):
        np.testing.assert_array_equal(a, b)


def test_a_large_program_compiles_in_parts_and_matches_reference(drv):
    """Kernels split over translation units compiled side by side (compile_parts) run as
    the single unit does: W3's gradients against the reference device."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import workloads
    from graphflow.codegen.compile import compile_parts

    import graphflow as gf

    results = {}
    for device in ("reference", "cpu"):
        g, x, y, fetches, (xv, yv), init = workloads.build("W3")
        with gf.Session(graph=g, device=device) as s:
            s.run(init)
            f = s.make_callable(fetches, feed_list=[x, y])
            results[device] = f(xv, yv)
            if device == "cpu":
                kernels = f._plan.program.kernels
    assert len(compile_parts(kernels, 2)) == 2
    np.testing.assert_allclose(results["cpu"][0], results["reference"][0], rtol=1e-5)
    for a, b in zip(results["cpu"][1], results["reference"][1]):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_an_initializer_emits_for_cuda_without_a_gpu():
    """Emitting the copies of an initializer asks no driver (dumps of the GPU schedule work
    on a machine without PyCUDA); the driver is found when the copies run."""
    from graphflow.codegen.compile import emit_kernels

    import graphflow as gf
    from graphflow.passes import PIPELINE, lower, run_passes

    g = gf.Graph()
    with g.as_default():
        gf.Variable(np.ones(3, np.float32))
        init = gf.global_variables_initializer()
    lowered = run_passes(lower(g.subgraph_order([init], set()), [init], ()), PIPELINE)
    _, _, kernels = emit_kernels(lowered, "cuda")
    assert [k.host is not None for k in kernels] == [True]


def test_an_installed_runtime_is_used_only_when_it_matches(tmp_path, monkeypatch):
    """setup.py's runtime carries the key of what it was built from; another header, compiler,
    flag set or CPU means the cpu device builds its own (into the compile cache)."""
    from graphflow.codegen.devices import toolchain

    library = tmp_path / "emu_runtime.so"
    monkeypatch.setattr(toolchain, "INSTALLED_RUNTIME", library)
    assert toolchain.installed_runtime(toolchain.FLAGS) is None  # none installed
    toolchain.build_runtime(library)
    assert toolchain.installed_runtime(toolchain.FLAGS) == library
    assert toolchain.installed_runtime(toolchain.SANITIZE_FLAGS) is None  # other flags
    monkeypatch.setattr(toolchain, "shim_hash", lambda: "another header or CPU")
    assert toolchain.installed_runtime(toolchain.FLAGS) is None


def test_the_precompiled_header_is_used_only_when_it_matches(tmp_path, monkeypatch):
    """setup.py precompiles the shim for FLAGS; a kernel unit compiles with it (g++ reports it
    used) and gives the same code as without it; another header, compiler or CPU, and other
    flags (the sanitizer's), do not use it."""
    from graphflow.codegen.devices import toolchain

    monkeypatch.setattr(toolchain, "PCH", tmp_path / "pch" / "cuda_shim.h.gch")
    assert toolchain.installed_pch() is None  # none installed
    toolchain.build_pch(tmp_path / "pch")
    assert toolchain.installed_pch() == tmp_path / "pch"
    unit = tmp_path / "unit.cu"
    unit.write_text('#include "cuda_shim.h"\nextern "C" __global__ void fill(float* out, float v) '
                    "{ out[threadIdx.x] = expf(v) * v + threadIdx.x; }\n")
    compiler, include, shim_dir = toolchain.cxx()

    def assembly(*extra):
        proc = subprocess.run([compiler, *extra, include, shim_dir, *toolchain.FLAGS, "-H", "-S",
                               "-x", "c++", "-o", "-", str(unit)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout, proc.stderr

    with_pch, used = assembly("-I", str(tmp_path / "pch"))
    without, parsed = assembly()
    assert "! " + str(toolchain.PCH) in used and "cuda_shim.h.gch" not in parsed
    assert with_pch == without
    monkeypatch.setattr(toolchain, "shim_hash", lambda: "another header or CPU")
    assert toolchain.installed_pch() is None
