"""The `yolo-accel` command line (Typer + Rich): one module per command, registered on one app.

Heavy imports happen inside each command, so `--help` stays fast.
"""

from __future__ import annotations

import sys

from ..console import err
from ..errors import YoloAccelError
from . import bench, demo, doctor, export, optimize, predict, report, serve, validate, video  # noqa: F401  (registers)
from .app import app

__all__ = ["app", "main"]

# listed in --help in the order of the job: make an artifact, run it, prove it, measure it, video, the app
_ORDER = ("export", "predict", "validate", "bench", "optimize", "video", "serve", "report", "doctor", "demo")
app.registered_commands.sort(key=lambda c: _ORDER.index(c.name))


def main() -> None:
    """Console entry point."""
    try:
        app()
    except YoloAccelError as e:  # raised outside a command (should not happen, but never a traceback)
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
