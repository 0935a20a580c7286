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
    assets: Annotated[
        Path | None,
        typer.Option(
            "--assets",
            help="The folder the shared files come from (models/, images/, datasets/coco128/, videos/); "
            "only it is used and nothing is downloaded. Default: $YOLO_ACCEL_ASSETS, ../shared/assets, the cache.",
        ),
    ] = None,
):
    """Run the main job end to end on the shared assets: export with parity, predict with every backend,
    validate on coco128, count the traffic clip. Every file is found first; a failed run leaves no run folder."""
    from ..demo import run_demo

    run_demo(model, device, out, err, assets=assets)
