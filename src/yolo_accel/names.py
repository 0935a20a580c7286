"""Class names: COCO's 80 by default, or read from a YAML / text file, or parsed from metadata."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import DataError, SettingsError

COCO80 = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella "
    "handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard "
    "surfboard tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange "
    "broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop "
    "mouse remote keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors "
    "teddy_bear hair_drier toothbrush"
)
COCO_NAMES: dict[int, str] = {i: n.replace("_", " ") for i, n in enumerate(COCO80.split())}


def as_names(value: object) -> dict[int, str]:
    """Normalise names given as a list, a dict (int or str keys), JSON or a Python-literal string."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = ast.literal_eval(value)  # Ultralytics / YOLOv5 store str(dict)
    if isinstance(value, Mapping):
        return {int(k): str(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return {i: str(v) for i, v in enumerate(value)}
    raise ValueError(f"cannot read class names from {type(value).__name__}")


def load_names_file(path: str | Path) -> dict[int, str]:
    """Names from a YAML file (a `names:` list or dict, as in data.yaml) or a text file (one per line)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"names file not found: {p}")
    if p.suffix.lower() in (".yaml", ".yml"):
        from .yamlfile import read_yaml

        data = read_yaml(p)
        if isinstance(data, dict) and "names" in data:
            data = data["names"]
        try:
            return as_names(data)
        except (ValueError, SyntaxError) as e:
            raise DataError(f"{p}: no class names found (expected a `names:` list or mapping)") from e
    text = p.read_text(encoding="utf-8", errors="replace")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"{p}: no class names found (expected one name per line)")
    return dict(enumerate(names))


def default_names(nc: int) -> dict[int, str]:
    """COCO's names when nc == 80, else 'class0', 'class1', ..."""
    return dict(COCO_NAMES) if nc == 80 else {i: f"class{i}" for i in range(nc)}


def parse_classes(spec: str | Sequence[str | int] | None, names: Mapping[int, str]) -> list[int] | None:
    """'car,bus,2' or ['car', 2] -> sorted class ids; unknown names raise SettingsError with suggestions."""
    if spec is None:
        return None
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    items = [i for i in items if str(i).strip() != ""]
    if not items:
        return None
    by_name = {v.lower(): k for k, v in names.items()}
    by_name.update({v.lower().replace(" ", "_"): k for k, v in names.items()})
    ids = set()
    for item in items:
        if isinstance(item, int) or str(item).isdigit():
            cid = int(item)
            if cid not in names:
                raise SettingsError(
                    f"class id {cid} is out of range: this model has {len(names)} classes (0..{len(names) - 1})"
                )
            ids.add(cid)
            continue
        key = str(item).lower()
        if key not in by_name:
            import difflib

            close = difflib.get_close_matches(key, list(by_name), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise SettingsError(f"unknown class name {item!r} for this model{hint}")
        ids.add(by_name[key])
    return sorted(ids)
