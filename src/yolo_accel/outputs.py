"""Where a command will write, checked before it starts any work.

Every output path a command takes (files and folders) goes through `check_file` or
`check_folder` first: a folder is not a file and a file is not a folder, an existing file is
replaced only with --force, and the folder it goes into can be created and written (tried with a
probe file, which also catches read-only file systems and permission rules os.access does not
see). Nothing is created by the check itself.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import OutputExistsError, OutputPathError


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def _probe(folder: Path, option: str, target: Path) -> None:
    """Create and delete a file in `folder`; one clear error when that is not possible."""
    try:
        fd, name = tempfile.mkstemp(prefix=".yolo-accel-probe-", dir=folder)
    except OSError as e:
        why = "permission denied" if e.errno in (errno.EACCES, errno.EPERM) else (e.strerror or str(e)).lower()
        if e.errno == errno.EROFS:
            why = "read-only file system"
        raise OutputPathError(f"{option} {target}: cannot write in {folder} ({why})") from None
    os.close(fd)
    os.unlink(name)


def _check_parent(path: Path, option: str) -> None:
    anc = _existing_ancestor(path.parent)
    if not anc.is_dir():
        raise OutputPathError(f"{option} {path}: {anc} is a file, not a folder")
    _probe(anc, option, path)


def check_parent(path: str | Path, option: str) -> None:
    """The folder `path` goes into can be created and written (for outputs written beside and moved over)."""
    _check_parent(Path(path).expanduser(), option)


def check_file(path: str | Path | None, force: bool, option: str) -> Path | None:
    """A file a command will write: not a folder, replaced only with `force`, in a writable folder."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_dir():
        raise OutputPathError(f"{option} {p} is a folder; give a file name")
    if (p.exists() or p.is_symlink()) and not force:
        raise OutputExistsError(f"{p} exists; pass --force to overwrite it")
    _check_parent(p, option)  # files are written beside the target and moved over it: the folder must take them
    return p


def check_folder(path: str | Path | None, option: str) -> Path | None:
    """A folder a command will write into (created if needed): not a file, and writable."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise OutputPathError(f"{option} {p} is a file, not a folder")
    if p.is_dir():
        _probe(p, option, p)
    else:
        _check_parent(p, option)
    return p


def check_report_folder(path: str | Path | None, names: tuple[str, ...], force: bool, option: str) -> Path | None:
    """A report folder: writable, and none of the report files in it replaced without `force`."""
    p = check_folder(path, option)
    if p is not None and p.is_dir() and not force:
        there = [n for n in names if (p / n).exists()]
        if there:
            raise OutputExistsError(f"{p / there[0]} exists; pass --force to overwrite it, or name a new folder")
    return p


def check_distinct(outputs: dict[str, str | Path | None], inputs: Sequence[str | Path] = ()) -> None:
    """No two outputs of one run name one file (one would silently replace the other), and no output is
    one of the run's inputs (it would be destroyed: refused even with --force)."""
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        key = Path(path).expanduser().resolve()
        if key in seen:
            raise OutputPathError(f"{seen[key]} and {option} both name {path}; give each its own file")
        seen[key] = option
    for path in inputs:
        key = Path(path).expanduser().resolve()
        if key in seen:
            raise OutputPathError(f"{seen[key]} {path} is an input of this run; writing it would destroy it")
