"""Builds the cpu device's runtime library at install time; everything else is in pyproject.toml.

The runtime (codegen/devices/cuda_shim.h with GF_EMU_RUNTIME_IMPL: thread pool, launch loop,
fibers) is the same for every program, so a user's first compile should not wait for it. It is
built with the cpu device's own g++ command (codegen/devices/toolchain.py) as
graphflow/codegen/devices/emu_runtime.so, and the shim precompiled for the same flags as
graphflow/codegen/devices/pch/cuda_shim.h.gch (kernel units then skip parsing it). Without g++
the install still succeeds, and the cpu device builds the runtime on first use, as it does
when the installed one no longer matches (a header that no longer matches is parsed again).
"""
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildEmulatorRuntime(build_ext):
    def get_ext_filename(self, fullname: str) -> str:
        return str(Path(*fullname.split("."))) + ".so"  # a plain library, not a Python module

    def build_extension(self, ext: Extension) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from codegen.devices import toolchain  # numpy-free

        out = Path(self.get_ext_fullpath(ext.name))
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            toolchain.build_runtime(out)
        except Exception as e:  # noqa: BLE001 - the cpu device builds it on first use instead
            print(f"graphflow: the cpu device's runtime was not built at install time ({e}); "
                  "it will be built on first use", file=sys.stderr)
            return
        try:
            toolchain.build_pch(out.parent / toolchain.PCH.parent.name)
        except Exception as e:  # noqa: BLE001 - kernel units then parse the header themselves
            print(f"graphflow: the cpu device's header was not precompiled ({e}); kernels "
                  "compile without it", file=sys.stderr)


    def copy_extensions_to_source(self) -> None:
        """An editable install copies the runtime into the checkout; the precompiled header
        beside it too."""
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace, regular = self._get_inplace_equivalent(build_py, ext)
            built = Path(regular).with_name("pch")
            if built.is_dir():
                shutil.copytree(built, Path(inplace).with_name("pch"), dirs_exist_ok=True)


setup(ext_modules=[Extension("graphflow.codegen.devices.emu_runtime", sources=[], optional=True)],
      cmdclass={"build_ext": BuildEmulatorRuntime})
