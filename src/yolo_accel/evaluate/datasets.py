"""Labelled datasets: Ultralytics data.yaml, a folder of images with YOLO labels, or COCO JSON.

Labels are read and checked up front (cheap text, so a bad label fails before any inference,
naming file and line); images are read one batch at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..images import IMAGE_SUFFIXES


@dataclass
class Item:
    """One image and its ground truth: YOLO-normalised (cls, cx, cy, w, h) or COCO pixel boxes."""

    image_id: int
    path: Path
    labels: np.ndarray  # (N, 5) class, cx, cy, w, h in [0, 1]  |  (N, 5) class, x1, y1, x2, y2 in pixels
    normalized: bool = True
    iscrowd: np.ndarray | None = None

    def boxes(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Ground-truth corner boxes in pixels and class ids."""
        if len(self.labels) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        cls = self.labels[:, 0].astype(np.int64)
        if not self.normalized:
            return self.labels[:, 1:5].astype(np.float32), cls
        cx, cy, w, h = (self.labels[:, i] for i in range(1, 5))
        xyxy = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
        return xyxy.astype(np.float32), cls


@dataclass
class Dataset:
    """Images with ground truth and the class names they use."""

    name: str
    source: Path
    names: dict[int, str]
    items: list[Item]
    kind: str  # "yolo" | "coco"
    notes: list[str] = field(default_factory=list)

    @property
    def backgrounds(self) -> int:
        return sum(1 for it in self.items if len(it.labels) == 0)

    @property
    def instances(self) -> int:
        return int(sum(len(it.labels) for it in self.items))

    def batches(self, size: int) -> Iterator[list[Item]]:
        for i in range(0, len(self.items), size):
            yield self.items[i : i + size]


def load_dataset(data: str | Path, clip_labels: bool = False, images_dir: str | Path | None = None) -> Dataset:
    """Open DATA: a data.yaml (its `val` split), a folder of images + YOLO labels, or a COCO JSON."""
    p = Path(data).expanduser()
    if not p.exists():
        raise DataError(f"dataset not found: {p}")
    if p.is_dir():
        return _yolo_dataset(p.name, p, _list_images(p), None, clip_labels)
    suffix = p.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return _from_yaml(p, clip_labels)
    if suffix == ".json":
        return _coco_dataset(p, images_dir)
    raise DataError(f"{p}: unknown dataset format; expected a data.yaml, a COCO .json or a folder of images")


def _list_images(folder: Path) -> list[Path]:
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise DataError(f"no images in {folder} (empty split)")
    return files


def _from_yaml(path: Path, clip_labels: bool) -> Dataset:
    from ..yamlfile import read_yaml

    cfg = read_yaml(path)
    if not isinstance(cfg, dict) or "names" not in cfg:
        raise DataError(f"{path}: expected a mapping with `names` and `val` (Ultralytics data.yaml)")
    from ..names import as_names

    try:
        names = as_names(cfg["names"])
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise DataError(f"{path}: `names` must be a list of class names or a mapping id -> name") from None
    if not names:
        raise DataError(f"{path}: `names` is empty")
    base = cfg.get("path") or "."
    if not isinstance(base, str):
        raise DataError(f"{path}: `path` must be a folder name (got {type(base).__name__})")
    root = Path(base)
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    split = cfg.get("val") or cfg.get("test")
    if not split:
        raise DataError(f"{path}: no `val` split given")
    entries = split if isinstance(split, list) else [split]
    if not all(isinstance(e, str) and e for e in entries):
        raise DataError(f"{path}: `val` must be a folder, a .txt list of images, or a list of those")
    files: list[Path] = []
    for entry in entries:
        target = Path(entry) if Path(entry).is_absolute() else root / entry
        if target.is_dir():
            files += _list_images(target)
        elif target.is_file() and target.suffix == ".txt":
            text = target.read_text(encoding="utf-8", errors="replace")
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            files += [(root / ln).resolve() if not Path(ln).is_absolute() else Path(ln) for ln in lines]
            if not lines:
                raise DataError(f"{target}: the split lists no images (empty split)")
        else:
            raise DataError(f"{path}: val split {entry!r} points nowhere ({target} does not exist)")
    return _yolo_dataset(path.stem if path.stem != "data" else path.parent.name, path, files, names, clip_labels)


def _label_path(img: Path) -> Path:
    beside = img.with_suffix(".txt")
    if beside.is_file():
        return beside
    parts = list(img.parts)
    if "images" in parts:  # Ultralytics layout: .../images/<split>/x.jpg -> .../labels/<split>/x.txt
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
        return Path(*parts).with_suffix(".txt")
    return beside


def _yolo_dataset(
    name: str, source: Path, files: list[Path], names: dict[int, str] | None, clip_labels: bool
) -> Dataset:
    items, max_cls = [], -1
    for i, img in enumerate(files):
        lab = _label_path(img)
        rows = _read_yolo_labels(lab, names, clip_labels) if lab.is_file() else np.zeros((0, 5), np.float32)
        if len(rows):
            max_cls = max(max_cls, int(rows[:, 0].max()))
        items.append(Item(i, img, rows))
    if names is None:
        from ..names import default_names

        names = default_names(80 if max_cls < 80 else max_cls + 1)
    return Dataset(name, source, names, items, "yolo")


def _read_yolo_labels(path: Path, names: dict[int, str] | None, clip: bool) -> np.ndarray:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DataError(f"{path}:{n}: expected 5 columns (class cx cy w h), found {len(parts)}")
        try:
            values = [float(v) for v in parts]
        except ValueError as e:
            raise DataError(f"{path}:{n}: not a number ({e})") from e
        if not np.isfinite(values).all():
            raise DataError(f"{path}:{n}: not a finite number: {line.strip()[:80]}")
        cls = values[0]
        if cls != int(cls) or cls < 0:
            raise DataError(f"{path}:{n}: class id {parts[0]!r} is not a non-negative integer")
        if names is not None and int(cls) >= len(names):
            raise DataError(f"{path}:{n}: class id {int(cls)} >= the number of names ({len(names)})")
        coords = np.asarray(values[1:])
        if (coords < 0).any() or (coords > 1).any():
            if not clip:
                raise DataError(
                    f"{path}:{n}: coordinates outside [0, 1]: {' '.join(parts[1:])} (pass --clip-labels to clip them)"
                )
            coords = coords.clip(0, 1)
        rows.append([cls, *coords])
    return np.asarray(rows, np.float32).reshape(-1, 5)


def _coco_dataset(path: Path, images_dir: str | Path | None) -> Dataset:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file (COCO annotations are JSON)") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise DataError(f"{path}: not valid JSON ({str(e)[:160]})") from None
    if not isinstance(d, dict) or not all(isinstance(d.get(k), list) for k in ("images", "annotations", "categories")):
        raise DataError(f"{path}: not a COCO annotations file (needs lists images, annotations, categories)")
    for n, c in enumerate(d["categories"]):
        if not isinstance(c, dict) or not _is_id(c.get("id")) or "name" not in c:
            raise DataError(f"{path}: category #{n} needs an integer `id` and a `name`")
    cats = sorted(d["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    names = {i: str(c["name"]) for i, c in enumerate(cats)}
    folder = Path(images_dir) if images_dir else None
    if folder is None:
        for cand in (path.parent / "images", path.parent.parent / "images", path.parent):
            if cand.is_dir():
                folder = cand
                break
    by_image: dict[int, list] = {}
    for n, a in enumerate(d["annotations"]):
        if not isinstance(a, dict):
            raise DataError(f"{path}: annotation #{n} is not an object")
        if not _is_id(a.get("category_id")) or a["category_id"] not in cat_index:
            raise DataError(f"{path}: annotation #{n} has unknown category_id {str(a.get('category_id'))[:40]!r}")
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)) or min(box[2:]) < 0:
            raise DataError(f"{path}: annotation #{n}: `bbox` must be [x, y, width, height], finite, sizes >= 0")
        if not _is_id(a.get("image_id")) or not _is_number(a.get("iscrowd", 0)):
            raise DataError(f"{path}: annotation #{n} needs an integer `image_id` (and `iscrowd` 0 or 1)")
        by_image.setdefault(a["image_id"], []).append(a)
    items = []
    first_of: dict[int, int] = {}
    for i, im in enumerate(d["images"]):
        if not isinstance(im, dict) or not _is_id(im.get("id")) or not isinstance(im.get("file_name"), str):
            raise DataError(f"{path}: image #{i} needs an integer `id` and a `file_name`")
        # annotations name their image by id: two images with one id would share (or lose) their boxes
        if im["id"] in first_of:
            raise DataError(
                f"{path}: images #{first_of[im['id']]} and #{i} have the same `id` {im['id']}; ids must be unique"
            )
        first_of[im["id"]] = i
        if not im["file_name"] or "\x00" in im["file_name"]:
            raise DataError(f"{path}: image #{i} has no usable `file_name`")
        img_path = Path(im["file_name"])
        if not img_path.is_absolute():
            img_path = (folder or path.parent) / img_path
        anns = by_image.get(im["id"], [])
        rows = [
            [
                cat_index[a["category_id"]],
                a["bbox"][0],
                a["bbox"][1],
                a["bbox"][0] + a["bbox"][2],
                a["bbox"][1] + a["bbox"][3],
            ]
            for a in anns
        ]
        crowd = np.asarray([int(a.get("iscrowd", 0)) for a in anns], np.int64)
        items.append(Item(i, img_path, np.asarray(rows, np.float32).reshape(-1, 5), False, crowd))
    if not items:
        raise DataError(f"{path}: no images (empty split)")
    return Dataset(path.stem, path, names, items, "coco")


def _is_id(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and abs(v) < 1e12
