"""Shared decode + NMS against Ultralytics' and YOLOv5's own non_max_suppression on the same raw tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import read_bgr
from yolo_accel import Detector
from yolo_accel._deps import quiet
from yolo_accel.ops.letterbox import LetterboxInfo
from yolo_accel.ops.nms import postprocess

IDENTITY = LetterboxInfo((640, 640), (640, 640), 1.0, (0, 0))


@pytest.fixture(scope="module")
def yolov5_raw(yolov5n_pt, sample_images, coco128_images):
    """Real YOLOv5n raw outputs (1, 25200, 85) on real images."""
    with Detector(yolov5n_pt, rect=False) as det:
        return [det.forward(det.preprocess([read_bgr(p)])[0]) for p in sample_images + coco128_images[:10]]


def _ours(raw, layout, conf, iou, classes=None, max_det=300):
    names = {i: str(i) for i in range(80)}
    d = postprocess(raw, [IDENTITY], layout, names, conf, iou, classes, max_det)[0]
    return np.concatenate([d.xyxy, d.confidence[:, None], d.class_id[:, None].astype(np.float32)], 1)


def _same(ours: np.ndarray, theirs: np.ndarray, min_identical: float = 1.0):
    """Same boxes (count, coordinates, score, class); `min_identical` allows for IoU ties at the threshold."""
    theirs = theirs.copy()
    theirs[:, :4] = theirs[:, :4].clip(0, 640)  # both references clip when scaling back; ours clips here
    assert ours.shape == theirs.shape, f"{len(ours)} boxes vs {len(theirs)}"
    if len(ours) == 0:
        return
    # pair every box with its twin (order among near-equal scores may differ): L-inf distance
    dist = np.abs(ours[:, None, :] - theirs[None, :, :]).max(axis=2)
    twin = dist.argmin(axis=1)
    identical = dist[np.arange(len(ours)), twin] < 1e-3
    assert identical.mean() >= min_identical, f"{(~identical).sum()} of {len(ours)} boxes differ"
    assert len(set(twin[identical].tolist())) == identical.sum()  # one to one
    return identical


@pytest.mark.parametrize("conf,iou,classes", [(0.25, 0.45, None), (0.001, 0.7, None), (0.1, 0.5, [0, 2, 5])])
def test_v5_layout_matches_yolov5_nms(yolov5_raw, conf, iou, classes):
    with quiet():
        import yolov5.models.yolo  # noqa: F401
        from utils.general import non_max_suppression  # the YOLOv5 package's own
    for raw in yolov5_raw:
        theirs = non_max_suppression(torch.from_numpy(raw.copy()), conf, iou, classes=classes, max_det=300)[0]
        # at conf 0.001 hundreds of overlapping boxes sit near the IoU threshold, where OpenCV's
        # and torchvision's float rounding may keep a different twin now and then
        _same(_ours(raw, "v5", conf, iou, classes), theirs.numpy(), 1.0 if conf >= 0.1 else 0.99)


@pytest.mark.parametrize(
    "conf,iou,classes,max_det", [(0.25, 0.45, None, 300), (0.001, 0.7, None, 300), (0.05, 0.6, [0, 27], 5)]
)
def test_v8_layout_matches_ultralytics_nms(yolov5_raw, conf, iou, classes, max_det):
    """Real boxes rearranged into the anchor-free layout (N, 4+nc, A), as YOLOv8/11 emit them."""
    from ultralytics.utils.nms import non_max_suppression

    for raw in yolov5_raw:
        v8 = np.concatenate([raw[0, :, :4], raw[0, :, 5:] * raw[0, :, 4:5]], 1).T[None].copy()
        theirs = non_max_suppression(torch.from_numpy(v8), conf, iou, classes=classes, max_det=max_det)[0]
        _same(_ours(v8, "v8", conf, iou, classes, max_det), theirs.numpy(), 1.0 if conf >= 0.05 else 0.99)


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
def test_v8_models_from_yaml_match_ultralytics_nms(ultralytics_pts, sample_images, name):
    """The raw output of the real architectures (untrained: low scores, so a low threshold)."""
    from ultralytics.utils.nms import non_max_suppression

    with Detector(ultralytics_pts[name], rect=False) as det:
        raw = det.forward(det.preprocess([read_bgr(sample_images[0])])[0])
    assert raw.shape == (1, 84, 8400)
    conf = float(np.quantile(raw[0, 4:].max(0), 0.98))  # keeps ~170 candidates
    theirs = non_max_suppression(torch.from_numpy(raw.copy()), conf, 0.45)[0]
    assert len(theirs) > 3
    _same(_ours(raw, "v8", conf, 0.45), theirs.numpy())
