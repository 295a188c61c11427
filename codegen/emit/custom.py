"""Custom ops (gf.custom_op): the user's kernel source, and a kernel that calls it.

The user's source goes into the translation unit once (a helper), inside its own namespace,
with every ``__global__`` turned into ``__device__`` (the same length: no line moves) and
``extern __shared__ T s[];`` into GF_DYNAMIC_SHARED (what the emulator understands). The
op's kernel, named after the user's (``vector_add_0``), takes the op's buffers and scalars
and calls the user's function: a CUDA device function may use threadIdx, static
``__shared__`` arrays and ``__syncthreads`` exactly as the kernel did, and the emulator
runs the caller with fibers when the callee reaches a barrier. Fusion never merges a
CustomOp with anything (it is not elementwise and no template takes epilogues from it).

Compile errors in the user's lines are reported at the user's own file and line
(`explain_compile_failure`); the reference device runs the same helper and caller, compiled
alone, on the cpu emulator (`run_on_cpu`).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from graphflow import cuda_source
from graphflow.custom_op import SOURCES, CustomOp, lookup
from graphflow.dtypes import as_dtype
from graphflow.errors import CompileError, DeviceError
from graphflow.graph import Operation
from graphflow.registry import Spec

from ..devices import CompileFailed, LaunchFailed, get_driver, prelude
from ..kernel import CTYPES, EmitContext, Launch, Param, ctype
from . import emitter

_NAMESPACE = re.compile(r"^namespace (gf_custom_[0-9a-f]+) \{", re.M)


def namespace(d: CustomOp) -> str:
    return f"gf_custom_{d.hash}"


def source_helper(d: CustomOp) -> str:
    """The user's source as a helper: the same text for every op made from it."""
    text, includes = _transform(d.source)
    names = ", ".join(cuda_source.kernel_names(d.source))
    head = f"// custom op source {d.hash} (kernels: {names}); its line 1 follows the namespace line\n"
    if includes:
        head += "#ifdef __CUDACC__\n" + "\n".join(includes) + "\n#endif\n"
    macros = re.findall(r"^[ \t]*#[ \t]*define[ \t]+(\w+)", cuda_source.blank(d.source), re.M)
    undefs = "".join(f"#undef {m}\n" for m in dict.fromkeys(macros))  # no leak into later kernels
    return f"{head}namespace {namespace(d)} {{\n{text}\n}}  // namespace {namespace(d)}\n{undefs}"


def _transform(source: str) -> tuple[str, list[str]]:
    """(source with kernels made device functions, the #include lines taken out); every
    line stays on its line."""
    edits = [(i, i + 10, "__device__") for i in cuda_source.global_positions(source)]
    edits += [(a, b, "") for a, b in cuda_source.launch_bounds_spans(source)]
    edits += [(a, b, "") for a, b in cuda_source.extern_c_spans(source)]
    edits += [(a, b, f"GF_DYNAMIC_SHARED({t}, {name});")
              for a, b, t, name, _ in cuda_source.dynamic_shared_decls(source)]
    spans = cuda_source.include_spans(source)
    edits += [(a, b, "") for a, b in spans]
    text = source
    for a, b, new in sorted(edits, reverse=True):
        old = text[a:b]
        text = text[:a] + new + "\n" * old.count("\n") + text[b:]
    return text, [source[a:b].strip() for a, b in spans]


def _call(d: CustomOp, args: list[str], dtypes: list) -> str:
    """The body of the caller: the user's function on the buffers (cast to the tensors' C
    types, so template parameters are deduced from them) and scalars."""
    pointers = iter(dtypes)
    parts = [f"({ctype(next(pointers))}*){a}" if p.pointer else a
             for p, a in zip(d.signature.params, args)]
    return f"  {namespace(d)}::{d.kernel}({', '.join(parts)});\n"


def _scalar_ctype(p) -> str:
    return cuda_source.SCALAR_CTYPES[p.base]


@emitter("CustomOp")
def emit_custom(ctx: EmitContext, op: Operation) -> None:
    d = lookup(op.attrs["definition"])
    out = op.outputs[0]
    kb = ctx.builder(d.kernel, [op])
    tensors = list(op.inputs) + [out]

    def specs(shapes) -> list[Spec]:
        return [Spec(tuple(shapes[t]), t.dtype) for t in tensors]

    args, pointer = [], 0
    scalar_index = 0
    for p in d.signature.params:
        if p.pointer:
            t = tensors[pointer]
            args.append(kb.output(t, p.name) if t is out else kb.input(t, p.name))
            pointer += 1
        else:
            j = scalar_index
            args.append(kb.scalar(p.name, _scalar_ctype(p),
                                  lambda shapes, j=j: d.scalar_values(specs(shapes))[j]))
            scalar_index += 1

    def launch(shapes, device: str) -> Launch:
        grid, block, shared = d.launch_shape(specs(shapes))
        return Launch(grid, block, shared)

    body = _call(d, args, [t.dtype for t in tensors])
    comment = f"custom op: {d.kernel} from the source given to {d.where}"
    ctx.add(kb.build(body, launch, flops=lambda shapes: d.flops(specs(shapes)), comment=comment,
                     helpers=(source_helper(d),)))


# ---- compile errors at the user's lines ----------------------------------------------------------
_ERROR = re.compile(r"^(?P<file>[^:\n(]+?)(?::(?P<l1>\d+)(?::(?P<col>\d+))?:|\((?P<l2>\d+)\):) *"
                    r"(?:fatal |catastrophic )?error:? *(?P<text>.*)$", re.M)


def explain_compile_failure(e: CompileFailed) -> str:
    """The compiler's message for a unit that failed; errors inside a custom op's source
    point at the user's file and line (with that line shown)."""
    default = f"{e}\n(full source: {e.source_path})"
    try:
        compiled = Path(e.source_path).read_text()
    except OSError:
        return default
    ranges = []  # (first unit line of the user's source, its CustomOp)
    for m in _NAMESPACE.finditer(compiled):
        d = SOURCES.get(m.group(1)[len("gf_custom_"):])
        if d is not None:
            ranges.append((compiled.count("\n", 0, m.start()) + 2, d))
    mapped, culprit = [], None
    for m in _ERROR.finditer(e.compiler_output):
        if Path(m["file"]).name != Path(e.source_path).name:
            continue
        n = int(m["l1"] or m["l2"])
        for first, d in ranges:
            lines = d.source.split("\n")
            if first <= n < first + len(lines):
                k = n - first + 1
                col = f"{m['col']}:" if m["col"] else ""
                where = d.where_line(k)
                shown = where.rsplit(":", 1)[-1] if d.origin else k  # the number in `where`
                mapped.append(f"  {where}:{col} error: {m['text'].strip()}\n"
                              f"  {shown:>5} | {lines[k - 1]}")
                culprit = culprit or d
    if not mapped:
        return default
    return (f"the CUDA source of {culprit.where} does not compile:\n" + "\n".join(mapped[:6])
            + f"\n(compiler output and translation unit: {e.source_path})")


# ---- the reference device: the kernel alone on the cpu emulator ------------------------------------
_modules: dict = {}


def unit_for(d: CustomOp, dtypes: list) -> tuple[str, str]:
    """(a translation unit holding the user's source and a caller for these dtypes, the
    caller's name)."""
    name = f"{d.kernel}_reference"
    params, args, pointer = [], [], 0
    for p in d.signature.params:
        if p.pointer:
            kind = "out" if pointer == len(dtypes) - 1 else "in"
            params.append(Param(p.name, kind, CTYPES[dtypes[pointer].name]))
            pointer += 1
        else:
            params.append(Param(p.name, "scalar", _scalar_ctype(p)))
        args.append(p.name)
    decl = ",\n    ".join(p.declaration() for p in params)
    text = (prelude("cuda") + source_helper(d)
            + f'extern "C" __global__ void {name}(\n    {decl}) {{\n{_call(d, args, dtypes)}}}\n')
    return text, name


def run_on_cpu(d: CustomOp, arrays: list[np.ndarray], out: Spec) -> np.ndarray:
    """The op on numpy arrays: the user's kernel run by the cpu emulator."""
    arrays = [np.asarray(a, order="C") for a in arrays]  # rank 0 stays rank 0
    dtypes = [as_dtype(a.dtype) for a in arrays] + [out.dtype]
    text, name = unit_for(d, dtypes)
    driver = get_driver("cpu")
    if text not in _modules:
        try:
            _modules[text] = driver.SourceModule(text, no_extern_c=True)
        except CompileFailed as e:
            raise CompileError(explain_compile_failure(e)) from None
    fn = _modules[text].get_function(name)
    result = np.empty(out.shape, out.dtype.np)
    if result.size == 0:
        return result
    specs = [Spec(a.shape, t) for a, t in zip(arrays, dtypes)] + [Spec(result.shape, out.dtype)]
    grid, block, shared = d.launch_shape(specs)
    buffers, args, pointer = [], [], 0
    scalars = iter(d.scalar_values(specs))
    for p in d.signature.params:
        if p.pointer:
            a = arrays[pointer] if pointer < len(arrays) else result
            buf = driver.mem_alloc(max(1, a.nbytes))
            if a is not result and a.nbytes:
                driver.memcpy_htod(buf, a)
            buffers.append(buf)
            args.append(buf)
            pointer += 1
        else:
            args.append(_SCALARS[_scalar_ctype(p)](next(scalars)))
    try:
        fn(*args, grid=grid, block=block, shared=shared)
    except LaunchFailed as e:
        raise DeviceError(f"{d.kernel} ({d.where}) failed on the cpu emulator: {e}") from None
    driver.memcpy_dtoh(result, buffers[-1])  # the last pointer parameter is the output
    return result


_SCALARS = {"int": np.int32, "long long": np.int64, "unsigned long long": np.uint64,
            "float": np.float32, "double": np.float64}
