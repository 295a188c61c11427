"""The cpu device end to end: elementwise kernels, variables, random numbers, dumps, errors."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from graphflow.codegen.emit.elementwise import SCALAR

import graphflow as gf
from graphflow.errors import CompileError, DeviceError, ShapeError

rng = np.random.default_rng(1)


def both(fetches, feeds=None):
    """Run on cpu and reference; return (cpu values, reference values)."""
    with gf.Session(device="cpu") as s:
        cpu = s.run(fetches, feeds)
    with gf.Session(device="reference") as s:
        ref = s.run(fetches, feeds)
    return cpu, ref


def assert_close(cpu, ref, rtol=2e-6, atol=1e-6):
    for c, r in zip(cpu, ref):
        assert c.dtype == r.dtype and c.shape == r.shape
        np.testing.assert_allclose(c, r, rtol=rtol, atol=atol)


UNARY_FLOAT = [gf.negative, gf.abs, gf.square, gf.exp, gf.sin, gf.cos, gf.tanh, gf.sigmoid,
               gf.erf, gf.nn.relu, gf.nn.gelu, lambda v: gf.nn.gelu(v, approximate=True),
               gf.nn.silu, gf.nn.softplus, gf.sign, gf.floor, gf.ceil, gf.round, gf.nn.elu]
BINARY = [gf.add, gf.subtract, gf.multiply, gf.divide, gf.maximum, gf.minimum, gf.equal,
          gf.not_equal, gf.less, gf.less_equal, gf.greater, gf.greater_equal]


@pytest.mark.parametrize("dtype", [gf.float32, gf.float64])
def test_every_float_elementwise_op_matches_reference(dtype):
    x = gf.placeholder(dtype, [None, 17], name="x")
    y = gf.placeholder(dtype, [1, 17], name="y")
    pos = gf.abs(x) + 0.5
    fetches = [f(x) for f in UNARY_FLOAT] + [f(x, y) for f in BINARY]
    fetches += [gf.sqrt(pos), gf.rsqrt(pos), gf.log(pos), gf.log1p(pos - 1.2), pos ** y,
                gf.where(x > y, x, y),
                gf.cast(x * 10.0, gf.int32), gf.cast(x, gf.bool_), gf.add_n([x, x * 2.0, x]),
                gf.zeros_like(x) + 3.0, gf.broadcast_to(y, [4, 17])]
    feeds = {x: rng.standard_normal((5, 17)) * 3, y: rng.standard_normal((1, 17))}
    cpu, ref = both(fetches, feeds)
    assert_close(cpu, ref, rtol=2e-6 if dtype is gf.float32 else 1e-13, atol=1e-6)


def test_integer_and_bool_elementwise():
    a = gf.placeholder(gf.int32, [3, 1])
    b = gf.placeholder(gf.int64, [4])
    fetches = [a + 3, a * a - 1, a // 3, gf.abs(a), gf.maximum(a, 0), a ** 3, -a,
               gf.cast(a, gf.float32), gf.logical_and(a > 0, a < 5), gf.logical_or(a > 3, a < -3),
               b // gf.constant(np.int64(-4)), gf.sign(b)]
    feeds = {a: np.array([[-7], [0], [9]]), b: np.array([-9, -8, 7, 0])}
    cpu, ref = both(fetches, feeds)
    for c, r in zip(cpu, ref):
        assert c.dtype == r.dtype
        np.testing.assert_array_equal(c, r)


def test_broadcasting_shapes():
    x = gf.placeholder(gf.float32, [3, 1, 5])
    y = gf.placeholder(gf.float32, [4, 1])
    s = gf.placeholder(gf.float32, [])
    feeds = {x: rng.standard_normal((3, 1, 5)), y: rng.standard_normal((4, 1)), s: 2.5}
    cpu, ref = both([x + y, x * s, s - y, gf.where(gf.constant(np.array([True, False, True,
                                                                         True, False])), x, y)],
                    feeds)
    assert_close(cpu, ref)


def test_one_module_serves_every_batch_size():
    x = gf.placeholder(gf.float32, [None, 3])
    y = gf.tanh(x) * 2.0 + 1.0
    with gf.Session(device="cpu") as s:
        for n in (1, 7, 4099, 2):
            v = rng.standard_normal((n, 3)).astype(np.float32)
            np.testing.assert_allclose(s.run(y, {x: v}), np.tanh(v) * 2 + 1, rtol=1e-6, atol=1e-6)
        assert s.compile_count == 1


def test_random_numbers_match_reference_bit_for_bit():
    ops = [gf.random_uniform([7, 5], seed=11), gf.random_normal([33], seed=12),
           gf.truncated_normal([65], seed=13), gf.random_uniform([4], dtype=gf.float64, seed=1),
           gf.random_normal([9], dtype=gf.float64, seed=2),
           gf.nn.dropout(gf.ones([300]), rate=0.3, seed=5)]
    with gf.Session(device="cpu") as s:
        cpu = s.run(ops) + [s.run(ops[-1])]
    with gf.Session(device="reference") as s:
        ref = s.run(ops) + [s.run(ops[-1])]
    for c, r in zip(cpu[:1] + cpu[3:4] + cpu[5:], ref[:1] + ref[3:4] + ref[5:]):
        np.testing.assert_array_equal(c, r)  # integer-derived: identical
    for c, r in zip(cpu[1:3] + cpu[4:5], ref[1:3] + ref[4:5]):
        np.testing.assert_allclose(c, r, rtol=1e-6, atol=1e-7)  # libm vs numpy log/cos
    assert not np.array_equal(cpu[5], cpu[6])  # dropout draws anew each run


def test_variables_live_on_the_device():
    v = gf.Variable(np.arange(3, dtype=np.float32), name="v")
    step = v.assign(v * 2.0 + 1.0)
    with gf.Session(device="cpu") as s:
        s.run(v.initializer)
        before, _ = s.run([v, step])
        np.testing.assert_array_equal(before, [0, 1, 2])  # read before the update
        s.run(step)
        np.testing.assert_array_equal(s.run(v), [3, 7, 11])
        with pytest.raises(gf.errors.GraphflowError, match="before it is initialized"):
            s.run(gf.Variable(1.0, name="late") + 1.0)


def test_runtime_broadcast_of_a_none_dim_is_refused_not_wrong():
    x = gf.placeholder(gf.float32, [None])
    y = gf.placeholder(gf.float32, [None])
    with gf.Session(device="cpu") as s:
        with pytest.raises(ShapeError):
            s.run(x + y, {x: np.ones(1), y: np.ones(4)})


def test_kernels_are_readable_and_dumped(tmp_path):
    x = gf.placeholder(gf.float32, [None, 8], name="inputs")
    y = gf.nn.relu(x + 1.0, name="act")
    with gf.Session(device="cpu", optimize=False) as s:  # one kernel per op
        f = s.make_callable(y, [x])
        f(np.ones((2, 8), np.float32))
        assert "computes act (Relu) defined at" in f.source and __file__ in f.source
        names = [k.name for k in f.kernels]
        assert names == ["add_0", "relu_0"]
        info = f.kernels[1]
        assert info.nodes == ["act"] and info.bytes_read == info.bytes_written == 64
        assert f.stats["kernels"] == 2 and f.stats["launches"] == 2
        f.dump(str(tmp_path))
    files = sorted(os.listdir(tmp_path))
    assert files == ["add_0.cu", "graph.cu", "manifest.json", "relu_0.cu"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [k["name"] for k in manifest["kernels"]] == names
    assert (tmp_path / "relu_0.cu").read_text().count("__global__") == 1


def test_dump_dir_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHFLOW_DUMP_DIR", str(tmp_path / "dump"))
    x = gf.placeholder(gf.float32, [2])
    with gf.Session(device="cpu") as s:
        s.run(gf.exp(x), {x: np.zeros(2)})
        s.run(gf.exp(x) + 1.0, {x: np.zeros(2)})
    folders = sorted(os.listdir(tmp_path / "dump"))  # one folder per compile, never mixed
    assert len(folders) == 2 and all((tmp_path / "dump" / d / "graph.cu").exists() for d in folders)


def test_compile_error_carries_compiler_message(monkeypatch):
    import graphflow.codegen.emit.elementwise as ew
    monkeypatch.setenv("GRAPHFLOW_PLAN_CACHE", "0")  # the patched compiler runs: no kept plan
    monkeypatch.setitem(ew.SCALAR, "Exp", lambda a, t: f"undefined_function({a[0]})")
    x = gf.placeholder(gf.float32, [2])
    with gf.Session(device="cpu") as s:
        with pytest.raises(CompileError, match=r"undefined_function[\s\S]*full source"):
            s.run(gf.exp(x), {x: np.zeros(2)})


def test_cuda_device_without_pycuda_says_how_to_install():
    pytest.importorskip  # noqa: B018 - documents intent
    try:
        import pycuda  # noqa: F401
        pytest.skip("pycuda is installed here")
    except ImportError:
        pass
    with pytest.raises(DeviceError, match="pip install"):
        gf.Session(device="cuda")


def test_every_registered_op_can_be_compiled():
    from graphflow.codegen.compile import ALIAS_OPS, HOST_OPS
    from graphflow.codegen.emit import load_all

    from graphflow.registry import OPS
    missing = set(OPS) - set(load_all()) - set(ALIAS_OPS) - set(HOST_OPS)
    assert not missing


def test_scalar_table_covers_every_elementwise_op():
    from graphflow.ops.elementwise import BINARY, UNARY
    assert set(UNARY) | set(BINARY) <= set(SCALAR)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_elementwise_kernels_compile_with_nvcc(tmp_path):
    xs = {d: gf.placeholder(d, [None, 5]) for d in (gf.float32, gf.float64)}
    fetches = []
    for x in xs.values():
        fetches += [f(x) for f in UNARY_FLOAT] + [f(x, x) for f in BINARY]
        fetches += [gf.sqrt(x), gf.rsqrt(x), gf.log(x), x ** x, gf.cast(x, gf.int64)]
    i = gf.placeholder(gf.int32, [3])
    fetches += [i // 2, i ** 2, gf.abs(i), gf.random_uniform([3], seed=1),
                gf.random_normal([3], dtype=gf.float64, seed=1, truncated=True)]
    with gf.Session(device="cpu") as s:
        source = s.make_callable(fetches, [xs[gf.float32], xs[gf.float64], i]).source
    path = tmp_path / "all.cu"
    path.write_text(source)
    result = subprocess.run(["nvcc", "-arch=sm_80", "-c", "-o", str(tmp_path / "all.o"),
                             str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
