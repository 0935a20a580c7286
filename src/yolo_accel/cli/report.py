"""yolo-accel report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..console import out
from .app import command


@command("report")
def report_cmd(
    folder: Annotated[Path, typer.Argument(help="A report folder (bench.json or report.json) or the JSON file.")],
    force: Annotated[bool, typer.Option("--force", help="Replace the Markdown and HTML files already there.")] = False,
):
    """Re-render report.md / report.html (validate) or bench.md / bench.html (bench) from the JSON."""
    from ..report import rerender

    paths = rerender(folder, force=force)
    out.print(f"written: {paths['md']}  {paths['html']}")
