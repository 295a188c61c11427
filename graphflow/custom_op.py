"""gf.custom_op: a user's CUDA C kernel as a graph op.

    vector_add = gf.custom_op(SOURCE, "vector_add",
                              output=lambda a, b: (a.shape, a.dtype),
                              launch=lambda a, b, c: ((a.shape[0] + 255) // 256, 256),
                              args=lambda a, b, c: [a.shape[0]])
    c = vector_add(a, b)

The kernel's pointer parameters, in order, are the op's inputs and then its one output; its
other parameters are the scalars `args` returns. The rules get one Spec (.shape, .dtype) per
pointer parameter (`output` gets the inputs only): build-time shapes may hold None, `launch`
and `args` get the run's concrete shapes. `grad(op, dy)` returns the inputs' gradients
(graph ops, other custom ops). On `reference` the op runs `reference(*arrays)` when given,
else the kernel itself through the cpu emulator. Every op of one definition shares the type
CustomOp and names the definition in its attrs (`definition`), so saved graphs load in a
process that made the same definition.
"""
from __future__ import annotations

import hashlib
import numbers
import os
from collections.abc import Callable

import numpy as np

from . import cuda_source
from .dtypes import DType, as_dtype
from .errors import DTypeError, GraphflowError, ShapeError
from .graph import Operation, Tensor, definition_site
from .ops.core import as_tensor, make
from .registry import Spec, register

DEFINITIONS: dict[str, CustomOp] = {}  # attrs["definition"] -> its CustomOp
SOURCES: dict[str, CustomOp] = {}      # source hash -> the latest CustomOp made from that text


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:12]


class CustomOp:
    """A user's CUDA kernel made into an op builder: call it on tensors to add an op."""

    def __init__(self, source, kernel: str, output: Callable, launch: Callable,
                 args: Callable | None = None, grad: Callable | None = None,
                 reference: Callable | None = None, flops: Callable | None = None,
                 site: str | None = None) -> None:
        self.site = site or definition_site()
        self.kernel = kernel
        where = self.where
        origin_file = None
        if isinstance(source, os.PathLike):
            origin_file = os.fspath(source)
            try:
                with open(origin_file, encoding="utf-8") as f:
                    source = f.read()
            except OSError as e:
                raise GraphflowError(f"{where}: cannot read the kernel source {origin_file}: "
                                     f"{e.strerror}") from None
        if not isinstance(source, str) or not source.strip():
            raise GraphflowError(f"{where}: source must be CUDA C text (a str) or a path to a "
                                 f".cu file, got {source!r:.60}")
        self.source = source
        self.origin = (origin_file, 1) if origin_file else cuda_source.locate(
            source, self.site.rsplit(":", 1)[0])
        output, launch, args = _fixed(output, _as_spec), _fixed(launch, _launch_value), \
            _fixed(args, lambda v: v if isinstance(v, list | tuple) else None)
        for label, rule, required in (("output", output, True), ("launch", launch, True),
                                      ("args", args, False), ("grad", grad, False),
                                      ("reference", reference, False), ("flops", flops, False)):
            if (rule is not None or required) and not callable(rule):
                raise GraphflowError(f"{where}: {label}= must be a function (or, for output, "
                                     f"launch and args, a fixed value), got {rule!r:.60}")
        self.output_rule, self.launch_rule, self.args_rule = output, launch, args
        self.grad_rule, self.reference, self.flops_rule = grad, reference, flops
        self.signature = cuda_source.check_kernel_name(source, kernel, where)
        self._check_signature()
        if isinstance(grad, CustomOp) and (self.n_inputs != 1 or grad.n_inputs not in (2, 3)):
            raise GraphflowError(
                f"{where}: grad={grad.kernel} (a custom op) serves an op of one input, called as "
                f"{grad.kernel}(x, dy) or {grad.kernel}(x, y, dy); this op has {self.n_inputs} "
                f"inputs and {grad.kernel} takes {grad.n_inputs}: give grad=lambda op, dy: [...]")
        self.hash = source_hash(source)
        key = f"{kernel}@{self.hash}"
        n = 1
        while key in DEFINITIONS:
            n += 1
            key = f"{kernel}@{self.hash}#{n}"
        self.key = key
        DEFINITIONS[key] = self
        SOURCES[self.hash] = self

    # ---- naming and places ---------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"gf.custom_op({self.kernel!r}) at {self.site}"

    def where_line(self, line: int) -> str:
        """file:line of line `line` of the kernel source, in the user's own file if found."""
        if self.origin:
            return f"{self.origin[0]}:{self.origin[1] + line - 1}"
        return f"line {line} of the source of {self.where}"

    @property
    def n_inputs(self) -> int:
        return len(self.signature.pointers) - 1

    def __repr__(self) -> str:
        return f"<gf.custom_op {self.kernel!r} ({self.n_inputs} inputs) defined at {self.site}>"

    def _check_signature(self) -> None:
        sig = self.signature
        at = f"{self.where}: kernel {sig.name} ({self.where_line(sig.line)})"
        if not sig.pointers:
            raise GraphflowError(f"{at} has no pointer parameter: its last pointer parameter is "
                                 "the op's output")
        for p in sig.params:
            if p.pointer and p.base not in cuda_source.POINTER_DTYPES and p.base not in sig.template:
                raise GraphflowError(f"{at}: parameter {p.name!r} ({p.written}) points at "
                                     f"{p.base!r}; graphflow passes float, double, int, long long "
                                     "or bool buffers (or a template type)")
            if not p.pointer and p.base not in cuda_source.SCALAR_CTYPES:
                raise GraphflowError(f"{at}: scalar parameter {p.name!r} has type {p.base!r}; "
                                     "graphflow passes int, long long, size_t, float or double")
        for start, _, _, name, inside in cuda_source.dynamic_shared_decls(self.source):
            if not inside:
                line = self.source.count("\n", 0, start) + 1
                raise GraphflowError(f"{self.where}: `extern __shared__ ... {name}[]` at "
                                     f"{self.where_line(line)} is outside a function: declare "
                                     "dynamic shared memory inside the kernel")

    # ---- building ops ----------------------------------------------------------------------
    def __call__(self, *inputs, name: str | None = None) -> Tensor:
        if len(inputs) != self.n_inputs:
            names = [p.name for p in self.signature.pointers]
            raise GraphflowError(
                f"{self.kernel} at {definition_site()}: takes {self.n_inputs} input tensors (its "
                f"pointer parameters {names} are the inputs, then the output), got {len(inputs)}")
        tensors = [as_tensor(x) for x in inputs]
        return make("CustomOp", tensors, {"definition": self.key}, name=name or self.kernel)

    # ---- the rules, checked ------------------------------------------------------------------
    def _call(self, label: str, rule: Callable, specs: list[Spec]):
        try:
            return rule(*specs)
        except GraphflowError:
            raise
        except Exception as e:  # noqa: BLE001 - a user's rule failed: say which and where
            raise ShapeError(f"the {label} rule of {self.where} raised {type(e).__name__}: {e}") \
                from None

    def output_spec(self, specs: list[Spec]) -> Spec:
        """Check the inputs against the kernel's parameters; the output's Spec."""
        if len(specs) != self.n_inputs:
            raise ShapeError(f"{self.where} takes {self.n_inputs} inputs, got {len(specs)}")
        result = self._call("output", self.output_rule, specs)
        out = _as_spec(result)
        if out is None:
            raise ShapeError(f"the output rule of {self.where} returned {result!r:.80}; expected "
                             "(shape, dtype), e.g. (a.shape, a.dtype), with a shape of ints >= 0 "
                             "or None")
        self._check_dtypes(specs + [out])
        return out

    def _check_dtypes(self, specs: list[Spec]) -> None:
        sig, bound = self.signature, {}
        for k, (p, spec) in enumerate(zip(sig.pointers, specs)):
            what = "the output" if k == len(specs) - 1 else f"input {k}"
            if p.base in sig.template:
                if bound.setdefault(p.base, spec.dtype) is not spec.dtype:
                    raise DTypeError(f"{self.where}: {what} is {spec.dtype.name} but parameter "
                                     f"{p.name!r} ({p.written}) shares template type {p.base} "
                                     f"with a {bound[p.base].name} tensor")
            elif cuda_source.POINTER_DTYPES[p.base] != spec.dtype.name:
                raise DTypeError(f"{self.where}: {what} is {spec.dtype.name} but kernel parameter "
                                 f"{p.name!r} is {p.written} "
                                 f"({cuda_source.POINTER_DTYPES[p.base]})")

    def launch_shape(self, specs: list[Spec]) -> tuple[tuple, tuple, int]:
        """(grid, block, dynamic shared bytes) for concrete shapes."""
        result = self._call("launch", self.launch_rule, specs)
        parts = list(result) if isinstance(result, list | tuple) else []
        dims = [_dim3(x) for x in parts[:2]]
        shared = parts[2] if len(parts) == 3 else 0
        if len(parts) not in (2, 3) or None in dims or not isinstance(shared, numbers.Integral) \
                or shared < 0:
            raise ShapeError(f"the launch rule of {self.where} returned {result!r:.80}; expected "
                             "(grid, block) or (grid, block, shared_bytes), each of grid and "
                             "block an int or a tuple of 1 to 3 ints >= 1")
        grid, block = dims
        threads = block[0] * block[1] * block[2]
        if threads > 1024 or any(b > m for b, m in zip(block, (1024, 1024, 64))) or \
                any(g > m for g, m in zip(grid, (2**31 - 1, 65535, 65535))) or shared > 48 * 1024:
            raise ShapeError(f"the launch rule of {self.where} returned grid {grid}, block {block}, "
                             f"{shared} bytes of shared memory: beyond CUDA's limits (at most 1024 "
                             "threads a block, block dims up to (1024, 1024, 64), grid dims up to "
                             "(2**31-1, 65535, 65535), 48 KiB of dynamic shared memory)")
        return grid, block, int(shared)

    def scalar_values(self, specs: list[Spec]) -> list:
        """The kernel's scalar arguments, in parameter order."""
        scalars = self.signature.scalars
        values = [] if self.args_rule is None else self._call("args", self.args_rule, specs)
        try:
            values = list(values)
        except TypeError:
            values = [values]
        if len(values) != len(scalars) or not all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            names = [p.name for p in scalars]
            raise ShapeError(f"{self.where}: the kernel's scalar parameters are {names}, so args= "
                             f"must return {len(scalars)} numbers; it returned {values!r:.80}")
        return values

    def flops(self, specs: list[Spec]) -> int:
        return int(self._call("flops", self.flops_rule, specs)) if self.flops_rule else 0


def _as_spec(result) -> Spec | None:
    if not isinstance(result, list | tuple) or len(result) != 2:
        return None
    shape, dtype = result
    try:
        dims = tuple(shape)
        dtype = dtype if isinstance(dtype, DType) else as_dtype(dtype)
    except (TypeError, ValueError, GraphflowError):
        return None
    if not all(d is None or (isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0)
               for d in dims):
        return None
    return Spec(tuple(None if d is None else int(d) for d in dims), dtype)


def _fixed(rule, accept: Callable):
    """A rule as given, or a fixed value (accepted by `accept`) as a rule that returns it."""
    if rule is None or callable(rule) or accept(rule) is None:
        return rule
    return lambda *specs: rule


def _launch_value(value):
    parts = list(value) if isinstance(value, list | tuple) else []
    return value if len(parts) in (2, 3) and None not in [_dim3(x) for x in parts[:2]] else None


def _dim3(x) -> tuple | None:
    dims = (x,) if isinstance(x, numbers.Integral) else tuple(x) if isinstance(x, list | tuple) else ()
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, numbers.Integral) and d >= 1 for d in dims):
        return None
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


def lookup(key: str) -> CustomOp:
    """The CustomOp that ops with attrs definition=key were made from."""
    found = DEFINITIONS.get(key)
    if found is None:
        raise GraphflowError(f"custom op {key!r} is not defined in this process: run the "
                             "gf.custom_op(...) call that defines it (same kernel and source) "
                             "before using a graph that holds it")
    return found


def custom_op(source, kernel: str, output: Callable, launch: Callable, *,
              args: Callable | None = None, grad: Callable | None = None,
              reference: Callable | None = None, flops: Callable | None = None) -> CustomOp:
    """A user's CUDA C kernel as an op builder (see docs/custom_ops.md).

    source: CUDA C text, or a path (os.PathLike) to a .cu file. kernel: the __global__
    function to launch; its pointer parameters are the inputs then the output, its other
    parameters the scalars that `args` returns. output(*input_specs) -> (shape, dtype).
    launch(*specs) -> (grid, block[, shared_bytes]), specs being the inputs' and the
    output's. grad(op, dy) -> a gradient (or None) per input; for a one-input op grad may
    be another custom op, called as grad(x, dy) or grad(x, y, dy). reference(*arrays) -> array
    runs the op on the `reference` device (else the kernel runs there through the cpu
    emulator). flops(*specs) -> int feeds the stats.
    """
    return CustomOp(source, kernel, output, launch, args, grad, reference, flops,
                    site=definition_site())


# ---- the op type ------------------------------------------------------------------------------
def _infer(specs, definition: str) -> Spec:
    return lookup(definition).output_spec(list(specs))


def _compute(*arrays, definition: str) -> np.ndarray:
    d = lookup(definition)
    out = d.output_spec([Spec(a.shape, as_dtype(a.dtype)) for a in arrays])
    if d.reference is None:
        from graphflow.codegen.emit.custom import run_on_cpu  # the kernel on the cpu emulator
        return run_on_cpu(d, list(arrays), out)
    value = np.asarray(d.reference(*arrays))
    if value.shape != out.shape:
        raise ShapeError(f"the reference function of {d.where} returned shape {list(value.shape)}"
                         f", but the output rule says {list(out.shape)}")
    return value.astype(out.dtype.np, copy=False)


def _grad(op: Operation, dy: Tensor) -> list:
    d = lookup(op.attrs["definition"])
    if d.grad_rule is None:
        raise GraphflowError(f"no gradient is defined for {op.describe()}: pass grad= to "
                             f"{d.where}, or wrap the op's output in gf.stop_gradient")
    if isinstance(d.grad_rule, CustomOp):  # a backward kernel: (x, dy) or (x, y, dy) -> dx
        ins = list(op.inputs) + (list(op.outputs) if d.grad_rule.n_inputs == 3 else [])
        return [d.grad_rule(*ins, dy, name=f"{d.grad_rule.kernel}")]
    grads = d.grad_rule(op, dy)
    if isinstance(grads, Tensor) or grads is None:
        grads = [grads]
    return list(grads)


# stateful: never folded or merged (the kernel may be anything, atomics included)
register("CustomOp", infer=_infer, compute=_compute, grad=_grad, stateful=True)
