"""Run folders (runs/<command>/<name>, never reused) and writes that never leave half a file."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def next_run_dir(command: str, name: str = "run", root: str | Path = "runs") -> Path:
    """runs/<command>/<name>, or <name>2, <name>3, ... : a fresh folder, created."""
    base = Path(root) / command
    base.mkdir(parents=True, exist_ok=True)
    i = 1
    while True:
        d = base / (name if i == 1 else f"{name}{i}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            i += 1


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON to a temporary file beside `path`, then move it into place."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=_plain) + "\n")


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text to a temporary file beside `path`, then move it into place: never half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive lock between processes on `path` (the file is made if missing), held inside the block.

    Where fcntl is missing (Windows) there is no lock: callers must stay correct without it."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _plain(o: Any) -> Any:
    """NumPy scalars and paths as plain JSON values."""
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
