"""Plate reading accuracy: exact plates and characters, by plate width, with the time per read."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from .reader import PlateReader, normalize_plate

WIDTH_BINS = ((60, 100), (100, 150), (150, 201))


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (a dozen characters: a plain dynamic programme is enough, no dependency)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(read: str, truth: str) -> float:
    """1 - edits / characters of the truth (0 when nothing matches)."""
    return max(0.0, 1.0 - edit_distance(read, truth) / max(1, len(truth)))


def _summary(rows: list[dict]) -> dict:
    n = len(rows)
    return {
        "plates": n,
        "exact_pct": round(100 * sum(r["read"] == r["truth"] for r in rows) / n, 1) if n else 0.0,
        "char_pct": round(100 * float(np.mean([char_accuracy(r["read"], r["truth"]) for r in rows])), 1) if n else 0.0,
        "no_text_pct": round(100 * sum(not r["read"] for r in rows) / n, 1) if n else 0.0,
        "ms_per_read_mean": round(float(np.mean([r["ms"] for r in rows])), 1) if n else 0.0,
        "ms_per_read_p95": round(float(np.percentile([r["ms"] for r in rows], 95)), 1) if n else 0.0,
    }


def _by_width(rows: list[dict]) -> dict:
    out = {"all": _summary(rows)}
    for lo, hi in WIDTH_BINS:
        out[f"{lo}-{hi - 1} px"] = _summary([r for r in rows if lo <= r["plate_width"] < hi])
    return out


def _timed_read(reader: PlateReader, image: np.ndarray) -> tuple[str, float]:
    t = time.perf_counter()
    r = reader.read(image)
    return (r.text if r else ""), (time.perf_counter() - t) * 1000


def evaluate_synthetic(reader: PlateReader, folder: Path) -> tuple[dict, list[dict]]:
    """Each image of a `synthetic.make_set` folder is one vehicle crop to read."""
    import cv2

    rows = []
    with open(folder / "labels.csv", newline="") as f:
        for rec in csv.DictReader(f):
            text, ms = _timed_read(reader, cv2.imread(str(folder / rec["file"])))
            rows.append({"file": rec["file"], "truth": rec["text"], "read": text, "ms": ms})
            rows[-1]["plate_width"] = int(rec["plate_width"])
    return _by_width(rows), rows


def evaluate_real(reader: PlateReader, detector, folder: Path) -> tuple[dict, list[dict]]:
    """Photos with one labelled plate each (`IMAGE x y w h PLATE` per .txt, openalpr's benchmark format):
    the detector finds the vehicle whose box holds the plate's centre, and its crop is read. A plate
    on no detected vehicle counts as not read."""
    import cv2

    rows = []
    for label in sorted(folder.glob("*.txt")):
        name, x, y, w, h, plate = label.read_text().split()[:6]
        x, y, w, h = int(x), int(y), int(w), int(h)
        img = cv2.imread(str(folder / name))
        cx, cy = x + w / 2, y + h / 2
        text, ms, found = "", None, False
        for x1, y1, x2, y2 in detector.predict(img)[0].xyxy.astype(int):
            if x1 <= cx <= x2 and y1 <= cy <= y2:
                text, ms = _timed_read(reader, img[max(y1, 0) : y2, max(x1, 0) : x2])
                found = True
                break
        rows.append({"file": name, "truth": normalize_plate(plate), "read": text, "ms": ms, "plate_width": w})
        rows[-1]["vehicle_found"] = found
    timed = [r for r in rows if r["ms"] is not None]
    summary = _by_width([{**r, "ms": r["ms"] or 0.0} for r in rows])
    summary["all"]["ms_per_read_mean"] = round(float(np.mean([r["ms"] for r in timed])), 1) if timed else 0.0
    summary["all"]["vehicles_found"] = len(timed)
    return summary, rows
