"""Decode raw YOLO head output and run per-class NMS (NumPy + OpenCV).

Two head layouts exist, and decoding is the only place where model families differ:
- "v5": original YOLOv5 (anchor-based), (N, A, 5 + nc) rows of xywh, objectness, class scores;
  score = objectness * class score (as YOLOv5's non_max_suppression does).
- "v8": Ultralytics YOLOv8 / YOLO11 / YOLOv5u (anchor-free), (N, 4 + nc, A) channels of xywh
  and class scores, no objectness.
Everything after decoding (class filter, NMS, max_det, scale back) is shared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from ..detections import Detections
from .boxes import scale_boxes, xywh2xyxy
from .letterbox import LetterboxInfo

LAYOUTS = ("v5", "v8")
MAX_NMS = 30000  # boxes kept (by confidence) before NMS, as in Ultralytics / YOLOv5


def infer_layout(raw_shape: Sequence[int]) -> str:
    """Guess the head layout from a raw output shape (N, A, 5+nc) or (N, 4+nc, A)."""
    if len(raw_shape) != 3:
        raise ValueError(f"expected a 3-D head output, got shape {tuple(raw_shape)}")
    return "v8" if raw_shape[1] < raw_shape[2] else "v5"


def num_classes(raw_shape: Sequence[int], layout: str) -> int:
    """Number of classes implied by a raw output shape."""
    return raw_shape[2] - 5 if layout == "v5" else raw_shape[1] - 4


def decode(
    raw: np.ndarray, layout: str, conf: float, multi_label: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw output -> candidate boxes (xyxy, input pixels), scores and class ids above `conf`.

    multi_label=True makes one candidate per (box, class) pair above `conf`, as Ultralytics' and
    YOLOv5's validation do; otherwise each box keeps its best class only (as in prediction).
    """
    if layout == "v5":
        rows = raw[raw[:, 4] > conf]
        cls_scores = rows[:, 5:] * rows[:, 4:5]
        xywh = rows[:, :4]
    elif layout == "v8":
        cls_all = raw[4:]
        keep = cls_all.max(axis=0) > conf
        cls_scores = cls_all[:, keep].T
        xywh = raw[:4, keep].T
    else:
        raise ValueError(f"unknown head layout {layout!r}; expected one of {LAYOUTS}")
    if len(cls_scores) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    if multi_label:
        box_i, class_id = np.nonzero(cls_scores > conf)
        score = cls_scores[box_i, class_id]
        return xywh2xyxy(xywh[box_i]).astype(np.float32), score.astype(np.float32), class_id.astype(np.int64)
    class_id = cls_scores.argmax(axis=1)
    score = cls_scores[np.arange(len(cls_scores)), class_id]
    keep = score > conf
    return xywh2xyxy(xywh[keep]).astype(np.float32), score[keep].astype(np.float32), class_id[keep]


def nms(
    xyxy: np.ndarray,
    score: np.ndarray,
    class_id: np.ndarray,
    iou: float,
    max_det: int,
    agnostic: bool = False,
) -> np.ndarray:
    """Indices kept by per-class (or class-agnostic) NMS, highest score first, at most `max_det`."""
    if len(score) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-score, kind="stable")[:MAX_NMS]
    xywh_tl = np.concatenate([xyxy[order, :2], xyxy[order, 2:] - xyxy[order, :2]], axis=1)
    groups = np.zeros(len(order), np.int32) if agnostic else class_id[order].astype(np.int32)
    kept = cv2.dnn.NMSBoxesBatched(xywh_tl.astype(np.float64), score[order].astype(np.float32), groups, 0.0, float(iou))
    kept = np.asarray(kept, dtype=np.int64).reshape(-1)
    # OpenCV returns the survivors in descending score order already; keep that order explicit
    kept = kept[np.argsort(-score[order][kept], kind="stable")]
    return order[kept][:max_det]


def postprocess(
    raw: np.ndarray,
    infos: Sequence[LetterboxInfo],
    layout: str,
    names: Mapping[int, str],
    conf: float = 0.25,
    iou: float = 0.45,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
    agnostic: bool = False,
    multi_label: bool = False,
) -> list[Detections]:
    """Raw head output of a batch -> one Detections per image, in original-image pixels."""
    raw = np.asarray(raw, dtype=np.float32)
    out = []
    wanted = None if classes is None else np.asarray(list(classes), dtype=np.int64)
    for i, info in enumerate(infos):
        xyxy, score, class_id = decode(raw[i], layout, conf, multi_label)
        if wanted is not None:
            sel = np.isin(class_id, wanted)
            xyxy, score, class_id = xyxy[sel], score[sel], class_id[sel]
        keep = nms(xyxy, score, class_id, iou, max_det, agnostic)
        out.append(Detections(scale_boxes(xyxy[keep], info), score[keep], class_id[keep], names, info.orig_shape))
    return out
