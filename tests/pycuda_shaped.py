"""A driver with exactly the API of the cuda device's PyCUDA driver
(codegen/devices/pycuda_driver.py), each part taken from the emulator: no host views, no
native launch table, one thread, allocations that are only an address. Registered as
"cuda", it runs the GPU schedules (barriers as fibers) through the cuda device's host path.

tests/test_cuda_path.py uses it; GRAPHFLOW_TEST_CUDA=emulator makes conftest.py register it
for every test, to run any test file's "cuda" cases here without a GPU."""
from graphflow.codegen.devices.emulator import EmulatorDriver
from graphflow.codegen.devices.pycuda_driver import CudaDriver  # PyCUDA itself loads lazily


class PycudaShaped:
    """CudaDriver's attributes: its own launch table, thread and compile counts; memory and
    modules from the emulator; nothing else."""

    name = "cuda"
    prepare = staticmethod(CudaDriver.prepare)
    thread_count = staticmethod(CudaDriver.thread_count)
    compile_jobs = staticmethod(CudaDriver.compile_jobs)

    def __init__(self) -> None:
        emu = EmulatorDriver()
        self.DeviceAllocation = emu.DeviceAllocation
        for attr in ("mem_alloc", "memcpy_htod", "memcpy_dtoh", "memcpy_dtod", "memset_d8",
                     "memset_d32", "synchronize"):
            setattr(self, attr, getattr(emu, attr))
        self._emu = emu

    def SourceModule(self, source, options=None, no_extern_c=False):  # noqa: N802
        return self._emu.SourceModule(source, options, no_extern_c=no_extern_c)
