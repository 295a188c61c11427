"""int8/16, uint8/16/32/64 and float16 tensors: the cpu kernels agree with the numpy
reference (and with hand-written numpy); float16 is __half in memory, computed on floats and
rounded per op as numpy's float16 loops do; the kernels compile with nvcc."""
import shutil
import subprocess

import numpy as np
import pytest

import graphflow as gf

INTS = [gf.int8, gf.int16, gf.uint8, gf.uint16, gf.uint32, gf.uint64]


def _int_graph(dt):
    a = gf.placeholder(dt, [4, 5])
    b = gf.placeholder(dt, [5])
    fetches = [a + b, a - b, a * b, gf.maximum(a, b), gf.minimum(a, b), gf.less(a, b),
               gf.equal(a, b), a + 3, gf.transpose(a), gf.concat([a, a], 0),
               gf.ops.elementwise.bitwise_and(a, b), gf.ops.elementwise.bitwise_xor(a, b),
               gf.ops.elementwise.bitwise_not(a), gf.cast(a, gf.float32),
               gf.cast(gf.cast(a, gf.float32), dt)]
    return a, b, fetches


@pytest.mark.parametrize("dt", INTS, ids=lambda d: d.name)
def test_integer_dtypes_match_the_reference_on_cpu(dt):
    rng = np.random.default_rng(0)
    info = np.iinfo(dt.np)
    hi = min(info.max, 1000)
    av = rng.integers(info.min, hi, size=(4, 5), endpoint=True).astype(dt.np)
    bv = rng.integers(max(info.min, -1000), hi, size=5, endpoint=True).astype(dt.np)
    with gf.Graph().as_default():
        a, b, fetches = _int_graph(dt)
        feeds = {a: av, b: bv}
        want = gf.Session(device="reference").run(fetches, feeds)
        got = gf.Session(device="cpu").run(fetches, feeds)
    for w, g in zip(want, got):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(got[0], av + bv)  # wraps modulo 2**bits, as numpy
    np.testing.assert_array_equal(got[2], av * bv)


def test_shifts_follow_numpy_for_wide_counts():
    from graphflow.ops.elementwise import left_shift, right_shift
    x = np.array([-8, 4, -1, 64, 1], np.int8)
    n = np.array([8, 9, 127, 1, 7], np.int8)
    with gf.Graph().as_default():
        a, b = gf.placeholder(gf.int8, [5]), gf.placeholder(gf.int8, [5])
        got = gf.Session(device="cpu").run([left_shift(a, b), right_shift(a, b)], {a: x, b: n})
    np.testing.assert_array_equal(got[0], [0, 0, 0, -128, -128])
    np.testing.assert_array_equal(got[1], [-1, 0, -1, 32, 0])


def _half_graph():
    x = gf.placeholder(gf.float16, [3, 4])
    y = gf.placeholder(gf.float16, [4])
    i = gf.placeholder(gf.int32, [2])
    fetches = [x + y, x * y - x, gf.sigmoid(x), gf.exp(x) / (y * y + 1.0), gf.maximum(x, y),
               gf.where(gf.less(x, y), x, y), gf.cast(x, gf.float64), gf.cast(x, gf.int32),
               gf.cast(gf.cast(x, gf.float32) * 3.0, gf.float16), gf.transpose(x),
               gf.concat([x, x], 1), gf.gather(x, i), x[:, 1:3]]
    return x, y, i, fetches


def test_float16_matches_the_reference_on_cpu():
    rng = np.random.default_rng(1)
    xv = rng.normal(size=(3, 4)).astype(np.float16)
    yv = rng.normal(size=4).astype(np.float16)
    with gf.Graph().as_default():
        x, y, i, fetches = _half_graph()
        feeds = {x: xv, y: yv, i: np.array([2, 0], np.int32)}
        want = gf.Session(device="reference").run(fetches, feeds)
        got = gf.Session(device="cpu").run(fetches, feeds)
    for w, g in zip(want, got):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-3,
                                   atol=1e-4)
    np.testing.assert_array_equal(got[0], xv + yv)  # one rounding per op, as numpy
    np.testing.assert_array_equal(got[1], xv * yv - xv)


def test_float16_reductions_are_refused_clearly():
    with gf.Graph().as_default():
        x = gf.placeholder(gf.float16, [3, 4])
        with pytest.raises(gf.errors.CompileError, match="float16 .* not supported"):
            gf.Session(device="cpu").run(gf.reduce_sum(x), {x: np.ones((3, 4), np.float16)})


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_small_dtype_kernels_compile_with_nvcc(tmp_path):
    with gf.Graph().as_default():
        feeds, fetches = [], []
        for dt in INTS:
            a, b, f = _int_graph(dt)
            feeds += [a, b]
            fetches += f
        x, y, i, f = _half_graph()
        feeds += [x, y, i]
        fetches += f
        with gf.Session(device="cpu") as s:
            source = s.make_callable(fetches, feeds).source
    path = tmp_path / "all.cu"
    path.write_text(source)
    result = subprocess.run(["nvcc", "-arch=sm_80", "-c", "-o", str(tmp_path / "all.o"),
                             str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
