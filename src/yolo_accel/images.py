"""Reading images and expanding a SOURCE (file, folder or glob) into image paths."""

from __future__ import annotations

import glob
from pathlib import Path

import cv2
import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")


def not_a_video(source: str | Path) -> None:
    """DataError pointing to `yolo-accel video` when an image command is given a video or a stream."""
    s = str(source)
    if s.lower().startswith(STREAM_PREFIXES) or Path(s).suffix.lower() in VIDEO_SUFFIXES:
        raise DataError(
            f"{s} is a video or a stream; predict reads images: use `yolo-accel video {s} --model ...` "
            "(it decodes, detects, tracks and counts)"
        )


def read_image(path: str | Path) -> np.ndarray:
    """BGR uint8 HWC image, or DataError when it is missing, empty or not decodable."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"image not found: {p}")
    if p.stat().st_size == 0:
        raise DataError(f"image is empty (0 bytes): {p}")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot decode image: {p} (corrupt or not an image)")
    return img


def expand_source(source: str | Path) -> list[Path]:
    """Image paths from one file, a folder (not recursive) or a glob pattern, sorted."""
    s = str(source)
    not_a_video(s)
    p = Path(s).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise DataError(f"no images in folder {p} (looked for {', '.join(IMAGE_SUFFIXES)})")
        return files
    if p.is_file():
        return [p]
    if any(ch in s for ch in "*?["):
        files = sorted(
            Path(f)
            for f in glob.glob(s, recursive=True)
            if Path(f).suffix.lower() in IMAGE_SUFFIXES and Path(f).is_file()
        )
        if not files:
            raise DataError(f"no images match {s!r}")
        return files
    raise DataError(f"source not found: {p}")
