"""The real YOLOv5n through our Detector matches the YOLOv5 package's own AutoShape predictions."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import read_bgr
from yolo_accel import Detections, Detector
from yolo_accel._deps import quiet
from yolo_accel.evaluate.similarity import match_detections

CONF, IOU, IMGSZ = 0.25, 0.45, 640


@pytest.fixture(scope="module")
def images(sample_images, coco128_images):
    return sample_images + coco128_images[:20]


@pytest.fixture(scope="module")
def reference(autoshape, yolov5n_pt, images):
    """AutoShape's detections (it wants RGB arrays) for each image."""
    model = autoshape(yolov5n_pt)
    model.conf, model.iou, model.max_det = CONF, IOU, 300
    out = []
    for p in images:
        with quiet():
            r = model(read_bgr(p)[..., ::-1].copy(), size=IMGSZ).xyxy[0].numpy()
        out.append(Detections(r[:, :4], r[:, 4], r[:, 5].astype(int)))
    return out


def _agreement(reference, results, iou=0.95):
    n_ref = sum(len(r) for r in reference)
    n_test = sum(len(r) for r in results)
    matched = sum(match_detections(r, t, iou).matched for r, t in zip(reference, results))
    return n_ref, n_test, matched


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.slow
def test_backend_matches_yolov5_autoshape(backend, yolov5n_pt, images, reference):
    with Detector(yolov5n_pt, backend=backend, conf=CONF, iou=IOU, imgsz=IMGSZ) as det:
        results = [det.predict(p)[0] for p in images]
    n_ref, n_test, matched = _agreement(reference, results)
    print(
        f"\n{backend}: {matched}/{n_ref} AutoShape boxes matched at IoU>=0.95 same class "
        f"({matched / n_ref:.2%}); {n_test} boxes found"
    )
    assert n_ref > 50  # the reference really detects things on these images
    assert matched / n_ref >= 0.99
    assert abs(n_test - n_ref) <= 0.01 * n_ref


def test_torch_and_onnxruntime_agree(yolov5n_pt, images):
    dets = {}
    for backend in ("torch", "onnxruntime"):
        with Detector(yolov5n_pt, backend=backend) as det:
            dets[backend] = det.predict(images)
    n_ref, _n_test, matched = _agreement(dets["torch"], dets["onnxruntime"], iou=0.5)
    print(f"\ntorch vs onnxruntime: {matched}/{n_ref} matched ({matched / n_ref:.2%})")
    assert matched / n_ref >= 0.99
    confs = np.concatenate([d.confidence for d in dets["torch"]])
    confs_ort = np.concatenate([d.confidence for d in dets["onnxruntime"]])
    assert len(confs) == len(confs_ort)
    assert np.abs(np.sort(confs) - np.sort(confs_ort)).max() < 1e-3


def test_static_onnx_matches_torch_on_square_input(yolov5n_pt, yolov5n_onnx, images):
    """A fixed-size ONNX file gets the square input; so does the torch model with rect=False."""
    with Detector(yolov5n_pt, rect=False) as ref, Detector(yolov5n_onnx) as test:
        assert test.rect is False and test.imgsz == (640, 640)
        n_ref, _, matched = _agreement(ref.predict(images), test.predict(images), iou=0.95)
    assert matched / n_ref >= 0.99


def test_yolov5_checkpoint_is_really_fused(yolov5n_pt, sample_images):
    """The YOLOv5 package's own fuse() leaves an original checkpoint unfused (its isinstance test does
    not know the unpickled classes): ours folds every BatchNorm, and the raw output is unchanged."""
    import torch

    from yolo_accel.ops.letterbox import preprocess

    with quiet():
        import yolov5.models.yolo  # noqa: F401

        ckpt = torch.load(yolov5n_pt, map_location="cpu", weights_only=False)
        theirs = ckpt["model"].float().fuse().eval()
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in theirs.modules()) == 57  # the package fused nothing
    det = Detector(yolov5n_pt)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in det.backend.module.modules())
    batch, _ = preprocess([read_bgr(p) for p in sample_images], (IMGSZ, IMGSZ))
    with torch.inference_mode():
        ref = theirs(torch.from_numpy(batch))[0].numpy()
    got = det.forward(batch)
    assert np.abs(got - ref).max() < 1e-2 and np.allclose(got[..., 4:], ref[..., 4:], atol=1e-4)
