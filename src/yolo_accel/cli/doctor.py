"""yolo-accel doctor."""

from __future__ import annotations

from typing import Annotated

import typer

from ..console import out
from .app import command


@command("doctor")
def doctor_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
):
    """Check the installation: packages, CUDA, ONNX Runtime providers, TensorRT, assets."""
    import json

    from rich.table import Table

    from ..doctor import MISSING, OK, as_json, run_checks

    checks = run_checks()
    if json_out:
        print(json.dumps(as_json(checks), indent=2))
        return
    t = Table(title="yolo-accel doctor", title_justify="left")
    for col in ("check", "status", "detail", "fix"):
        t.add_column(col, overflow="fold")
    for c in checks:
        colour = "green" if c.status == OK else ("red" if c.status == MISSING else "yellow")
        t.add_row(c.name, f"[{colour}]{c.status}[/]", c.detail, c.fix)
    out.print(t)
