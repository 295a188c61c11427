"""Independent GEMMs (or reductions) share one launch: horizontal fusion of template kernels.

A layer's backward pass has two GEMMs that read the same dY and depend on nothing of each
other (dX = dY W^T, dW = X^T dY); attention's backward has two more pairs; layer norm's
backward has two column sums over the same rows (gamma's and beta's). Each kernel's body
becomes a `__device__` function of its own parameters, and one `__global__` function calls
them in turn: every block grid-strides over the first kernel's tiles, then over the second's
(reductions of one geometry launch the same blocks and chunks).
No barrier lies between them, so this is valid CUDA and the cpu device still runs it as a
plain loop. The launch is the larger of the two in each grid dimension.

Kernels that update a variable are never combined (the in-place rules order an update after
every read of the old value), nor kernels where one writes what the other reads or writes.
"""
from __future__ import annotations

import re
from dataclasses import replace

from graphflow.ops.state import ASSIGN_OPS

from .fusion import MAX_PARAMS, alias_root
from .kernel import Kernel, Launch

MAX_STATIC_SHARED = 48 * 1024  # CUDA's static shared memory per block


REDUCTIONS = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "SumToLike")
LOOKAHEAD = 4  # how many kernels a partner may be hoisted over


def kind(k: Kernel) -> tuple | None:
    """What k may share a launch with (None: nothing): GEMMs of one dtype (one tiling, one
    block shape); single-kernel reductions of inputs of one shape (one geometry: the same
    blocks and chunks). Never a kernel that updates a variable."""
    if k.host is not None or not k.nodes or any(op.type in ASSIGN_OPS for op in k.nodes) \
            or re.search(r"_finish_\d+$", k.name):  # a second pass: launched only sometimes
        return None
    if k.nodes[0].type == "MatMul":
        return ("gemm", k.nodes[0].outputs[0].dtype)
    template = [op for op in k.nodes if op.type in REDUCTIONS]
    if len(template) == 1:
        op = template[0]
        x = op.inputs[0]
        axes = tuple(op.attrs.get("axis", ())) if op.type != "SumToLike" else tuple(op.inputs[1].shape)
        return ("reduce", tuple(x.shape), x.dtype, tuple(op.outputs[0].shape), axes)
    return None


def _buffers(k: Kernel, kind: str) -> set:
    return {alias_root(p.tensor) for p in k.params if p.kind == kind and p.tensor is not None}


def independent(a: Kernel, b: Kernel) -> bool:
    """May a (earlier) and b run in one launch, or b move before a? Neither writes what the
    other touches, except a concatenation both store their own parts of
    (views.concat_stores)."""
    a_out, b_out = _buffers(a, "out"), _buffers(b, "out")
    both = {t for t in a_out & b_out if t.op.type != "Concat"}
    return not (a_out & _buffers(b, "in") or b_out & _buffers(a, "in") or both)


def _is_map(k: Kernel) -> bool:
    return k.map and k.host is None and not any(op.type in ASSIGN_OPS for op in k.nodes)


def combine_kernels(kernels: list[Kernel], device: str) -> list[Kernel]:
    """Independent kernels of one kind (see `kind`) merged into one launch, and tile-loop
    kernels (Kernel.map: right for any grid and block) beside any of them: a kernel's partners
    are taken from the next LOOKAHEAD kernels when they can move up to it (they depend on
    nothing in between)."""
    pending = list(kernels)
    out: list[Kernel] = []
    while pending:
        k = pending.pop(0)
        key = kind(k)
        run = [k]
        if key is not None or _is_map(k):
            j = 0
            while j < min(LOOKAHEAD, len(pending)):
                c = pending[j]
                if c.host is not None:  # never across a host step (a collective started early
                    break               # so that it overlaps the kernels after it)
                fits_kind = _is_map(c) or (kind(c) is not None and kind(c) == key) or (
                    key is None and kind(c) is not None)  # a run of maps takes a template
                if fits_kind and all(independent(r, c) for r in run) \
                        and all(independent(m, c) for m in pending[:j]) and _fits(run + [c], device):
                    run.append(pending.pop(j))
                    key = key if key is not None else kind(c)
                    continue
                j += 1
        out.append(run[0] if len(run) == 1 else combined(run))
    return out


def _fits(ks: list[Kernel], device: str) -> bool:
    if sum(len(k.params) for k in ks) > MAX_PARAMS:
        return False
    if device == "cpu":
        return True
    shared = [k.static_shared_bytes for k in ks]
    return None not in shared and sum(shared) <= MAX_STATIC_SHARED


def combined(ks: list[Kernel]) -> Kernel:
    """One kernel calling each of `ks` (as a __device__ function of its own parameters)."""
    name = "combo_" + "__".join(k.name for k in ks)
    templates = [k for k in ks if not _is_map(k)]
    what = "kernels" if not templates else \
        "GEMMs" if templates[0].nodes[0].type == "MatMul" else "reductions"
    functions, params, calls = [], [], []
    for n, k in enumerate(ks):
        mine = [replace(p, name=f"k{n}_{p.name}", slot=p.slot or p.name) for p in k.params]
        decl = ",\n    ".join(p.declaration() for p in k.params)
        functions.append(f"// {k.name}: {k.comment}\n__device__ void {k.name}_part(\n    {decl}) {{\n"
                         f"{k.body.rstrip()}\n}}\n")
        call = f"{k.name}_part({', '.join(p.name for p in mine)});"
        if _is_map(k) and templates:  # a tile loop strides x only: one row of blocks and threads
            call = f"if (blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.y == 0 && threadIdx.z == 0) {call}"
        calls.append("  " + call)
        params += mine
    helpers = tuple(dict.fromkeys(h for k in ks for h in k.helpers)) + tuple(functions)

    def launch(shapes, device: str) -> Launch:
        shapes_of = [k.launch(shapes, device) for k in ks]
        blocks = {tuple(s.block) for k, s in zip(ks, shapes_of) if k in templates or not templates}
        if len(blocks) != 1:
            raise AssertionError(f"{name}: the combined kernels launch different blocks {blocks}")
        grid = tuple(max(s.grid[i] for s in shapes_of) for i in range(3))
        return Launch(grid, next(iter(blocks)), max(s.shared for s in shapes_of))

    return Kernel(
        name, [op for k in ks for op in k.nodes], params, "\n".join(calls) + "\n", launch,
        flops=lambda shapes: sum(k.flops(shapes) for k in ks),
        comment=f"{len(ks)} independent {what} in one launch: " + ", ".join(k.name for k in ks),
        helpers=helpers, checks=[c for k in ks for c in k.checks],
        active=lambda shapes: any(k.active(shapes) for k in ks))
