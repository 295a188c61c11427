"""Reading a user's CUDA C source (for gf.custom_op): its kernels and their parameters.

Text analysis only, nothing is emitted here: `blank` hides comments and string literals
without moving any character (so positions found in it are positions in the source),
`find_kernel` parses one ``__global__`` function's signature, and `locate` finds where the
source text lies in the user's own file, so that compiler messages can name that file and
line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .codegen.ctext import matching_bracket, split_top
from .errors import GraphflowError

_NOISE = re.compile(r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", re.S)
_KERNEL = re.compile(
    r"\b__global__\b(?:\s*(?:__launch_bounds__\s*\([^()]*\)|\w+|\*))*?\s*(?!__launch_bounds__)(\w+)\s*\(")
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict", "struct"}

# C spellings of scalar parameters -> the C type graphflow passes (one of the launch table's)
SCALAR_CTYPES = {
    "int": "int", "signed": "int", "signed int": "int", "int32_t": "int",
    "long long": "long long", "long long int": "long long", "int64_t": "long long",
    "long": "long long", "long int": "long long", "ptrdiff_t": "long long",
    "unsigned long long": "unsigned long long", "unsigned long long int": "unsigned long long",
    "uint64_t": "unsigned long long", "size_t": "unsigned long long",
    "unsigned long": "unsigned long long",
    "float": "float", "double": "double",
}
# element types of pointer parameters -> graphflow dtype names
POINTER_DTYPES = {
    "float": "float32", "double": "float64", "int": "int32", "int32_t": "int32",
    "long long": "int64", "long long int": "int64", "int64_t": "int64", "long": "int64",
    "bool": "bool", "__half": "float16", "half": "float16",
}


def blank(source: str) -> str:
    """`source` with comments and the insides of string/char literals turned into spaces
    (newlines kept): the same length, so every index still points at the same character."""
    def hide(m: re.Match) -> str:
        text = m.group()
        if text[0] == "/":
            return re.sub(r"[^\n]", " ", text)
        return text[0] + " " * (len(text) - 2) + text[-1]
    return _NOISE.sub(hide, source)


def kernel_names(source: str) -> list[str]:
    """The names of the ``__global__`` functions in `source`, in order."""
    names: list[str] = []
    for m in _KERNEL.finditer(blank(source)):
        if m.group(1) not in names:
            names.append(m.group(1))
    return names


@dataclass(frozen=True)
class KernelParam:
    name: str
    base: str        # the scalar or element type, qualifiers dropped: 'float', 'T', 'long long'
    pointer: bool
    written: str     # as declared, e.g. 'const float* __restrict__ a'


@dataclass(frozen=True)
class KernelSignature:
    name: str
    params: tuple[KernelParam, ...]
    template: tuple[str, ...]   # template parameter names (a function template), else ()
    line: int                   # line of the kernel's name in the source (1-based)

    @property
    def pointers(self) -> list[KernelParam]:
        return [p for p in self.params if p.pointer]

    @property
    def scalars(self) -> list[KernelParam]:
        return [p for p in self.params if not p.pointer]


def _param(text: str, index: int) -> KernelParam:
    declared = " ".join(text.split())
    text = text.split("=")[0]
    pointer = "*" in text or "[" in text
    text = re.sub(r"\[[^\]]*\]", " ", text).replace("*", " * ").replace("&", " & ")
    words = [w for w in text.split() if w not in _QUALIFIERS]
    name = f"p{index}"
    if len(words) >= 2 and re.fullmatch(r"[A-Za-z_]\w*", words[-1]) and words[-1] not in (
            "int", "long", "float", "double", "char", "short", "unsigned", "signed", "bool"):
        name = words.pop()
    base = " ".join(w for w in words if w not in ("*", "&"))
    return KernelParam(name, base, pointer, declared)


def find_kernel(source: str, name: str) -> KernelSignature | None:
    """The signature of the ``__global__`` function `name`, or None if there is none."""
    text = blank(source)
    for m in _KERNEL.finditer(text):
        if m.group(1) != name:
            continue
        open_paren = m.end() - 1
        close = matching_bracket(text, open_paren, "(", ")")
        inside = text[open_paren + 1:close - 1].strip()
        parts = [] if inside in ("", "void") else split_top(inside)
        params = tuple(_param(p, i) for i, p in enumerate(parts))
        before = text[:m.start()]
        template: tuple[str, ...] = ()
        t = re.search(r"template\s*<([^<>]*)>\s*(?:(?:extern\s*\"\s*\"|static|inline)\s*)*$", before)
        if t:
            template = tuple(re.findall(r"(\w+)\s*(?:=[^,]*)?(?:,|$)", t.group(1)))
        return KernelSignature(name, params, template, text.count("\n", 0, m.start(1)) + 1)
    return None


def global_positions(source: str) -> list[int]:
    """Indices of every ``__global__`` keyword outside comments and strings."""
    return [m.start() for m in re.finditer(r"\b__global__\b", blank(source))]


def launch_bounds_spans(source: str) -> list[tuple[int, int]]:
    """(start, end) of every ``__launch_bounds__(...)`` outside comments and strings."""
    text = blank(source)
    spans = []
    for m in re.finditer(r"\b__launch_bounds__\s*\(", text):
        spans.append((m.start(), matching_bracket(text, m.end() - 1, "(", ")")))
    return spans


def extern_c_spans(source: str) -> list[tuple[int, int]]:
    """(start, end) of ``extern "C"`` written just before a ``__global__`` function."""
    text = blank(source)
    return [(m.start(), m.end()) for m in re.finditer(r'\bextern\s*"\s"\s*(?=__global__\b)', text)
            if source[m.start():m.end()].replace(" ", "").startswith('extern"C"')]


def include_spans(source: str) -> list[tuple[int, int]]:
    """(start, end) of every #include directive line (without its newline)."""
    return [m.span() for m in re.finditer(r"^[ \t]*#[ \t]*include\b[^\n]*", blank(source), re.M)]


def dynamic_shared_decls(source: str) -> list[tuple[int, int, str, str, bool]]:
    """``extern __shared__ T name[];`` declarations: (start, end, T, name, inside a function)."""
    text = blank(source)
    found = []
    for m in re.finditer(r"\bextern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?"
                         r"([A-Za-z_][\w\s]*?)\s+([A-Za-z_]\w*)\s*\[\s*\]\s*;", text):
        depth = text.count("{", 0, m.start()) - text.count("}", 0, m.start())
        found.append((m.start(), m.end(), " ".join(m.group(1).split()), m.group(2), depth > 0))
    return found


def locate(source: str, filename: str | None) -> tuple[str, int] | None:
    """(file, line of the source's first line) when `filename` holds `source` verbatim once
    (a triple-quoted literal in the user's .py file, a .md block); else None."""
    if not filename or not os.path.isfile(filename) or not source.strip():
        return None
    try:
        with open(filename, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    i = text.find(source)
    if i < 0 or text.find(source, i + 1) >= 0:
        return None
    return filename, text.count("\n", 0, i) + 1


def check_kernel_name(source: str, name: str, where: str) -> KernelSignature:
    """The kernel's signature, or a GraphflowError listing the kernels the source has."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise GraphflowError(f"{where}: kernel must be the name of a __global__ function, "
                             f"got {name!r}")
    sig = find_kernel(source, name)
    if sig is None:
        names = kernel_names(source)
        found = f"its kernels are {names}" if names else "it has no __global__ function"
        raise GraphflowError(f"{where}: no __global__ function named {name!r} in the source "
                             f"({found})")
    return sig
