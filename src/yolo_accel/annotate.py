"""Draw Detections on an image for `predict --save-dir`.

Two OpenCV calls per box are all this needs; supervision's annotators are used by the video
pipeline (the `video` extra), so a plain install does not have to carry them for this.
"""

from __future__ import annotations

import cv2
import numpy as np

from .detections import Detections


def _colour(class_id: int) -> tuple[int, int, int]:
    # a fixed, well-spread hue per class so the same class keeps its colour across images
    hue = (class_id * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 230]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw_detections(image: np.ndarray, dets: Detections) -> np.ndarray:
    """A copy of `image` (BGR) with each box and a 'name 0.87' label."""
    out = image.copy()
    thickness = max(1, round(sum(out.shape[:2]) / 1000))
    for (x1, y1, x2, y2), conf, cls in dets:
        colour = _colour(cls)
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(out, p1, p2, colour, thickness, cv2.LINE_AA)
        label = f"{dets.names.get(cls, cls)} {conf:.2f}"
        scale = thickness / 3
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, thickness - 1))
        top = p1[1] - th - base if p1[1] - th - base >= 0 else p1[1]
        cv2.rectangle(out, (p1[0], top), (p1[0] + tw, top + th + base), colour, -1)
        cv2.putText(
            out,
            label,
            (p1[0], top + th),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            max(1, thickness - 1),
            cv2.LINE_AA,
        )
    return out
