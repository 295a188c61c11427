"""Emitters: one function per op type turns a graph op into one or more kernels.

    @emitter("Add", "Sub")
    def emit_binary(ctx: EmitContext, op: Operation) -> None: ...

Each family lives in its own module; importing this package registers them all.
"""

from __future__ import annotations

from collections.abc import Callable

EMITTERS: dict[str, Callable] = {}


def emitter(*op_types: str):
    def register(fn):
        for t in op_types:
            if t in EMITTERS:
                raise ValueError(f"two emitters for {t}")
            EMITTERS[t] = fn
        return fn

    return register


def load_all() -> dict[str, Callable]:
    """Import every emitter module (each registers its op types)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return EMITTERS
