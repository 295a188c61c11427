"""Seeing the kernels: KernelInfo, and dumping a program as .cu files plus a manifest."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict

from .ctext import used_helpers
from .devices import prelude
from .executable import KernelInfo


def standalone_source(kernel) -> str:
    """One kernel as a .cu file that compiles by itself: the prelude, then the kernel with only
    the helpers it uses (directly or through another helper)."""
    bare = dataclasses.replace(kernel, helpers=())
    used = used_helpers(kernel.helper_text(), bare.source)
    return prelude("cuda") + "\n" + dataclasses.replace(kernel, helpers=(used,)).source


def dump_program(program, directory: str) -> str:
    """Write the translation unit, one standalone .cu per kernel, and manifest.json."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "graph.cu"), "w") as f:
        f.write(program.source)
    usage = ptxas_usage(os.path.join(directory, "graph.cu"))
    entries = []
    for kernel, info in zip(program.kernels, program.kernel_infos()):
        if kernel.host is not None:
            entries.append({**asdict(info), "host_step": kernel.comment})
            continue
        path = os.path.join(directory, f"{kernel.name}.cu")
        with open(path, "w") as f:
            f.write(standalone_source(kernel))
        entry = asdict(info)
        entry.update(shared_memory(kernel, info, usage.get(kernel.name)))
        entry["file"] = os.path.basename(path)
        entry["sites"] = sorted({f"{o.name} ({o.type}) at {o.site}" for op in kernel.nodes
                                 for o in op.origins})
        if kernel.name in usage:
            entry["ptxas"] = usage[kernel.name]
        entries.append(entry)
    manifest = {"device": program.device, "translation_unit": "graph.cu", "kernels": entries}
    with open(os.path.join(directory, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, default=list)
    return directory


def shared_memory(kernel, info: KernelInfo, ptxas: dict | None = None) -> dict:
    """The manifest's shared-memory fields. `shared_bytes` is what one block holds: the static
    __shared__ arrays plus the launch's dynamic bytes. The static part is ptxas's figure when
    nvcc is on PATH (it drops arrays no code reads, as in the cpu schedules' reductions), else
    what the kernel's text declares (None if that cannot be worked out)."""
    if ptxas is not None and "shared_bytes" in ptxas:
        static = ptxas["shared_bytes"]
    else:
        static = kernel.static_shared_bytes
    dynamic = info.shared_bytes  # KernelInfo.shared_bytes is the launch's (dynamic) figure
    return {"shared_bytes": None if static is None else static + dynamic,
            "static_shared_bytes": static, "dynamic_shared_bytes": dynamic}


def ptxas_usage(cu_path: str, arch: str = "sm_80") -> dict:
    """Registers, spills and shared memory per kernel from ptxas, when nvcc is on PATH."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return {}
    result = subprocess.run([nvcc, f"-arch={arch}", "-c", "-o", os.devnull, "--resource-usage",
                             cu_path], capture_output=True, text=True)
    return parse_ptxas(result.stderr + result.stdout)


def parse_ptxas(text: str) -> dict:
    usage, current = {}, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'|Function properties for (\w+)", line)
        if m:
            current = m.group(1) or m.group(2)
            usage.setdefault(current, {})
            continue
        if current is None:
            continue
        spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if spill:
            usage[current]["spill_stores"] = int(spill.group(1))
            usage[current]["spill_loads"] = int(spill.group(2))
        regs = re.search(r"Used (\d+) registers", line)
        if regs:
            usage[current]["registers"] = int(regs.group(1))
            smem = re.search(r"(\d+) bytes smem", line)
            usage[current]["shared_bytes"] = int(smem.group(1)) if smem else 0
    return usage
