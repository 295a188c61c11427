"""Dumped kernels: each standalone .cu carries only the helpers its kernel uses and compiles
alone with nvcc; the manifest's shared_bytes is a block's true shared memory (ptxas's figure).
Both failed before: every file carried every helper of its emitter (gf_sigmoid beside an add),
and shared_bytes counted only dynamic shared memory (0 beside ptxas's 17408 for a GEMM)."""
import json
import re
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest
from graphflow.codegen import ctext
from graphflow.codegen import dump as dump_module
from graphflow.codegen.compile import assemble, emit_kernels
from graphflow.codegen.dump import KernelInfo, dump_program, ptxas_usage, standalone_source

import graphflow as gf
from graphflow.passes import PIPELINE, lower, run_passes

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")


def _model():
    """One op of each helper family, unfused: elementwise, reductions, rows, random, GEMM."""
    x = gf.placeholder(gf.float32, [None, 40], name="x")
    w = gf.constant(np.linspace(-1, 1, 40 * 70).reshape(40, 70).astype(np.float32), name="w")
    ops = {
        "add": gf.add(x, 1.0, name="add"),
        "sigmoid": gf.sigmoid(x, name="sig"),
        "argmax": gf.argmax(x, 1, name="am"),
        "softmax": gf.nn.softmax(x, name="sm"),
        "normal": gf.random_normal([3, 5], seed=4, name="rn"),
        "sum": gf.reduce_sum(x, 1, name="rs"),
        "gemm": gf.matmul(x, w, name="mm"),
        "moments": gf.nn.moments(x, [1])[1],
    }
    return x, ops


def _defines(text: str, name: str) -> bool:
    """Whether `text` defines the helper `name` (a function, or a struct template)."""
    return bool(re.search(rf"(struct\s+{name}\b|\b{name}\s*(<[^<>()]*>)?\s*\([^;]*\)\s*\{{)", text))


# helper -> must it be in the file of this kernel? (by hand, from the helpers' source)
EXPECTED = {
    "add": {"gf_sigmoid": False, "gf_ipow": False, "gf_floordiv": False, "gf_red_sum": False},
    "sigmoid": {"gf_sigmoid": True, "gf_ipow": False, "gf_floordiv": False},
    # gf_red_arg's identity calls gf_red_lowest/highest; its acc is gf_red_argpair
    "argmax": {"gf_red_arg": True, "gf_red_argpair": True, "gf_red_lowest": True,
               "gf_red_highest": True, "gf_red_block": True, "gf_red_sum": False,
               "gf_scan_block": False, "gf_sigmoid": False},
    # the max pass combines with gf_red_shift (whose identity is gf_red_lowest), the sum with
    # gf_red_sum
    "softmax": {"gf_red_sum": True, "gf_red_shift": True, "gf_red_max": False, "gf_row_exp": True,
                "gf_red_lowest": True, "gf_row_sqrt": False, "gf_red_arg": False},
    # gf_normal draws with gf_philox4x64, which returns a gf_philox4
    "normal": {"gf_normal": True, "gf_philox4x64": True, "gf_philox4": True,
               "gf_uniform_f": False, "gf_truncated_normal": False},
    "sum": {"gf_red_sum": True, "gf_red_block": True, "gf_red_max": False, "gf_red_arg": False},
}


def test_standalone_files_carry_only_the_helpers_their_kernel_uses(tmp_path):
    x, ops = _model()
    with gf.Session(device="cpu", optimize=False) as s:
        f = s.make_callable(list(ops.values()), [x])
        f(np.ones((2, 40), np.float32))
        f.dump(str(tmp_path))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    file_of = {}
    for k in manifest["kernels"]:
        for node in k["nodes"]:
            file_of.setdefault(node, k["file"])
    for key, node in [("add", "add"), ("sigmoid", "sig"), ("argmax", "am"), ("softmax", "sm"),
                      ("normal", "rn"), ("sum", "rs")]:
        text = (tmp_path / file_of[node]).read_text()
        for helper, wanted in EXPECTED[key].items():
            assert _defines(text, helper) == wanted, (key, helper, text)
        assert text.count("__global__") == 1
    # the comment stays at the top, before the helpers and the kernel
    text = (tmp_path / file_of["sig"]).read_text()
    assert text.index("computes sig (Sigmoid)") < text.index("gf_sigmoid") < text.index("__global__")


@needs_nvcc
def test_pruned_standalone_files_compile_alone(tmp_path):
    """Every kernel of both schedules (cpu and GPU), each file on its own, with nvcc."""
    x, ops = _model()
    fetches = list(ops.values())
    lowered = _lowered(fetches, [x])
    files = []
    for device in ("cpu", "cuda"):
        _, _, kernels = emit_kernels(lowered, device)
        for k in kernels:
            if k.host is None:
                path = tmp_path / f"{device}_{k.name}.cu"
                path.write_text(standalone_source(k))
                files.append(str(path))
    assert len(files) >= 12 and any("combo_" in f for f in files)  # combined launches too
    procs = [subprocess.Popen([NVCC, "-arch=sm_80", "-cubin"] + part, cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for part in (files[0::2], files[1::2])]
    for p in procs:
        out = p.communicate()[0]
        assert p.returncode == 0, out[-5000:]


def _lowered(fetches, feeds):
    order = gf.get_default_graph().subgraph_order([t.op for t in fetches], set(feeds))
    return run_passes(lower(order, fetches, tuple(feeds)), PIPELINE)


def _gpu_program(fetches, feeds):
    """A stand-in for a compiled cuda Program (no GPU here): the GPU schedule's kernels."""
    _, _, kernels = emit_kernels(_lowered(fetches, feeds), "cuda")
    infos = [KernelInfo(k.name, [o.name for op in k.nodes for o in op.origins], (), (), 0, 0, 0, 0)
             for k in kernels]
    return SimpleNamespace(device="cuda", kernels=kernels, source=assemble(kernels),
                           kernel_infos=lambda: infos)


def _gpu_fetches():
    x, ops = _model()
    xd = gf.placeholder(gf.float64, [None, 33], name="xd")
    extra = [gf.cumsum(xd, 1), gf.transpose(xd), gf.argmax(xd, 0), gf.nn.log_softmax(xd),
             gf.nn.layer_norm(xd, gf.ones([33], gf.float64), gf.zeros([33], gf.float64)),
             gf.matmul(xd, gf.ones([33, 9], gf.float64))]
    return list(ops.values()) + extra, [x, xd]


def test_manifest_shared_bytes_without_ptxas(tmp_path, monkeypatch):
    """Counted from the kernels' own declarations, figures worked out by hand."""
    monkeypatch.setattr(dump_module, "ptxas_usage", lambda path: {})
    fetches, feeds = _gpu_fetches()
    dump_program(_gpu_program(fetches, feeds), str(tmp_path))
    kernels = json.loads((tmp_path / "manifest.json").read_text())["kernels"]
    gemm = next(k for k in kernels if "mm" in k["nodes"])
    # float32 64x64x16 tiles, double-buffered, rows padded by 4: As and Bs [2][16][64 + 4]
    assert gemm["shared_bytes"] == 2 * (2 * 16 * (64 + 4) * 4) == 17408, gemm
    assert gemm["dynamic_shared_bytes"] == 0
    # a float32 reduction: 256 partial sums of 4 bytes; argmax: 256 (float, long long) pairs
    assert [k["shared_bytes"] for k in kernels if "reduce_sum" in k["name"]] == [256 * 4]
    am = [k for k in kernels if k["name"].startswith("argmax")]
    assert am and all(k["shared_bytes"] == 256 * 16 for k in am)
    assert all(k["shared_bytes"] == 0 for k in kernels if k["name"].startswith("add"))


@needs_nvcc
def test_static_shared_bytes_agree_with_ptxas(tmp_path):
    """GEMM (float32, float64), reductions, rows, scan and transpose kernels of the GPU schedule:
    the bytes counted from each kernel's declarations equal ptxas's smem."""
    fetches, feeds = _gpu_fetches()
    program = _gpu_program(fetches, feeds)
    (tmp_path / "gpu.cu").write_text(program.source)
    usage = ptxas_usage(str(tmp_path / "gpu.cu"))
    kernels = [k for k in program.kernels if k.host is None]
    assert {k.name for k in kernels} <= set(usage)
    assert sum(k.name.startswith("gemm") for k in kernels) == 2
    assert sum(usage[k.name]["shared_bytes"] > 0 for k in kernels) >= 8
    for k in kernels:
        assert k.static_shared_bytes == usage[k.name]["shared_bytes"], k.name
    # and the dumped manifest says the same, beside ptxas's figure
    dump_program(program, str(tmp_path / "dump"))
    for entry in json.loads((tmp_path / "dump" / "manifest.json").read_text())["kernels"]:
        assert entry["shared_bytes"] == entry["ptxas"]["shared_bytes"], entry


@needs_nvcc
def test_cpu_dump_manifest_shared_bytes_match_ptxas(tmp_path):
    """The cpu schedules' reductions declare shared arrays they never read (their block-wide
    step is the identity); ptxas drops them and the manifest agrees with ptxas."""
    x, ops = _model()
    with gf.Session(device="cpu") as s:
        f = s.make_callable(list(ops.values()), [x])
        f(np.ones((3, 40), np.float32))
        f.dump(str(tmp_path))
    for entry in json.loads((tmp_path / "manifest.json").read_text())["kernels"]:
        if "file" in entry:
            assert entry["shared_bytes"] == entry["ptxas"]["shared_bytes"], entry


def test_shared_bytes_of_a_custom_source_count_only_the_called_function():
    """A custom op's source sits in one namespace; only the functions its kernel calls count."""
    helpers = """
// custom op source
namespace gf_custom_1 {
__device__ void first(float* y) {
    __shared__ double buf[64];
    y[0] = buf[threadIdx.x];
}
__device__ void second(float* y) {
    __shared__ float tile[16][17];  // padded rows
    y[0] = tile[threadIdx.x][0];
}
}  // namespace gf_custom_1
"""
    assert ctext.static_shared_bytes("gf_custom_1::second(out);", helpers) == 16 * 17 * 4
    assert ctext.static_shared_bytes("gf_custom_1::first(out);", helpers) == 64 * 8
    assert ctext.static_shared_bytes("__shared__ float s[2 * 32];", "") == 256
    assert ctext.static_shared_bytes("__shared__ float s[TILE];", "") is None  # not guessed
    kept = ctext.used_helpers(helpers, "gf_custom_1::second(out);")
    assert kept.strip().endswith("}  // namespace gf_custom_1")  # a source is kept whole
