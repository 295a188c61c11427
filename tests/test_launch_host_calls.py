"""Host C functions as entries of the cpu device's native launch sequence (NativeCall): they run
in order between kernels within the one native call, see rebound arguments, and a failure
raises the entry's own error type with the function's message. Checked against numpy."""
from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest
from graphflow.codegen.devices import CallSequence, LaunchFailed, cache, get_driver
from graphflow.codegen.launch import HostStep, LaunchTable, NativeCall

from graphflow.errors import DistributedError

KERNELS = r"""
__global__ void add(float* x, float v, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += v;
}
"""

HOST = r"""
#include <stdio.h>
/* block: slot 0 a float buffer, then a count */
int double_first(void* block, char* err, int n) {
  float* x = ((float**)block)[0];
  x[0] *= 2.0f;
  ((long long*)block)[1] += 1;
  return 0;
}
int refuse(void* block, char* err, int n) {
  snprintf(err, (size_t)n, "refused after %lld calls", ((long long*)block)[1]);
  return 1;
}
"""

N = 5


@pytest.fixture(scope="module")
def host_lib():
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("needs a C compiler")
    path = cache.compile_cached(HOST, [compiler], ["-O1", "-fPIC", "-shared", "-x", "c"], source_suffix=".c")
    return ctypes.CDLL(str(path))


def _call(lib, name: str, buf, error_type=DistributedError) -> NativeCall:
    block = (ctypes.c_longlong * 2)(0, 0)
    call = NativeCall(name, ctypes.cast(getattr(lib, name), ctypes.c_void_p).value, block, 1, error_type)
    call.set_arg(0, buf)
    return call


def test_host_calls_run_in_order_between_kernels_in_one_native_call(host_lib):
    drv = get_driver("cpu")
    add = drv.SourceModule(KERNELS).get_function("add")
    x, y = drv.mem_alloc(4 * N), drv.mem_alloc(4 * N)
    drv.memcpy_htod(x, np.arange(N, dtype=np.float32))
    drv.memcpy_htod(y, np.ones(N, np.float32))
    call = _call(host_lib, "double_first", x)

    def kernel(v: float):
        return (add, [x, np.float32(v), np.int32(N)], (1, 1, 1), (32, 1, 1), 0, 1)

    seq = drv.prepare([kernel(1.0), call, kernel(10.0)])
    seq.run()
    expected = np.arange(N, dtype=np.float32) + 1
    expected[0] *= 2
    expected += 10
    got = np.empty(N, np.float32)
    drv.memcpy_dtoh(got, x)
    np.testing.assert_array_equal(got, expected)
    assert call.block[1] == 1

    seq.set_arg(1, 0, y)  # the host call's buffer slot rebound, like a variable's
    seq.set_arg(0, 0, y)
    seq.set_arg(2, 0, y)
    seq.run()
    drv.memcpy_dtoh(got, y)
    np.testing.assert_array_equal(got, np.array([14, 12, 12, 12, 12], np.float32))  # (1+1)*2+10, 1+1+10
    assert call.block[1] == 2


def test_a_failing_host_call_stops_the_sequence_and_raises_its_error_type(host_lib):
    drv = get_driver("cpu")
    add = drv.SourceModule(KERNELS).get_function("add")
    x = drv.mem_alloc(4 * N)
    drv.memcpy_htod(x, np.zeros(N, np.float32))
    after = (add, [x, np.float32(1.0), np.int32(N)], (1, 1, 1), (32, 1, 1), 0, 1)
    seq = drv.prepare([_call(host_lib, "double_first", x), _call(host_lib, "refuse", x), after])
    with pytest.raises(DistributedError, match="refused after 0 calls"):
        seq.run()
    got = np.empty(N, np.float32)
    drv.memcpy_dtoh(got, x)
    np.testing.assert_array_equal(got, np.zeros(N, np.float32))  # the kernel after it never ran
    with pytest.raises(LaunchFailed):  # LaunchFailed stays the error of a kernel's own failure
        drv.prepare([(add, [x, np.float32(1.0), np.int32(N)], (1, 1, 1), (2048, 1, 1), 0, 1)]).run()


def test_a_host_step_with_a_native_form_joins_the_sequence(host_lib):
    """LaunchTable: a host step whose function has .native runs inside the native sequence;
    one without splits it and runs from Python."""
    drv = get_driver("cpu")
    x = drv.mem_alloc(4 * N)
    drv.memcpy_htod(x, np.ones(N, np.float32))
    python_calls = []

    def host(args, shapes):
        python_calls.append(args)

    def with_native(args, shapes):
        python_calls.append(args)

    with_native.native = lambda args, shapes: _call(host_lib, "double_first", args[0])
    table = LaunchTable([("host", HostStep(with_native, [x], {})), ("host", HostStep(host, [x], {}))],
                        drv.prepare, native_calls=True)
    table.run()
    assert len(python_calls) == 1  # only the step without a native form came back to Python
    got = np.empty(N, np.float32)
    drv.memcpy_dtoh(got, x)
    np.testing.assert_array_equal(got, np.array([2, 1, 1, 1, 1], np.float32))
    # the cuda device's sequence (PyCUDA launches) cannot hold a host C call: both from Python
    python_calls.clear()
    LaunchTable([("host", HostStep(with_native, [x], {})), ("host", HostStep(host, [x], {}))],
                CallSequence, native_calls=False).run()
    assert len(python_calls) == 2
    drv.memcpy_dtoh(got, x)
    np.testing.assert_array_equal(got, np.array([2, 1, 1, 1, 1], np.float32))
