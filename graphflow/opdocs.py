"""docs/ops.md, generated from the op registry.

    python -m graphflow.opdocs            # rewrite docs/ops.md
    python -m graphflow.opdocs --check    # exit 1 if docs/ops.md is stale

Each op type of the registry gets one row: the public functions that make it (found by
calling them on a small probe graph, below), its inputs and attrs, the dtypes its shape
rule accepts (found by asking the rule), whether it has a gradient, and the devices that
run it (the numpy reference, and the compiled devices when codegen has an emitter or runs
the op on the host). Ops only the gradient machinery makes say which op they are the
backward of.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Callable

import numpy as np

from . import registry
from .dtypes import ALL as ALL_DTYPES
from .graph import Graph, Operation, Tensor
from .registry import NO_GRADIENT, Spec

DOCS_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                         "ops.md")


# ---- the probe graph ----------------------------------------------------------------
class _Probe:
    """Calls public functions by name on one graph and records which op each returns."""

    def __init__(self) -> None:
        self.graph = Graph()
        self.made_by: dict[str, list[str]] = {}    # op type -> public functions returning it
        self.inside: dict[str, list[str]] = {}     # op type -> calls it was made inside of
        self.functions: dict[str, Callable] = {}

    def __call__(self, api: str, *args, **kwargs):
        import graphflow as gf
        fn = gf
        for part in api.split(".")[1:]:
            fn = getattr(fn, part)
        self.functions[api] = fn
        first = self.graph.version
        with self.graph.as_default():
            result = fn(*args, **kwargs)
        made = result.op if isinstance(result, Tensor) else result
        if isinstance(made, Operation) and made.graph is self.graph and made.id >= first:
            _add(self.made_by, made.type, api)
        for op in self.graph.get_operations()[first:]:
            if op.grad_of is None:
                _add(self.inside, op.type, api)
        return result


def _add(table: dict, key: str, value: str) -> None:
    if value not in table.setdefault(key, []):
        table[key].append(value)


def example_graph() -> Graph:
    """A graph holding at least one op of every registered type (tests save and load it)."""
    return _probe().graph


_PROBE_KERNEL = """
__global__ void probe_scale(const float* x, float* y, long long n) {
    for (long long i = threadIdx.x; i < n; i += blockDim.x) y[i] = 2.0f * x[i];
}
"""


def _probe() -> _Probe:
    """One use of every public op function (extend it when you add an op)."""
    p = _Probe()
    f32 = np.float32
    x = p("gf.placeholder", "float32", [None, 4], name="x")
    i = p("gf.placeholder", "int64", [None], name="i")
    img = p("gf.placeholder", "float32", [2, 4, 4, 2], name="img")
    c = p("gf.constant", np.ones(4, f32))
    v = p("gf.Variable", np.ones(4, f32), name="v")
    p("gf.assign", v, c)
    p("gf.assign_add", v, c)
    p("gf.distributed.allreduce", c)
    p("gf.distributed.allreduce_gradients", [(c, v)])
    p("gf.distributed.broadcast_variables", 0, [v])
    p("gf.assign_sub", v, c)
    p("gf.group", v.initializer)
    p("gf.no_op")
    for name in ("abs", "sign", "negative", "square", "sqrt", "rsqrt", "exp", "log", "sin",
                 "cos", "tanh", "sigmoid", "erf"):
        p(f"gf.{name}", x)
    for name in ("relu", "gelu", "silu", "softplus", "softmax", "log_softmax"):
        p(f"gf.nn.{name}", x)
    p("gf.nn.gelu", x, approximate=True)
    for name in ("add", "subtract", "multiply", "divide", "pow", "maximum", "minimum",
                 "equal", "not_equal", "less", "less_equal", "greater", "greater_equal"):
        p(f"gf.{name}", x, c)
    b = p("gf.less", x, c)
    p("gf.logical_and", b, b)
    p("gf.logical_or", b, b)
    p("gf.floordiv", i, i)
    for name in ("bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift"):
        p(f"gf.ops.elementwise.{name}", i, i)
    p("gf.ops.elementwise.bitwise_not", i)
    p("gf.ops.elementwise.fmod", x, c)
    p("gf.ops.elementwise.floormod", x, c)
    p("gf.where", b, x, c)
    p("gf.cast", x, "float64")
    p("gf.identity", x)
    p("gf.stop_gradient", x)
    p("gf.zeros_like", x)
    p("gf.ones_like", x)
    p("gf.zeros", [2, 3])
    for name in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "argmax", "argmin",
                 "cumsum"):
        p(f"gf.{name}", x, 1)
    p("gf.matmul", x, p("gf.ones", [4, 3]))
    p("gf.reshape", x, [-1, 2, 2])
    p("gf.transpose", x)
    p("gf.expand_dims", x, 1)
    p("gf.squeeze", p("gf.expand_dims", x, 1), 1)
    p("gf.broadcast_to", c, [3, 4])
    p("gf.strided_slice", x, (slice(None), 1))
    p("gf.concat", [x, x], 1)
    p("gf.stack", [x, x], 1)
    p("gf.gather", x, i)
    p("gf.nn.embedding_lookup", x, i)
    p("gf.one_hot", i, 4)
    p("gf.add_n", [x, x, x])
    p("gf.random_uniform", [2, 3], seed=1)
    p("gf.random_normal", [2, 3], seed=1)
    p("gf.truncated_normal", [2, 3], seed=1)
    p("gf.nn.dropout", x, 0.5, seed=1)
    p("gf.nn.layer_norm", x, c, c)
    logits = p("gf.matmul", x, p("gf.ones", [4, 3]))
    p("gf.nn.sparse_softmax_cross_entropy_with_logits", labels=i, logits=logits)
    p("gf.nn.softmax_cross_entropy_with_logits", labels=p("gf.one_hot", i, 3), logits=logits)
    conv = p("gf.nn.conv2d", img, p("gf.ones", [3, 3, 2, 2]), 1, "SAME")
    pooled = p("gf.nn.max_pool2d", conv, 2, 2, "VALID")
    avg = p("gf.nn.avg_pool2d", conv, 2, 2, "VALID")
    for name in ("log1p", "floor", "ceil", "round"):
        p(f"gf.{name}", x)
    p("gf.nn.elu", x)
    p("gf.reduce_prod", x, 1)
    tiled = p("gf.tile", x, [2, 1])
    padded = p("gf.pad", x, [[0, 0], [1, 1]])
    mirrored = p("gf.pad", x, [[0, 0], [1, 1]], mode="REFLECT")
    seq = p("gf.placeholder", "float32", [None, 5, 4], name="seq")
    states = p("gf.placeholder", "float32", [None, 5, 3], name="states")
    scan = p("gf.nn.selective_scan", seq, seq, p("gf.ones", [4, 3]), states, states)
    scale = p("gf.custom_op", _PROBE_KERNEL, "probe_scale", output=lambda x: (x.shape, x.dtype),
              launch=lambda x, y: (1, 32), args=lambda x, y: [int(np.prod(x.shape))])
    with p.graph.as_default():
        scale(x)
    _add(p.made_by, "CustomOp", "gf.custom_op")  # the op comes from calling what it returns
    # backward ops: the gradients of everything above, and of those gradients
    p("gf.gradients", p("gf.add_n", [p("gf.reduce_sum", t) for t in (
        tiled, padded, mirrored, p("gf.reduce_prod", x, 1), scan)]), [x, seq, states])
    scalars = [p("gf.reduce_sum", t) for t in (logits, pooled, avg,
                                                p("gf.nn.layer_norm", x, c, c),
                                                p("gf.nn.softmax", x),
                                                p("gf.concat", [x, x], 1),
                                                p("gf.reduce_mean", p("gf.strided_slice", x,
                                                                      (slice(None), 1))),
                                                p("gf.gather", v, i))]
    grads = p("gf.gradients", p("gf.add_n", scalars), [x, img, v])
    p("gf.gradients", p("gf.add_n", [p("gf.reduce_sum", p("gf.square", g)) for g in grads]),
      [x, img, v])
    return p


# ---- what the registry says -------------------------------------------------------
def _example(graph: Graph, op_type: str) -> Operation | None:
    return next((op for op in graph.get_operations() if op.type == op_type), None)


def _input_names(op_def: registry.OpDef, op: Operation) -> list[str]:
    """The compute function's parameter names for the op's inputs."""
    try:
        params = list(inspect.signature(op_def.compute).parameters.values())
    except (TypeError, ValueError):  # numpy ufuncs
        params = []
    names = []
    for prm in params:
        if prm.name in op.attrs or prm.name == "ctx":
            continue
        if prm.kind is prm.VAR_POSITIONAL:
            return names + [f"*{prm.name}"]
        if prm.kind in (prm.POSITIONAL_ONLY, prm.POSITIONAL_OR_KEYWORD):
            names.append(prm.name)
    if len(names) != len(op.inputs):
        names = ["x", "y", "z", "w"][:len(op.inputs)]
    return names


def _dtypes(op_def: registry.OpDef, op: Operation) -> list[str]:
    """Dtypes d for which the shape rule accepts the example with its main dtype set to d."""
    out = op.outputs[0].dtype if op.outputs else None
    if op.inputs:  # the input dtype the output follows (where's branches, not its condition)
        main = out if any(t.dtype is out for t in op.inputs) else op.inputs[0].dtype
    else:
        main = op.attrs.get("dtype", out)
    if main is None:
        return []
    accepted = []
    for d in ALL_DTYPES:
        specs = [Spec(tuple(t.shape), d if t.dtype is main else t.dtype) for t in op.inputs]
        attrs = {k: (d if v is main else v.astype(d.np) if isinstance(v, np.ndarray)
                     and v.dtype == main.np else v) for k, v in op.attrs.items()}
        try:
            op_def.infer(specs, **attrs)
        except Exception:  # noqa: BLE001 - any refusal means "not this dtype"
            continue
        accepted.append(d.name)
    return accepted


def _gradient(op_def: registry.OpDef) -> str:
    if op_def.grad is None:
        return "missing"
    return "none" if op_def.grad is NO_GRADIENT else "yes"


def _compiled_types() -> set[str]:
    """Op types the compiled devices (cpu, cuda) run: an emitter, or handled on the host."""
    from graphflow.codegen import compile as compiler
    from graphflow.codegen.emit import load_all
    return (set(load_all()) | set(getattr(compiler, "HOST_OPS", ()))
            | set(getattr(compiler, "ALIAS_OPS", ())))


def _api(probe: _Probe, op_type: str, graph: Graph) -> str:
    made = probe.made_by.get(op_type)
    if made:
        return "<br>".join(f"`{name}{_signature(probe.functions[name])}`" for name in made)
    forward = sorted({op.grad_of.type for op in graph.get_operations()
                      if op.type == op_type and op.grad_of is not None})
    inside = probe.inside.get(op_type, [])
    parts = []
    if inside:
        parts.append("inside " + ", ".join(f"`{name}`" for name in inside))
    if forward:
        parts.append("in gradients of " + ", ".join(forward))
    return "; ".join(parts) or "(no example in graphflow/opdocs.py)"


def _signature(fn: Callable) -> str:
    """(a, b=1, *, name=None): the parameters without annotations."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return "(...)"
    parts = []
    for prm in params:
        text = ("*" if prm.kind is prm.VAR_POSITIONAL else "**" if prm.kind is prm.VAR_KEYWORD
                else "") + prm.name
        if prm.default is not prm.empty:
            text += f"={prm.default!r}"
        parts.append(text)
    return "(" + ", ".join(parts) + ")"


def _dtype_text(names: list[str]) -> str:
    if not names:
        return "-"
    if names == [d.name for d in ALL_DTYPES]:
        return "all"
    return ", ".join(names)


def devices_of(op_type: str, compiled: set[str] | None = None) -> list[str]:
    """The devices that run `op_type`: reference (a numpy reference), cpu and cuda (a kernel)."""
    compiled = _compiled_types() if compiled is None else compiled
    devices = ["reference"] if registry.OPS[op_type].compute is not None else []
    return devices + (["cpu", "cuda"] if op_type in compiled else [])


def generate() -> str:
    """The text of docs/ops.md."""
    probe = _probe()
    graph = probe.graph
    compiled = _compiled_types()
    lines = [
        "# Supported ops",
        "",
        "Generated from the op registry by `python -m graphflow.opdocs`; do not edit by hand",
        "(the tests regenerate it and compare).",
        "",
        "- **API**: the public functions that return this op (backward-only ops name the ops",
        "  whose gradient makes them).",
        "- **inputs; attrs**: the op's tensor inputs, then its attributes (fixed at build time).",
        "- **dtypes**: the dtypes its shape rule accepts for its main input (or output).",
        "  On the compiled devices float16 runs in elementwise and data-movement kernels",
        "  only: see [devices.md](devices.md).",
        "- **gradient**: `yes` (differentiable), `none` (no gradient flows through it by",
        "  definition: comparisons, integer outputs, random numbers, state).",
        "- **devices**: `reference` is the numpy interpreter; `cpu` and `cuda` run the",
        "  generated CUDA C.",
        "",
        f"{len(registry.OPS)} op types.",
        "",
        "| op | API | inputs; attrs | dtypes | gradient | devices |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for op_type in sorted(registry.OPS):
        op_def = registry.OPS[op_type]
        op = _example(graph, op_type)
        if op is None:
            signature, dtypes = "?", "?"
        else:
            attrs = ", ".join(op.attrs)
            signature = (", ".join(_input_names(op_def, op)) or "-") + (f"; {attrs}" if attrs else "")
            dtypes = _dtype_text(_dtypes(op_def, op))
        devices = devices_of(op_type, compiled)
        lines.append(f"| {op_type} | {_api(probe, op_type, graph)} | {signature or '-'} | "
                     f"{dtypes} | {_gradient(op_def)} | {', '.join(devices)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/ops.md, or with --check report whether it is up to date."""
    parser = argparse.ArgumentParser(prog="python -m graphflow.opdocs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", default=DOCS_PATH, help="output file")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        try:
            with open(args.path) as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{args.path} is stale: run python -m graphflow.opdocs", file=sys.stderr)
            return 1
        return 0
    with open(args.path, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

