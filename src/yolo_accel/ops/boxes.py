"""Box arithmetic in NumPy."""

from __future__ import annotations

import numpy as np

from .letterbox import LetterboxInfo


def xywh2xyxy(xywh: np.ndarray) -> np.ndarray:
    """Centre-size boxes (..., 4) to corner boxes."""
    out = np.empty_like(xywh)
    half_w, half_h = xywh[..., 2] / 2, xywh[..., 3] / 2
    out[..., 0] = xywh[..., 0] - half_w
    out[..., 1] = xywh[..., 1] - half_h
    out[..., 2] = xywh[..., 0] + half_w
    out[..., 3] = xywh[..., 1] + half_h
    return out


def scale_boxes(xyxy: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map corner boxes from network-input pixels back to the original image, clipped to it."""
    out = xyxy.astype(np.float32, copy=True)
    out[:, [0, 2]] -= info.pad[0]
    out[:, [1, 3]] -= info.pad[1]
    out /= info.ratio
    h, w = info.orig_shape
    out[:, 0] = out[:, 0].clip(0, w)
    out[:, 2] = out[:, 2].clip(0, w)
    out[:, 1] = out[:, 1].clip(0, h)
    out[:, 3] = out[:, 3].clip(0, h)
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4) with every box in b (M, 4), corner format -> (N, M)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
