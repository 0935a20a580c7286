"""The torch flavour of ops/ (the GPU pipeline's code) against the NumPy/OpenCV flavour, run on the CPU.

The same functions run on CUDA in test_gpu.py; here they are checked where CI can run them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import read_bgr

from yolo_accel import Detector
from yolo_accel.ops.letterbox import preprocess
from yolo_accel.ops.nms import postprocess
from yolo_accel.ops.torch_ops import _rank_within, postprocess_torch, preprocess_torch


@pytest.fixture(scope="module")
def frames(sample_images, coco128_images):
    # bus 810x1080, zidane 1280x720 and COCO images of several sizes and aspect ratios
    return [read_bgr(p) for p in sample_images + coco128_images[:10]]


@pytest.fixture(scope="module")
def yolov5n(yolov5n_pt):
    with Detector(yolov5n_pt) as det:
        yield det


@pytest.mark.parametrize(
    "rect,shape", [(False, None), (True, None), (False, (672, 480))], ids=["square", "rect", "val-shape"]
)
def test_letterbox_matches_opencv(frames, rect, shape):
    for group in (frames[:1], frames[1:2], frames[2:]):  # one image, and a mixed-size batch
        ref, ref_info = preprocess(group, (640, 640), 32, rect, shape=shape)
        got, got_info = preprocess_torch([torch.from_numpy(f) for f in group], (640, 640), 32, rect, shape=shape)
        assert got_info == ref_info  # the same geometry (shared plan_letterbox)
        assert got.shape == ref.shape and got.dtype == torch.float32
        diff = np.abs(got.numpy() - ref) * 255
        # OpenCV's fixed-point bilinear rounds a few pixels the other way: one grey level at most
        assert diff.max() <= 1.0 + 1e-3
        assert (diff > 0.5).mean() < 0.2  # measured: up to 12 % of values (bus.jpg, 810x1080 -> 480x640)
        # the grey border is exactly the same
        top, left = ref_info[0].pad[1], ref_info[0].pad[0]
        if top:
            assert np.array_equal(got.numpy()[0, :, :top], ref[0, :, :top])
        if left:
            assert np.array_equal(got.numpy()[0, :, :, :left], ref[0, :, :, :left])


def test_letterbox_batches_equal_frames_like_a_video(frames):
    """A batch of same-size frames is resized in one call; it must equal frame-by-frame letterboxing."""
    same = [frames[1], frames[1][:, ::-1].copy(), frames[1][::-1].copy()]
    one_call, _ = preprocess_torch([torch.from_numpy(f) for f in same], (640, 640))
    for i, f in enumerate(same):
        alone, _ = preprocess_torch([torch.from_numpy(f)], (640, 640))
        assert torch.equal(one_call[i], alone[0])


def test_letterbox_fp16_and_channels_last(frames):
    ref, _ = preprocess_torch([torch.from_numpy(frames[0])], (640, 640))
    got, _ = preprocess_torch([torch.from_numpy(frames[0])], (640, 640), dtype=torch.float16, channels_last=True)
    assert got.dtype == torch.float16 and got.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got.float(), ref, atol=1e-3)
    # a batch of mixed sizes writes each size group by index (not by slice): FP16 there too
    mixed = [torch.from_numpy(f) for f in frames[:3]] + [torch.from_numpy(frames[0])]
    ref, _ = preprocess_torch(mixed, (640, 640))
    got, _ = preprocess_torch(mixed, (640, 640), dtype=torch.float16)
    assert got.dtype == torch.float16 and torch.allclose(got.float(), ref, atol=1e-3)


@pytest.mark.parametrize(
    "conf,iou,classes,max_det,agnostic,multi_label",
    [
        (0.25, 0.45, None, 300, False, False),  # prediction defaults
        (0.001, 0.7, None, 300, False, True),  # validation: multi-label, many candidates
        (0.1, 0.5, [0, 2, 5], 300, False, False),  # class filter
        (0.05, 0.45, None, 3, False, False),  # max_det cuts per image
        (0.05, 0.45, None, 300, True, False),  # class-agnostic NMS
    ],
)
@pytest.mark.parametrize("host_nms", [False, True], ids=["device-nms", "host-nms"])
@pytest.mark.slow
def test_postprocess_matches_numpy_v5(frames, yolov5n, conf, iou, classes, max_det, agnostic, multi_label, host_nms):
    batch, infos = preprocess(frames, (640, 640))
    raw = yolov5n.forward(batch)
    args = (yolov5n.names, conf, iou, classes, max_det, agnostic, multi_label)
    ref = postprocess(raw, infos, "v5", *args)
    got = postprocess_torch(torch.from_numpy(raw), infos, "v5", *args, host_nms=host_nms)
    assert sum(len(d) for d in ref) > 0
    for r, g in zip(ref, got):
        assert len(g) == len(r)
        assert np.array_equal(np.sort(g.class_id), np.sort(r.class_id))
        # same boxes (both sorted best first; ties may swap, so compare as sets of rows)
        key = lambda d: np.lexsort((d.xyxy[:, 0], d.class_id, -np.round(d.confidence, 5)))  # noqa: E731
        assert np.allclose(g.xyxy[key(g)], r.xyxy[key(r)], atol=0.5)
        assert np.allclose(np.sort(g.confidence), np.sort(r.confidence), atol=1e-5)
        assert g.image_shape == r.image_shape and g.xyxy.dtype == np.float32
        if classes:
            assert set(g.class_id.tolist()) <= set(classes)
        assert len(g) <= max_det


def test_postprocess_matches_numpy_v8(ultralytics_pts, frames):
    with Detector(ultralytics_pts["yolov8n"]) as det:
        batch, infos = preprocess(frames[:4], (640, 640))
        raw = det.forward(batch)
        assert det.info.layout == "v8"
        for conf, host_nms in ((0.01, False), (0.1, False), (0.1, True), (0.3, True)):
            args = (det.names, conf, 0.6, None, 300, False, False)
            ref = postprocess(raw, infos, "v8", *args)
            got = postprocess_torch(torch.from_numpy(raw), infos, "v8", *args, host_nms=host_nms)
            assert sum(len(d) for d in ref) > 0
            for r, g in zip(ref, got):
                assert len(g) == len(r)
                assert np.allclose(np.sort(g.xyxy, axis=0), np.sort(r.xyxy, axis=0), atol=0.5)


def test_host_nms_with_more_candidates_than_it_brings_back_takes_the_device_path(frames, yolov5n, monkeypatch):
    """An image with more than TOP_K candidates must not lose any: the device path runs instead."""
    from yolo_accel.ops import torch_ops

    batch, infos = preprocess(frames[:2], (640, 640))
    raw = yolov5n.forward(batch)
    args = (yolov5n.names, 0.001, 0.6, None, 300, False, False)
    n_candidates = int(((raw[..., 5:] * raw[..., 4:5]).max(-1) > 0.001).sum(1).max())
    monkeypatch.setattr(torch_ops, "TOP_K", 64)
    assert n_candidates > 64
    packed = torch_ops.top_candidates(torch.from_numpy(raw), "v5", 0.001, None, torch_ops.TOP_K).numpy()
    assert torch_ops.finish_on_host(packed, infos, yolov5n.names, 0.6, 300, False) is None
    ref = postprocess(raw, infos, "v5", *args)
    got = postprocess_torch(torch.from_numpy(raw), infos, "v5", *args, host_nms=True)
    for r, g in zip(ref, got):
        assert len(g) == len(r) > 0
        assert np.allclose(np.sort(g.confidence), np.sort(r.confidence), atol=1e-5)


@pytest.mark.parametrize(
    "classes,max_det,multi_label",
    [(None, 300, False), ([2, 5, 7], 300, False), ([0, 2], 300, True), (None, 2, False)],
    ids=["defaults", "classes", "classes-multi-label", "max-det"],
)
@pytest.mark.slow
def test_postprocess_of_a_same_size_batch_matches_numpy(
    frames, yolov5n, ultralytics_pts, classes, max_det, multi_label
):
    """Frames of one size (a video) take the scale-back path without a per-image table."""
    import cv2

    same = [cv2.resize(f, (1280, 720)) for f in frames[:6]]
    batch, infos = preprocess(same, (640, 640))
    assert len({(i.pad, i.ratio) for i in infos}) == 1
    with Detector(ultralytics_pts["yolov8n"]) as v8:
        for det, layout, conf in ((yolov5n, "v5", 0.1), (v8, "v8", 0.01)):
            raw = det.forward(batch)
            args = (det.names, conf, 0.5, classes, max_det, False, multi_label)
            ref = postprocess(raw, infos, layout, *args)
            got = postprocess_torch(torch.from_numpy(raw), infos, layout, *args)
            assert sum(len(d) for d in ref) > 0
            for r, g in zip(ref, got):
                assert len(g) == len(r) <= max_det
                assert np.array_equal(np.sort(g.class_id), np.sort(r.class_id))
                assert np.allclose(np.sort(g.xyxy, axis=0), np.sort(r.xyxy, axis=0), atol=0.5)
                assert np.allclose(np.sort(g.confidence), np.sort(r.confidence), atol=1e-5)
                assert g.xyxy[:, [0, 2]].max(initial=0) <= 1280 and g.xyxy[:, [1, 3]].max(initial=0) <= 720


def test_torch_pipeline_matches_numpy_pipeline(frames, yolov5n):
    """Frames -> torch letterbox -> model on torch tensors -> torch NMS equals Detector.predict (NumPy path)."""
    batch, infos = preprocess_torch([torch.from_numpy(f) for f in frames], yolov5n.imgsz, rect=False)
    ref = Detector(yolov5n.backend, rect=False).predict(frames)
    raw = yolov5n.backend.forward_device(batch)
    got = postprocess_torch(raw, infos, "v5", yolov5n.names, 0.25, 0.45)
    from yolo_accel.evaluate.similarity import match_detections

    total = sum(len(r) for r in ref)
    matched = sum(match_detections(r, g, 0.9).matched for r, g in zip(ref, got))
    assert total > 30
    assert matched / total >= 0.97  # inputs differ by one grey level in a few pixels
    for r, g in zip(ref, got):
        assert abs(len(r) - len(g)) <= 1


def test_grouped_nms_is_exact_for_large_group_ids():
    """Groups are image x class: a batch of 64 with 80 classes has ids past 5000, offsets past 2**21."""
    import torchvision

    from yolo_accel.ops.torch_ops import _batched_nms

    # IoU of the first two boxes is 0.3245, under the 0.33 threshold: both stay. Offset by
    # 5000 * 641 in float32 (torchvision's batched_nms) the corners round to quarter pixels, the
    # IoU becomes 0.333 and the second box is wrongly suppressed.
    boxes = torch.tensor([[0, 0, 10, 10], [5.1, 0, 15.1, 10], [600, 600, 640, 640], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    groups = torch.tensor([5000, 5000, 5000, 3])
    expect = []
    for g in groups.unique():
        idx = (groups == g).nonzero().squeeze(1)
        expect += idx[torchvision.ops.nms(boxes[idx], scores[idx], 0.33)].tolist()
    got = _batched_nms(boxes, scores, groups, 0.33)
    assert sorted(got.tolist()) == sorted(expect) == [0, 1, 2, 3]
    assert scores[got].tolist() == sorted(scores[got].tolist(), reverse=True)  # best first


def test_rank_within_groups():
    g = torch.tensor([1, 0, 1, 1, 0, 2])
    s = torch.tensor([0.5, 0.9, 0.7, 0.1, 0.3, 0.2])
    assert _rank_within(g, s, 3).tolist() == [1, 0, 0, 2, 1, 0]
    assert _rank_within(torch.zeros(0, dtype=torch.long), torch.zeros(0), 2).tolist() == []


@pytest.mark.slow
def test_torch_pipeline_map_on_coco128_equals_numpy_pipeline(yolov5n, assets_root):
    """The GPU pipeline's code (run here on the CPU) loses no accuracy: coco128 mAP through the torch
    letterbox + torch NMS against the NumPy/OpenCV path, validation settings, the same model."""
    from yolo_accel.evaluate.datasets import load_dataset
    from yolo_accel.evaluate.map import CocoAccumulator

    ds = load_dataset(assets_root / "datasets" / "coco128" / "data.yaml")
    acc = CocoAccumulator(ds.names)
    settings = ("v5", yolov5n.names, 0.001, 0.7, None, 300, False, True)  # val.py-style: multi-label
    for items in ds.batches(16):
        frames = [read_bgr(it.path) for it in items]
        for it, f in zip(items, frames):
            acc.add_image(it.image_id, *f.shape[:2], *it.boxes(*f.shape[:2]))
        batch, infos = preprocess(frames, (640, 640))
        for d, it in zip(postprocess(yolov5n.forward(batch), infos, *settings), items):
            acc.add_detections("numpy", it.image_id, d)
        tbatch, tinfos = preprocess_torch([torch.from_numpy(f) for f in frames], (640, 640))
        for d, it in zip(postprocess_torch(yolov5n.backend.forward_device(tbatch), tinfos, *settings), items):
            acc.add_detections("torch", it.image_id, d)
    ref, got = acc.evaluate("numpy"), acc.evaluate("torch")
    print(
        f"\ncoco128 mAP50-95 numpy {ref.map50_95:.4f} torch {got.map50_95:.4f}; mAP50 {ref.map50:.4f} {got.map50:.4f}"
    )
    assert ref.map50_95 > 0.3  # a real model on real data
    assert abs(got.map50_95 - ref.map50_95) < 0.002 and abs(got.map50 - ref.map50) < 0.002


def test_fixed_shape_backends_pad_batches_to_a_power_of_two(yolov5n_pt, frames, monkeypatch):
    """With --compile (or CUDA graphs) a batch of 3 runs as a batch of 4: one shape per power of two,
    not one compile or capture per batch size; the three real rows equal the unpadded eager output."""
    from yolo_accel.backends.pytorch import TorchOptions

    batch, _ = preprocess(frames[:3], (640, 640))
    eager = Detector(yolov5n_pt, rect=False)
    ref = eager.backend.forward_device(torch.from_numpy(batch))
    det = Detector(yolov5n_pt, rect=False, torch_options=TorchOptions(compile=True))
    shapes = []
    real = type(det.backend)._raw

    def record(self, x):  # the eager module in place of the compiled one: this test is about shapes
        shapes.append(tuple(x.shape))
        return real(eager.backend, x)

    monkeypatch.setattr(type(det.backend), "_raw", record)
    got = det.backend.forward_device(torch.from_numpy(batch))
    assert shapes == [(4, 3, 640, 640)]
    assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-4)


def test_launch_then_finish_equals_the_device_route(frames, yolov5n):
    """Two batches launched before either is finished (as the video engine does) give the same
    detections as the whole-batch device route on the same letterboxed input."""
    tensors = [torch.from_numpy(f) for f in frames]
    a = yolov5n.launch(tensors[:3], keep_raw=True)
    b = yolov5n.launch(tensors[3:], keep_raw=True)
    got = yolov5n.finish(a)[0] + yolov5n.finish(b)[0]
    ref = []
    for part in (tensors[:3], tensors[3:]):
        batch, infos = preprocess_torch(part, yolov5n.imgsz, rect=yolov5n.rect)
        raw = yolov5n.backend.forward_device(batch)
        ref += postprocess_torch(raw, infos, "v5", yolov5n.names, yolov5n.conf, yolov5n.iou, host_nms=False)
    assert sum(len(r) for r in ref) > 10
    for r, g in zip(ref, got):
        assert len(g) == len(r)
        assert np.array_equal(np.sort(g.class_id), np.sort(r.class_id))
        assert np.allclose(np.sort(g.xyxy, axis=0), np.sort(r.xyxy, axis=0), atol=1e-3)
    _, per = yolov5n.finish(yolov5n.launch(tensors[:2]))
    assert set(per) == {"pre", "infer", "post"} and all(v > 0 for v in per.values())
