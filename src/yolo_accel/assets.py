"""Where the default model, sample images, datasets and videos are found.

Order: an explicit path; $YOLO_ACCEL_ASSETS (a folder with the shared layout);
../shared/assets beside the repository root; the user cache (~/.cache/yolo-accel/assets). The two
sample images (export's parity check, bench's frame) are downloaded into that cache when none of
these has them, so that a plain `pip install` works on a machine that is online.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from .errors import DataError

DEFAULT_MODEL = "models/yolov5n.pt"
SAMPLE_IMAGES = ("images/bus.jpg", "images/zidane.jpg")
DEFAULT_DATASET = "datasets/coco128/data.yaml"
DEFAULT_VIDEO = "videos/highway_traffic_720p.mp4"
# the sample images at a fixed revision of ultralytics/yolov5 (AGPL-3.0), with their SHA-256
SAMPLES_URL = (
    "https://raw.githubusercontent.com/ultralytics/yolov5/5081342f04fb287fc2e5f2b5a4e06752b7937b1c/data/images/"
)
SAMPLE_SHA256 = {
    "bus.jpg": "33b198a1d2839bb9ac4c65d61f9e852196793cae9a0781360859425f6022b69c",
    "zidane.jpg": "356dad2107bb0254e4e4a81bc1d9c7140043e88569d546e5b404b19bffa77d0a",
}


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


# images the command was given (bench's frame, validate's dataset, predict's inputs): an export made on
# the way (a .pt run on onnxruntime) checks its parity on these, so that it needs no sample images
_GIVEN_IMAGES: ContextVar[tuple[Path, ...]] = ContextVar("given_images", default=())


@contextmanager
def parity_images_from(images: Sequence[str | Path]) -> Iterator[None]:
    """Within this block, exports that were given no parity images check parity on `images`."""
    token = _GIVEN_IMAGES.set(tuple(Path(p) for p in images)[:2])
    try:
        yield
    finally:
        _GIVEN_IMAGES.reset(token)


def find_asset(relative: str, roots: Sequence[Path] | None = None) -> Path:
    """Path of an asset such as 'models/yolov5n.pt', or DataError naming every place tried."""
    tried = []
    for root in candidate_roots() if roots is None else roots:
        p = root / relative
        if p.exists():
            return p
        tried.append(str(p))
    raise DataError(
        f"asset {relative!r} not found; tried {', '.join(tried)}. "
        "Set YOLO_ACCEL_ASSETS to a folder with the shared assets layout, or pass the path explicitly"
    )


def sample_images() -> list[Path]:
    """The images an export checks parity on when it was given none: those the command was given
    (`parity_images_from`), else the sample images (bus.jpg, zidane.jpg) from the asset folders, else
    downloaded once into the cache ($YOLO_ACCEL_SAMPLES_URL overrides where from) and checked against
    their SHA-256."""
    given = _GIVEN_IMAGES.get()
    if given:
        return list(given)
    out = []
    for rel in SAMPLE_IMAGES:
        try:
            out.append(find_asset(rel))
        except DataError:
            out.append(_download_sample(Path(rel).name))
    return out


def _download_sample(name: str) -> Path:
    import urllib.request

    target = cache_dir() / "assets" / "images" / name
    url = os.environ.get("YOLO_ACCEL_SAMPLES_URL", SAMPLES_URL).rstrip("/") + "/" + name
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            data = r.read()
    except OSError as e:  # offline, refused, HTTP error
        raise DataError(
            f"the export's parity check needs the sample image {name}: it is in no assets folder "
            f"({', '.join(str(r) for r in candidate_roots())}) and downloading {url} failed "
            f"({getattr(e, 'reason', e)}); set YOLO_ACCEL_ASSETS to a folder holding images/bus.jpg and "
            "images/zidane.jpg, or export first with `yolo-accel export MODEL.pt --parity-images DIR` and use the .onnx"
        ) from None
    if hashlib.sha256(data).hexdigest() != SAMPLE_SHA256[name]:
        raise DataError(f"{url} is not the expected {name} (SHA-256 differs); nothing was kept")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.{os.getpid()}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target
