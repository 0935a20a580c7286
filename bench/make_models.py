"""Build YOLOv8n and YOLO11n checkpoints from Ultralytics' own model YAMLs (offline, untrained weights).

Weights do not change speed, so these are right for benchmarks (not for mAP).
Usage: python bench/make_models.py OUT_DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "True")


def main(out: Path) -> None:
    from ultralytics import YOLO

    out.mkdir(parents=True, exist_ok=True)
    for name in ("yolov8n", "yolo11n"):
        path = out / f"{name}.pt"
        if not path.exists():
            YOLO(f"{name}.yaml").save(path)
        print(path)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/models"))
