"""Seeing the kernels: KernelInfo, and dumping a program as .cu files plus a manifest."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass

from .devices import prelude


@dataclass
class KernelInfo:
    """What one kernel does and what its launch costs (for the last shape signature run)."""
    name: str
    nodes: list
    grid: tuple
    block: tuple
    shared_bytes: int
    bytes_read: int
    bytes_written: int
    flops: int


def standalone_source(kernel) -> str:
    """One kernel as a .cu file that compiles by itself."""
    return prelude("cuda") + "\n" + kernel.source


def dump_program(program, directory: str) -> str:
    """Write the translation unit, one standalone .cu per kernel, and manifest.json."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "graph.cu"), "w") as f:
        f.write(program.source)
    entries = []
    for kernel, info in zip(program.kernels, program.kernel_infos()):
        if kernel.host is not None:
            entries.append({**asdict(info), "host_step": kernel.comment})
            continue
        path = os.path.join(directory, f"{kernel.name}.cu")
        with open(path, "w") as f:
            f.write(standalone_source(kernel))
        entry = asdict(info)
        entry["file"] = os.path.basename(path)
        entry["sites"] = sorted({f"{o.name} ({o.type}) at {o.site}" for op in kernel.nodes
                                 for o in op.origins})
        entries.append(entry)
    usage = ptxas_usage(os.path.join(directory, "graph.cu"))
    for entry in entries:
        if entry["name"] in usage:
            entry["ptxas"] = usage[entry["name"]]
    manifest = {"device": program.device, "translation_unit": "graph.cu", "kernels": entries}
    with open(os.path.join(directory, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, default=list)
    return directory


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
