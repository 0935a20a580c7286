"""Reads the licence plate of a vehicle crop with RapidOCR (PP-OCR text detection and recognition).

No plate detector is trained or downloaded: PP-OCR's text detector finds the text lines in the lower
part of the vehicle (where plates are), its recogniser reads each line, and the plate is the line
that looks like one: 4 to 10 letters and digits with at least one digit (a date stamp or a sign
loses to a line with letters and digits), matching `pattern` when one is given. Both ONNX models
ship inside the rapidocr-onnxruntime wheel, so nothing is fetched at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .._deps import quiet, require

VEHICLE_CLASSES = ("car", "motorcycle", "bus", "truck")
_NOT_PLATE = re.compile(r"[^A-Z0-9]")


def normalize_plate(text: str) -> str:
    """Upper case, letters and digits only ("ab-12 cd" -> "AB12CD")."""
    return _NOT_PLATE.sub("", text.upper())


@dataclass(frozen=True)
class PlateRead:
    text: str
    confidence: float


class PlateReader:
    """`read(vehicle_bgr)` -> the best plate-like text line, or None.

    `lower`: the top fraction of the crop skipped (plates sit low on a vehicle; less area is faster).
    `det_side`: the text detector's input is scaled so its short side is this many pixels.
    `threads`: ONNX Runtime threads per read (1: reads in parallel workers, each on one core).
    """

    def __init__(
        self,
        pattern: str | None = None,
        min_confidence: float = 0.6,
        device: str = "cpu",
        threads: int = 1,
        det_side: int = 480,
        lower: float = 0.35,
    ):
        rapidocr = require("rapidocr_onnxruntime")
        self.pattern = re.compile(pattern) if pattern else None
        self.min_confidence, self.lower = min_confidence, lower
        cuda = device.startswith("cuda")
        with quiet():
            self.engine = rapidocr.RapidOCR(
                intra_op_num_threads=threads,
                inter_op_num_threads=1,
                det_limit_side_len=det_side,
                det_limit_type="min",
                det_use_cuda=cuda,
                rec_use_cuda=cuda,
                cls_use_cuda=cuda,
                print_verbose=False,
            )

    def candidates(self, vehicle: np.ndarray) -> list[PlateRead]:
        """Every plate-like line read in the crop, best first (whatever their confidence and the pattern)."""
        h = vehicle.shape[0]
        region = vehicle[int(h * self.lower) :] if h >= 40 else vehicle
        if region.size == 0:
            return []
        result, _ = self.engine(np.ascontiguousarray(region), use_cls=False)
        found = []
        for _box, text, score in result or []:
            t = normalize_plate(text)
            if 4 <= len(t) <= 10 and any(c.isdigit() for c in t):
                found.append(PlateRead(t, float(score)))
        # letters and digits together before digits alone (dates, phone numbers), then by confidence
        found.sort(key=lambda r: (any(c.isalpha() for c in r.text), r.confidence), reverse=True)
        return found

    def read(self, vehicle: np.ndarray) -> PlateRead | None:
        """The plate of a vehicle crop (BGR), or None when no line reads as one with enough confidence."""
        return pick(self.candidates(vehicle), self.min_confidence, self.pattern)


def pick(candidates: list[PlateRead], min_confidence: float, pattern: re.Pattern | None = None) -> PlateRead | None:
    """The first of `candidates` (best first) confident enough and matching `pattern`, or None."""
    ok = (r for r in candidates if r.confidence >= min_confidence)
    return next((r for r in ok if pattern is None or pattern.fullmatch(r.text)), None)
