"""Independent GEMMs share one launch (horizontal fusion of template kernels).

A layer's backward pass has two GEMMs that read the same dY and depend on nothing of each
other (dX = dY W^T, dW = X^T dY); attention's backward has two more pairs. Each kernel's body
becomes a `__device__` function of its own parameters, and one `__global__` function calls
them in turn: every block grid-strides over the first GEMM's tiles, then over the second's.
No barrier lies between them, so this is valid CUDA and the cpu device still runs it as a
plain loop. The launch is the larger of the two in each grid dimension.

Kernels that update a variable are never combined (the in-place rules order an update after
every read of the old value), nor kernels where one writes what the other reads or writes.
"""
from __future__ import annotations

from dataclasses import replace

from graphflow.ops.state import ASSIGN_OPS

from .fusion import MAX_PARAMS, alias_root
from .kernel import Kernel, Launch

MAX_STATIC_SHARED = 48 * 1024  # CUDA's static shared memory per block


def _is_gemm(k: Kernel) -> bool:
    return k.host is None and bool(k.nodes) and k.nodes[0].type == "MatMul" \
        and not any(op.type in ASSIGN_OPS for op in k.nodes)


def _buffers(k: Kernel, kind: str) -> set:
    return {alias_root(p.tensor) for p in k.params if p.kind == kind and p.tensor is not None}


def independent(a: Kernel, b: Kernel) -> bool:
    """May a (earlier) and b run in one launch? Neither writes what the other touches, except
    a concatenation both store their own parts of (views.concat_stores)."""
    a_out, b_out = _buffers(a, "out"), _buffers(b, "out")
    both = {t for t in a_out & b_out if t.op.type != "Concat"}
    return not (a_out & _buffers(b, "in") or b_out & _buffers(a, "in") or both)


def combine_gemms(kernels: list[Kernel], device: str) -> list[Kernel]:
    """Adjacent independent GEMM kernels merged into one launch each (pairs, then more)."""
    out: list[Kernel] = []
    run: list[Kernel] = []
    for k in kernels:
        if run and _is_gemm(k) and all(independent(r, k) for r in run) and _fits(run + [k], device):
            run.append(k)
            continue
        if run:
            out.append(run[0] if len(run) == 1 else combined(run))
        run = [k] if _is_gemm(k) else []
        if not run:
            out.append(k)
    if run:
        out.append(run[0] if len(run) == 1 else combined(run))
    return out


def _fits(ks: list[Kernel], device: str) -> bool:
    if sum(len(k.params) for k in ks) > MAX_PARAMS or \
            len({k.nodes[0].outputs[0].dtype for k in ks}) != 1:  # one tiling: one block shape
        return False
    if device == "cpu":
        return True
    shared = [k.static_shared_bytes for k in ks]
    return None not in shared and sum(shared) <= MAX_STATIC_SHARED


def combined(ks: list[Kernel]) -> Kernel:
    """One kernel calling each of `ks` (as a __device__ function of its own parameters)."""
    name = "combo_" + "__".join(k.name for k in ks)
    functions, params, calls = [], [], []
    for n, k in enumerate(ks):
        mine = [replace(p, name=f"k{n}_{p.name}") for p in k.params]
        decl = ",\n    ".join(p.declaration() for p in k.params)
        functions.append(f"// {k.name}: {k.comment}\n__device__ void {k.name}_part(\n    {decl}) {{\n"
                         f"{k.body.rstrip()}\n}}\n")
        calls.append(f"  {k.name}_part({', '.join(p.name for p in mine)});")
        params += mine
    helpers = tuple(dict.fromkeys(h for k in ks for h in k.helpers)) + tuple(functions)

    def launch(shapes, device: str) -> Launch:
        shapes_of = [k.launch(shapes, device) for k in ks]
        blocks = {tuple(s.block) for s in shapes_of}
        if len(blocks) != 1:
            raise AssertionError(f"{name}: the combined kernels launch different blocks {blocks}")
        grid = tuple(max(s.grid[i] for s in shapes_of) for i in range(3))
        return Launch(grid, shapes_of[0].block, max(s.shared for s in shapes_of))

    return Kernel(
        name, [op for k in ks for op in k.nodes], params, "\n".join(calls) + "\n", launch,
        flops=lambda shapes: sum(k.flops(shapes) for k in ks),
        comment=f"{len(ks)} independent GEMMs in one launch: " + ", ".join(k.name for k in ks),
        helpers=helpers, checks=[c for k in ks for c in k.checks],
        active=lambda shapes: any(k.active(shapes) for k in ks))
