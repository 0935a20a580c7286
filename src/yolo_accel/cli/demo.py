"""yolo-accel demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..console import err, out
from .app import command
from .options import DeviceOpt


@command("demo")
def demo_cmd(
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Default: the shared YOLOv5n.")] = None,
    device: DeviceOpt = "cpu",
):
    """Run the main job end to end on the shared assets: export, parity, predict with every backend."""
    from ..demo import run_demo

    run_demo(model, device, out, err)
