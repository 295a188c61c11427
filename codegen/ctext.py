"""Reading generated CUDA C back: top-level definitions, the names they use, static shared memory.

A dump wants two facts from a kernel's text without running a compiler: which `__device__`
helpers the kernel really uses (so a standalone file carries only those, transitively), and
how many bytes of static `__shared__` memory it declares (the `smem` figure ptxas reports).
The text is graphflow's own generated C, so a small scanner suffices: brace depth, comments,
`template <...>` headers, `struct` bodies with fields and typedefs.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

_IDENT = re.compile(r"[A-Za-z_]\w*")
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_NOT_NAMES = {"__align__", "__launch_bounds__", "__attribute__", "alignas", "decltype", "sizeof"}

# (size, alignment) in bytes of the scalar C types the emitters declare
SCALARS = {
    "bool": (1, 1), "char": (1, 1), "signed char": (1, 1), "unsigned char": (1, 1),
    "short": (2, 2), "unsigned short": (2, 2), "__half": (2, 2), "__nv_bfloat16": (2, 2),
    "int": (4, 4), "unsigned": (4, 4), "unsigned int": (4, 4), "float": (4, 4),
    "long long": (8, 8), "long long int": (8, 8), "unsigned long long": (8, 8),
    "size_t": (8, 8), "double": (8, 8),
    "float2": (8, 8), "int2": (8, 8), "float4": (16, 16), "int4": (16, 16), "double2": (16, 16),
}


@dataclass(frozen=True)
class Definition:
    """One top-level unit of C text (its leading comments included) and the names it defines."""
    text: str
    names: frozenset
    uses: frozenset  # identifiers in its code, comments left out


def code_of(text: str) -> str:
    """The text with its comments left out."""
    return _COMMENTS.sub(" ", text)


def identifiers(text: str) -> set:
    """Every identifier in the code of `text` (not in its comments)."""
    return set(_IDENT.findall(code_of(text)))


def definitions(text: str) -> list[Definition]:
    """Split C text into its top-level units: a function or struct ends with the brace that
    closes it (and a following `;`), a declaration with `;`, a preprocessor line with its line."""
    units, start, depth, i, n = [], 0, 0, 0, len(text)
    while i < n:
        if text.startswith("//", i) or text.startswith("/*", i):
            end = text.find("\n" if text[i + 1] == "/" else "*/", i + 2)
            i = n if end < 0 else end + (1 if text[i + 1] == "/" else 2)
            continue
        c = text[i]
        if c in "\"'":  # a literal: skip to its closing quote
            i += 1
            while i < n and text[i] != c:
                i += 2 if text[i] == "\\" else 1
        elif c == "#" and depth == 0 and not code_of(text[start:i]).strip():
            end = text.find("\n", i)
            i = n if end < 0 else end
            units.append(text[start:i])
            start = i
            continue
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                m = re.compile(r"\s*;").match(text, i + 1)
                i = m.end() if m else i + 1
                m = re.compile(r"[ \t]*//[^\n]*").match(text, i)  # a comment closing the line
                i = m.end() if m else i
                units.append(text[start:i])
                start = i
                continue
        elif c == ";" and depth == 0:
            units.append(text[start:i + 1])
            start = i + 1
        i += 1
    units.append(text[start:])
    return [Definition(u, frozenset(_defined_names(code_of(u))), frozenset(identifiers(u)))
            for u in units if u.strip()]


def _strip_template(code: str) -> str:
    """The code after a leading `template <...>` header (angle brackets balanced)."""
    m = re.match(r"\s*template\s*<", code)
    if not m:
        return code
    depth, i = 1, m.end()
    while i < len(code) and depth:
        depth += {"<": 1, ">": -1}.get(code[i], 0)
        i += 1
    return code[i:]


def _defined_names(code: str) -> set:
    code = _strip_template(code).strip()
    if not code or code.startswith("#"):
        return set()
    m = re.match(r"(?:struct|class|union)\s+(\w+)", code)
    if m:
        return {m.group(1)}
    head = re.split(r"[{;=]", code, maxsplit=1)[0]
    for m in re.finditer(r"(\w+)\s*(?:<[^<>()]*>)?\s*\(", head):
        if m.group(1) not in _NOT_NAMES:
            return {m.group(1)}
    names = _IDENT.findall(head.split("[")[0])
    return {names[-1]} if names else set()


def used_helpers(helper_text: str, kernel_text: str) -> str:
    """The units of `helper_text` that `kernel_text` uses, directly or through other helpers
    (helper A calling helper B keeps B), in their original order. A unit that defines no name
    the scanner can see (a preprocessor line) is kept."""
    units = definitions(helper_text)
    by_name: dict = {}
    for k, u in enumerate(units):
        for name in u.names:
            by_name.setdefault(name, []).append(k)
    keep, todo = set(), [name for name in identifiers(kernel_text) if name in by_name]
    while todo:
        for k in by_name.get(todo.pop(), ()):
            if k not in keep:
                keep.add(k)
                todo.extend(name for name in units[k].uses if name in by_name)
    kept = [u.text.strip() for k, u in enumerate(units)
            if k in keep or (not u.names and code_of(u.text).strip())]
    return "".join(t + "\n" for t in kept)


# ---- static shared memory -------------------------------------------------------------------
_SHARED = re.compile(r"(?<![\w])(extern\s+)?__shared__\s+(?P<decl>[^;]*?)\s*"
                     r"(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\]]*\]\s*)*);")
_ALIGN = re.compile(r"__align__\s*\(\s*(\d+)\s*\)")


def static_shared_bytes(body: str, helper_text: str = "") -> int | None:
    """Bytes of static `__shared__` arrays declared in `body` (and in the helpers it uses), laid
    out in declaration order with each one's alignment, as ptxas counts them. Dynamic shared
    memory (`extern __shared__`) is not counted: its size comes with the launch. None when a
    declaration's type or size is not one this scanner can work out."""
    structs = _structs(helper_text)
    code = code_of(body + "\n" + used_helpers(_without_namespaces(helper_text), body))
    total = 0
    for m in _SHARED.finditer(code):
        if m.group(1):
            continue
        align = [int(a) for a in _ALIGN.findall(m.group("decl"))]
        layout = _sizeof(_ALIGN.sub(" ", m.group("decl")), structs)
        count = _count(m.group("dims"))
        if layout is None or count is None:
            return None
        size, natural = layout
        a = max([natural] + align)
        total = -(-total // a) * a + size * count
    return total


def _without_namespaces(text: str) -> str:
    """The text with each top-level `namespace X { ... }` opened up into its definitions (a
    custom op's source: only the functions the kernel calls declare its shared memory)."""
    parts = []
    for u in definitions(text):
        m = re.match(r"\s*namespace\s+\w+\s*\{(.*)\}\s*;?\s*$", code_of(u.text), re.S)
        parts.append(_without_namespaces(m.group(1)) if m else u.text)
    return "\n".join(parts)


def _count(dims: str) -> int | None:
    """The element count of `[a][b + 4]...` (integer C expressions of literals)."""
    n = 1
    for dim in re.findall(r"\[([^\]]*)\]", dims):
        value = _int_expr(re.sub(r"\b(\d+)[uUlL]+\b", r"\1", dim))
        if value is None:
            return None
        n *= value
    return n


_INT_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
            ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a // b,
            ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
            ast.LShift: lambda a, b: a << b, ast.RShift: lambda a, b: a >> b}


def _int_expr(text: str) -> int | None:
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = value(node.operand)
            return None if v is None else -v
        if isinstance(node, ast.BinOp) and type(node.op) in _INT_OPS:
            a, b = value(node.left), value(node.right)
            return None if a is None or b is None else _INT_OPS[type(node.op)](a, b)
        return None

    return value(tree)


@dataclass
class _Struct:
    params: list  # template parameter names
    fields: list  # (type text, element count)
    typedefs: dict  # member name -> type text


def _structs(helper_text: str) -> dict:
    """name -> _Struct for every (template) struct defined at the top level of the helpers."""
    out = {}
    for u in definitions(helper_text):
        code = code_of(u.text)
        m = re.match(r"\s*(?:template\s*<(?P<params>[^<>]*)>)?\s*struct\s+(?P<name>\w+)\s*\{"
                     r"(?P<body>.*)\}\s*;?\s*$", code, re.S)
        if not m:
            continue
        params = [_IDENT.findall(p)[-1] for p in (m.group("params") or "").split(",") if p.strip()]
        fields, typedefs = [], {}
        for stmt in _members(m.group("body")):
            if stmt.startswith("typedef"):
                words = stmt[len("typedef"):].strip()
                name = _IDENT.findall(words)[-1]
                typedefs[name] = words[: words.rfind(name)].strip()
            elif "(" not in stmt and not stmt.startswith(("static", "enum", "using")):
                first, *rest = split_top(stmt)
                dm = re.match(r"(.*?)(\w+)\s*((?:\[[^\]]*\])*)$", first, re.S)
                if dm is None:
                    continue
                ftype = dm.group(1).strip()
                for dims in [dm.group(3)] + [re.match(r"\w+\s*(.*)", d).group(1) for d in rest]:
                    fields.append((ftype, _count(dims)))
        out[m.group("name")] = _Struct(params, fields, typedefs)
    return out


def _members(body: str) -> list[str]:
    """The member statements of a struct body, with nested function bodies left out."""
    stmts, depth, cur = [], 0, []
    for c in body:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:  # the end of a member function: no statement to keep
                cur = []
        elif depth == 0:
            if c == ";":
                stmts.append("".join(cur).strip())
                cur = []
            else:
                cur.append(c)
    return [s for s in stmts if s]


def matching_bracket(text: str, i: int, open_: str, close: str) -> int:
    """Index just past the bracket matching text[i] (or len(text))."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_:
            depth += 1
        elif text[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


def split_top(text: str) -> list[str]:
    """The comma-separated parts of `text` outside (), <> and [], stripped."""
    parts, depth, start = [], 0, 0
    for j, ch in enumerate(text):
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:j])
            start = j + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _sizeof(ctype: str, structs: dict, depth: int = 0) -> tuple | None:
    """(size, alignment) of a C type: a scalar, a struct of the helpers (template arguments
    substituted), or `S<args>::member` of a struct's typedef."""
    t = " ".join(re.sub(r"\b(typename|const|volatile|struct)\b", " ", ctype).split())
    t = re.sub(r"\s*([<>:,])\s*", r"\1", t)
    if t in SCALARS:
        return SCALARS[t]
    m = re.fullmatch(r"(\w+)(?:<(.*)>)?(?:::(\w+))?", t)
    if m is None or m.group(1) not in structs or depth > 20:
        return None
    s = structs[m.group(1)]
    args = split_top(m.group(2)) if m.group(2) is not None else []
    if len(args) != len(s.params):
        return None

    def bind(text: str) -> str:
        for p, a in zip(s.params, args):
            text = re.sub(rf"\b{p}\b", a, text)
        return text

    if m.group(3):
        member = s.typedefs.get(m.group(3))
        return None if member is None else _sizeof(bind(member), structs, depth + 1)
    offset, align = 0, 1
    for ftype, count in s.fields:
        layout = _sizeof(bind(ftype), structs, depth + 1)
        if layout is None or count is None:
            return None
        size, a = layout
        offset = -(-offset // a) * a + size * count
        align = max(align, a)
    return -(-offset // align) * align, align
