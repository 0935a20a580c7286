"""Where the default model, sample images, datasets and videos are found.

Order: an explicit path; $YOLO_ACCEL_ASSETS (a folder with the shared layout);
../shared/assets beside the repository root; the user cache (~/.cache/yolo-accel/assets).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataError

DEFAULT_MODEL = "models/yolov5n.pt"
SAMPLE_IMAGES = ("images/bus.jpg", "images/zidane.jpg")
DEFAULT_DATASET = "datasets/coco128/data.yaml"
DEFAULT_VIDEO = "videos/highway_traffic_720p.mp4"


def cache_dir() -> Path:
    """Root of yolo-accel's cache ($YOLO_ACCEL_CACHE, else ~/.cache/yolo-accel)."""
    env = os.environ.get("YOLO_ACCEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "yolo-accel"


def candidate_roots() -> list[Path]:
    """Asset folders in the order they are tried."""
    roots = []
    env = os.environ.get("YOLO_ACCEL_ASSETS")
    if env:
        roots.append(Path(env).expanduser())
    repo_root = Path(__file__).resolve().parents[2]  # src/yolo_accel/assets.py -> repo root
    roots.append(repo_root.parent / "shared" / "assets")
    roots.append(Path.cwd().parent / "shared" / "assets")
    roots.append(cache_dir() / "assets")
    seen, unique = set(), []
    for r in roots:
        key = str(r.resolve()) if r.exists() else str(r)
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique


def find_asset(relative: str) -> Path:
    """Path of an asset such as 'models/yolov5n.pt', or DataError naming every place tried."""
    tried = []
    for root in candidate_roots():
        p = root / relative
        if p.exists():
            return p
        tried.append(str(p))
    raise DataError(
        f"asset {relative!r} not found; tried {', '.join(tried)}. "
        "Set YOLO_ACCEL_ASSETS to a folder with the shared assets layout, or pass the path explicitly"
    )


def sample_images() -> list[Path]:
    """The shared sample images (bus.jpg, zidane.jpg)."""
    return [find_asset(rel) for rel in SAMPLE_IMAGES]
