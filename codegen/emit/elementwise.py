"""Elementwise ops: one scalar C expression per op, one broadcasting kernel template.

SCALAR maps an op type to a function of the operand expressions; the kernel
template loads operands (with broadcast index math), applies the expression
and stores. A fused kernel composes the same expressions.
"""

from __future__ import annotations

from graphflow.graph import Operation, Tensor

from ..kernel import (
    EmitContext,
    KernelBuilder,
    Launch,
    add_map_kernel,
    compute_ctype,
    ctype,
    index_type_for,
    numel,
)
from . import emitter


class Dialect:
    """Spelling of math for one dtype: f-suffixed float functions and literals."""

    def __init__(self, dtype) -> None:
        self.dtype = dtype
        self.c = compute_ctype(dtype)
        self.is_float = dtype.is_floating
        self._suffix = "f" if self.c == "float" else ""

    def fn(self, name: str) -> str:
        return name + self._suffix

    def lit(self, value: float) -> str:
        if not self.is_float:
            return str(int(value))
        text = repr(float(value))
        if text in ("inf", "-inf", "nan"):
            return {"inf": "INFINITY", "-inf": "(-INFINITY)", "nan": "NAN"}[text]
        return text + self._suffix


def _abs(a, t):
    return f"{t.fn('fabs')}({a[0]})" if t.is_float else f"({a[0]} < 0 ? -{a[0]} : {a[0]})"


def _div(a, t):
    return f"({a[0]} / {a[1]})" if t.is_float else f"gf_floordiv({a[0]}, {a[1]})"


def _pow(a, t):
    return f"{t.fn('pow')}({a[0]}, {a[1]})" if t.is_float else f"gf_ipow({a[0]}, {a[1]})"


def _softplus(a, t):
    x = a[0]
    return f"(({x} > {t.lit(0)} ? {x} : {t.lit(0)}) + {t.fn('log1p')}({t.fn('exp')}(-{t.fn('fabs')}({x}))))"


def _gelu_tanh(a, t):
    x = a[0]
    return (
        f"({t.lit(0.5)} * {x} * ({t.lit(1)} + {t.fn('tanh')}({t.lit(0.7978845608028654)} * "
        f"({x} + {t.lit(0.044715)} * {x} * {x} * {x}))))"
    )


# op type -> (operand expressions, Dialect of the operands) -> C expression
SCALAR = {
    "Add": lambda a, t: f"({a[0]} + {a[1]})",
    "Sub": lambda a, t: f"({a[0]} - {a[1]})",
    "Mul": lambda a, t: f"({a[0]} * {a[1]})",
    "Div": _div,
    "Pow": _pow,
    # NaN-propagating like numpy's maximum/minimum
    "Maximum": lambda a, t: f"(({a[0]} != {a[0]} || {a[0]} > {a[1]}) ? {a[0]} : {a[1]})",
    "Minimum": lambda a, t: f"(({a[0]} != {a[0]} || {a[0]} < {a[1]}) ? {a[0]} : {a[1]})",
    "Equal": lambda a, t: f"({a[0]} == {a[1]})",
    "NotEqual": lambda a, t: f"({a[0]} != {a[1]})",
    "Less": lambda a, t: f"({a[0]} < {a[1]})",
    "LessEqual": lambda a, t: f"({a[0]} <= {a[1]})",
    "Greater": lambda a, t: f"({a[0]} > {a[1]})",
    "GreaterEqual": lambda a, t: f"({a[0]} >= {a[1]})",
    "LogicalAnd": lambda a, t: f"({a[0]} && {a[1]})",
    "LogicalOr": lambda a, t: f"({a[0]} || {a[1]})",
    "BitwiseAnd": lambda a, t: f"({a[0]} & {a[1]})",
    "BitwiseOr": lambda a, t: f"({a[0]} | {a[1]})",
    "BitwiseXor": lambda a, t: f"({a[0]} ^ {a[1]})",
    "BitwiseNot": lambda a, t: f"(~{a[0]})",
    "FMod": lambda a, t: f"{t.fn('fmod')}({a[0]}, {a[1]})",
    "FloorMod": lambda a, t: f"gf_floormod({a[0]}, {a[1]})",
    "LeftShift": lambda a, t: f"gf_shl({a[0]}, {a[1]})",
    "RightShift": lambda a, t: f"gf_shr({a[0]}, {a[1]})",
    "Neg": lambda a, t: f"(-{a[0]})",
    "Abs": _abs,
    "Sign": lambda a, t: f"({t.c})(({a[0]} > {t.lit(0)}) - ({a[0]} < {t.lit(0)}))",
    "Square": lambda a, t: f"({a[0]} * {a[0]})",
    "Sqrt": lambda a, t: f"{t.fn('sqrt')}({a[0]})",
    "Rsqrt": lambda a, t: f"({t.lit(1)} / {t.fn('sqrt')}({a[0]}))",
    "Exp": lambda a, t: f"{t.fn('exp')}({a[0]})",
    "Log": lambda a, t: f"{t.fn('log')}({a[0]})",
    "Sin": lambda a, t: f"{t.fn('sin')}({a[0]})",
    "Cos": lambda a, t: f"{t.fn('cos')}({a[0]})",
    "Tanh": lambda a, t: f"{t.fn('tanh')}({a[0]})",
    "Erf": lambda a, t: f"{t.fn('erf')}({a[0]})",
    "Sigmoid": lambda a, t: f"gf_sigmoid({a[0]})",
    "Relu": lambda a, t: f"({a[0]} < {t.lit(0)} ? {t.lit(0)} : {a[0]})",
    "Gelu": lambda a, t: (
        f"({t.lit(0.5)} * {a[0]} * ({t.lit(1)} + {t.fn('erf')}({a[0]} * {t.lit(0.7071067811865476)})))"
    ),
    "GeluTanh": _gelu_tanh,
    "Silu": lambda a, t: f"({a[0]} * gf_sigmoid({a[0]}))",
    "Softplus": _softplus,
    "Elu": lambda a, t: f"({a[0]} > {t.lit(0)} ? {a[0]} : {t.fn('expm1')}({a[0]}))",
    "Log1p": lambda a, t: f"{t.fn('log1p')}({a[0]})",
    "Floor": lambda a, t: f"{t.fn('floor')}({a[0]})",
    "Ceil": lambda a, t: f"{t.fn('ceil')}({a[0]})",
    # rint rounds half to even in the default rounding mode (TF's round)
    "Round": lambda a, t: f"{t.fn('rint')}({a[0]})" if t.is_float else a[0],
    "Select": lambda a, t: f"({a[0]} ? {a[1]} : {a[2]})",
    "BroadcastTo": lambda a, t: a[0],
    "BroadcastLike": lambda a, t: a[0],
    "Assign": lambda a, t: a[0],
    "AssignAdd": lambda a, t: f"({a[0]} + {a[1]})",
    "AssignSub": lambda a, t: f"({a[0]} - {a[1]})",
}

HELPERS = r"""
__device__ __forceinline__ float gf_sigmoid(float x) {
  const float e = expf(-fabsf(x));
  return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}
__device__ __forceinline__ double gf_sigmoid(double x) {
  const double e = exp(-fabs(x));
  return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}
template <typename T> __device__ __forceinline__ T gf_floordiv(T a, T b) {
  const T q = a / b;  // C truncates; numpy floors
  return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}
// numpy's float mod: the remainder takes the divisor's sign (a zero one too)
__device__ __forceinline__ float gf_floormod(float a, float b) {
  float r = fmodf(a, b);
  if (r != 0.0f) return ((r < 0.0f) != (b < 0.0f)) ? r + b : r;
  return copysignf(0.0f, b);
}
__device__ __forceinline__ double gf_floormod(double a, double b) {
  double r = fmod(a, b);
  if (r != 0.0) return ((r < 0.0) != (b < 0.0)) ? r + b : r;
  return copysign(0.0, b);
}
// shifts by the bit width or more: 0 (a right shift of a negative number: -1), as numpy
template <typename T> __device__ __forceinline__ T gf_shl(T a, T b) {
  return (unsigned long long)b >= 8 * sizeof(T) ? (T)0 : (T)((unsigned long long)a << b);
}
template <typename T> __device__ __forceinline__ T gf_shr(T a, T b) {
  return (unsigned long long)b >= 8 * sizeof(T) ? (T)(a < 0 ? -1 : 0) : (T)(a >> b);
}
template <typename T> __device__ __forceinline__ T gf_ipow(T base, T e) {
  T r = 1;
  for (; e > 0; e >>= 1, base *= base) if (e & 1) r *= base;
  return r;
}
"""


def operand_offset(kb: KernelBuilder, t: Tensor, out: Tensor, idx: str, checks: list,
                   split: tuple[str, str] | None = None) -> str:
    """C expression for where flat output index `idx` reads operand t (numpy broadcasting).
    `split` = (row, last): the loop walks rows of out's last dim (idx == row * len + last), so
    the coordinates come from those two, and only the row's part divides."""
    if all(d == 1 for d in t.shape):
        return "0"
    if tuple(t.shape) == tuple(out.shape):
        if None in t.shape:  # assumed equal at run time: say so if not
            checks.append(
                lambda shapes, t=t: (
                    None
                    if shapes[t] == shapes[out]
                    else (
                        f"operand {t.name} has run-time shape {list(shapes[t])} but the result has "
                        f"{list(shapes[out])}; broadcasting a None dim of size 1 is not supported"
                    )
                )
            )
        return idx
    rank, lead = len(out.shape), len(out.shape) - len(t.shape)
    terms, stride = [], "1"
    rest = idx if split is None else split[0]
    coords = []
    for axis in reversed(range(rank)):  # unravel idx over the output dims
        size = kb.dim(out, axis)
        if split is not None and axis == rank - 1:
            coords.append((axis, split[1]))
            continue
        coords.append((axis, f"({rest}) % {size}" if axis else rest))
        rest = f"({rest}) / {size}"
    for axis, coord in coords:
        in_axis = axis - lead
        if in_axis < 0 or t.shape[in_axis] == 1:
            continue
        if t.shape[in_axis] is None and out.shape[axis] is not None:
            checks.append(
                lambda shapes, t=t, a=in_axis, n=out.shape[axis]: (
                    None
                    if shapes[t][a] == n
                    else f"operand {t.name} dim {a} is {shapes[t][a]} at run time, not {n}"
                )
            )
        terms.append(f"({coord}) * {stride}" if stride != "1" else f"({coord})")
        stride = f"{stride} * {kb.dim(t, in_axis)}" if stride != "1" else kb.dim(t, in_axis)
    return " + ".join(terms) if terms else "0"


def emit_map(
    ctx: EmitContext,
    op: Operation,
    expr,
    operands: list[Tensor],
    base: str,
    extra_helpers: str = "",
    scalars=None,
) -> None:
    """out[i] = expr(loaded operands, i) over the output, with broadcasting.

    `scalars(kb)` may register launch-time scalar parameters the expression uses.
    """
    out = op.outputs[0]
    kb = ctx.builder(base, [op])
    out_ptr = kb.output(out)
    if scalars is not None:
        scalars(kb)
    itype = index_type_for(out, *operands)
    checks: list = []
    loads = []
    for j, t in enumerate(operands):
        ptr = kb.input(t)
        offset = operand_offset(kb, t, out, "i", checks)
        loads.append(f"const {compute_ctype(t.dtype)} v{j} = {ptr}[{offset}];")
    value = expr([f"v{j}" for j in range(len(operands))])
    inner = "\n".join(loads + [f"{out_ptr}[i] = ({ctype(out.dtype)})({value});"])
    add_map_kernel(ctx, kb, out, inner, itype, f"{op.type} over {list(out.shape)}",
                   flops=lambda s: numel(s[out]), checks=checks, helpers=(HELPERS, extra_helpers))


def _base_name(op: Operation) -> str:
    from graphflow.graph import _default_name

    return _default_name(op.type)


@emitter(*[t for t in SCALAR if t not in ("Assign",)])
def emit_elementwise(ctx: EmitContext, op: Operation) -> None:
    operands = list(op.inputs)
    dialect = Dialect(operands[-1].dtype if op.type == "Select" else operands[0].dtype)
    if op.type in ("BroadcastLike",):
        operands = operands[:1]
    emit_map(ctx, op, lambda a: SCALAR[op.type](a, dialect), operands, _base_name(op))


@emitter("Assign")
def emit_assign(ctx: EmitContext, op: Operation) -> None:
    # a plain assign never reads the old value (it may be uninitialized)
    emit_map(ctx, op, lambda a: a[0], [op.inputs[1]], "assign")


@emitter("Cast")
def emit_cast(ctx: EmitContext, op: Operation) -> None:
    target = op.outputs[0].dtype
    expr = (lambda a: f"({a[0]} != 0)") if target.is_bool else (lambda a: f"({ctype(target)})({a[0]})")
    emit_map(ctx, op, expr, [op.inputs[0]], "cast")


@emitter("FillLike")
def emit_fill(ctx: EmitContext, op: Operation) -> None:
    lit = Dialect(op.outputs[0].dtype).lit(op.attrs["value"])
    emit_map(ctx, op, lambda a: lit, [], "fill")


@emitter("AddN")
def emit_add_n(ctx: EmitContext, op: Operation) -> None:
    emit_map(ctx, op, lambda a: "(" + " + ".join(a) + ")", list(op.inputs), "add_n")


@emitter("ReducedSize")
def emit_reduced_size(ctx: EmitContext, op: Operation) -> None:
    x, out = op.inputs[0], op.outputs[0]
    kb = ctx.builder("reduced_size", [op])
    out_ptr = kb.output(out)
    size = " * ".join(f"(long long){kb.dim(x, a)}" for a in op.attrs["axis"]) or "1"
    body = f"  if (blockIdx.x == 0 && threadIdx.x == 0) {out_ptr}[0] = ({ctype(out.dtype)})({size});\n"
    ctx.add(
        kb.build(
            body,
            lambda shapes, device: Launch((1, 1, 1), (1, 1, 1)),
            comment="element count of a reduction (run-time dims)",
        )
    )
