"""A driver with exactly the API of the cuda device's PyCUDA driver
(codegen/devices/pycuda_driver.py), each part taken from the emulator: no host views, no
native launch table, one thread, allocations that are only an address. Registered as
"cuda", it runs the GPU schedules (barriers as fibers) through the cuda device's host path.

tests/test_cuda_path.py uses it; GRAPHFLOW_TEST_CUDA=emulator makes conftest.py register it
for every test, to run any test file's "cuda" cases here without a GPU."""
from graphflow.codegen.devices import CallSequence, usable_cores
from graphflow.codegen.devices.emulator import EmulatorDriver


class PycudaShaped:
    """CudaDriver's attributes, each from the emulator; nothing else."""

    name = "cuda"

    def __init__(self) -> None:
        emu = EmulatorDriver()
        self.DeviceAllocation = emu.DeviceAllocation
        for attr in ("mem_alloc", "memcpy_htod", "memcpy_dtoh", "memcpy_dtod", "memset_d8",
                     "memset_d32", "synchronize"):
            setattr(self, attr, getattr(emu, attr))
        self._emu = emu

    def SourceModule(self, source, options=None, no_extern_c=False):  # noqa: N802
        return self._emu.SourceModule(source, options, no_extern_c=no_extern_c)

    @staticmethod
    def prepare(entries) -> CallSequence:
        return CallSequence(entries)

    @staticmethod
    def thread_count() -> int:
        return 1

    @staticmethod
    def compile_jobs() -> int:
        return usable_cores()
