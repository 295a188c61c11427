"""Writing files safely: a clear error for a missing folder, atomic replacement."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

from .errors import GraphflowError


def check_folder(path: str, what: str) -> str:
    """The folder `path` goes into; GraphflowError naming it when it does not exist."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise GraphflowError(f"cannot write {what} {path!r}: the folder {folder!r} does not "
                             "exist (create it first, e.g. os.makedirs(folder, exist_ok=True))")
    return folder


def atomic_write(path: str, write: Callable[[BinaryIO], None], what: str) -> str:
    """Write `path` through `write(file)` into a temporary file renamed over `path`,
    so a crash never leaves half a file. Returns `path`."""
    folder = check_folder(path, what)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".gf-tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
