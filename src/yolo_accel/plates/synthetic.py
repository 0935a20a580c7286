"""A synthetic plate test set: plate strings rendered onto real vehicle crops.

No labelled plates come with the COCO assets, so this builds a set anyone can rebuild from a seed:
random plate strings (letters and digits in common layouts) in a bold sans font on a white or
yellow plate with a border, warped in perspective onto the lower middle of a real car, bus or truck
crop from coco128, then blurred and JPEG-compressed, at plate widths from 60 to 200 px (what a
1080p traffic camera sees of a plate from far to near). It measures reading rendered characters on
real vehicle backgrounds, not real plates: real plates have state names, stickers, dirt and
reflections (the shared assets' 60 real US plates measure that).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I, O, Q: most countries leave them out of plates
DIGITS = "0123456789"
LAYOUTS = ("LLLDDDD", "DLLLDDD", "LLDDLLL", "DDLLLDD", "LLLDDL", "LDDDLL", "DLLDDDD")
VEHICLE_IDS = {2: "car", 5: "bus", 7: "truck"}  # COCO class ids


@dataclass
class Sample:
    file: str
    text: str
    plate_width: int


def plate_text(rng: np.random.Generator) -> str:
    layout = LAYOUTS[rng.integers(len(LAYOUTS))]
    return "".join(rng.choice(list(LETTERS if c == "L" else DIGITS)) for c in layout)


def _font(size: int):
    from matplotlib import font_manager
    from PIL import ImageFont

    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight="bold"))
    return ImageFont.truetype(path, size)


def render_plate(text: str, rng: np.random.Generator) -> np.ndarray:
    """A front-on plate image (BGR): US-like 2:1 or European-like 4.6:1, white or yellow, bordered."""
    from PIL import Image, ImageDraw

    wide = rng.random() < 0.5
    w, h = (520, 112) if wide else (300, 150)
    color = (255, 255, 255) if rng.random() < 0.7 else (250, 210, 40)
    img = Image.new("RGB", (w, h), color)
    d = ImageDraw.Draw(img)
    d.rectangle([3, 3, w - 4, h - 4], outline=(20, 20, 20), width=6)
    size = int(h * 0.62)
    font = _font(size)
    while d.textlength(text, font=font) > w * 0.88:
        size -= 2
        font = _font(size)
    tw = d.textlength(text, font=font)
    top, bottom = font.getbbox(text)[1], font.getbbox(text)[3]
    d.text(((w - tw) / 2, (h - (bottom - top)) / 2 - top), text, font=font, fill=(15, 15, 15))
    return np.asarray(img)[:, :, ::-1].copy()


def vehicle_crops(coco128: Path, min_side: int = 40) -> list[np.ndarray]:
    """Cars, buses and trucks of coco128's labelled images, at least `min_side` pixels each way."""
    import cv2

    crops = []
    for label in sorted((coco128 / "labels" / "train2017").glob("*.txt")):
        img = None
        for line in label.read_text().splitlines():
            cls, cx, cy, bw, bh = line.split()[:5]
            if int(cls) not in VEHICLE_IDS:
                continue
            if img is None:
                img = cv2.imread(str(coco128 / "images" / "train2017" / f"{label.stem}.jpg"))
                if img is None:  # a label without its image
                    break
            H, W = img.shape[:2]
            x1, y1 = int((float(cx) - float(bw) / 2) * W), int((float(cy) - float(bh) / 2) * H)
            x2, y2 = int((float(cx) + float(bw) / 2) * W), int((float(cy) + float(bh) / 2) * H)
            if min(x2 - x1, y2 - y1) >= min_side:
                crops.append(img[max(y1, 0) : y2, max(x1, 0) : x2].copy())
    return crops


def compose(vehicle: np.ndarray, plate: np.ndarray, plate_width: int, rng: np.random.Generator) -> np.ndarray:
    """The vehicle scaled so the plate is about a quarter of its width, the plate warped onto its lower
    middle, then blur and JPEG compression."""
    import cv2

    scale = plate_width * rng.uniform(3.5, 5.0) / vehicle.shape[1]
    car = cv2.resize(vehicle, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    H, W = car.shape[:2]
    ph = round(plate_width * plate.shape[0] / plate.shape[1])
    cx, cy = W / 2 + rng.uniform(-0.1, 0.1) * W, H * rng.uniform(0.68, 0.82)
    half_w, half_h = plate_width / 2, ph / 2
    dst = np.float32(
        [[cx - half_w, cy - half_h], [cx + half_w, cy - half_h], [cx + half_w, cy + half_h], [cx - half_w, cy + half_h]]
    )
    dst += rng.uniform(-0.06, 0.06, dst.shape).astype(np.float32) * np.float32([plate_width, ph])  # perspective
    src = np.float32([[0, 0], [plate.shape[1], 0], [plate.shape[1], plate.shape[0]], [0, plate.shape[0]]])
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(plate, m, (W, H), flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full(plate.shape[:2], 255, np.uint8), m, (W, H)) > 127
    car[mask] = warped[mask]
    sigma = rng.uniform(0.0, 1.0) * plate_width / 120  # focus and motion blur grow with the plate's size
    if sigma > 0.2:
        car = cv2.GaussianBlur(car, (0, 0), sigma)
    _, buf = cv2.imencode(".jpg", car, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 91))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def make_set(out: Path, coco128: Path, n: int = 200, seed: int = 0) -> list[Sample]:
    """Writes out/NNNN.jpg and out/labels.csv (file, text, plate_width); returns the samples."""
    import cv2

    rng = np.random.default_rng(seed)
    crops = vehicle_crops(coco128)
    if not crops:
        raise FileNotFoundError(f"no vehicle labels in {coco128}")
    out.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        text = plate_text(rng)
        width = int(60 + 140 * i / max(1, n - 1))  # 60 to 200 px, evenly
        img = compose(crops[rng.integers(len(crops))], render_plate(text, rng), width, rng)
        name = f"{i:04d}.jpg"
        cv2.imwrite(str(out / name), img)
        samples.append(Sample(name, text, width))
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "text", "plate_width"])
        w.writerows([(s.file, s.text, s.plate_width) for s in samples])
    return samples
