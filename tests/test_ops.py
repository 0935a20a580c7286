"""Pre/post-processing against independent expectations."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import read_bgr
from yolo_accel.ops import letterbox, postprocess, preprocess
from yolo_accel.ops.letterbox import rect_shape

NAMES = {i: f"c{i}" for i in range(80)}


@pytest.mark.parametrize("hw", [(1080, 810), (720, 1280), (31, 17), (2160, 3840), (640, 640), (333, 500)])
@pytest.mark.parametrize("auto", [False, True])
def test_letterbox_equals_ultralytics(hw, auto, sample_images):
    """Pixel for pixel the same input as Ultralytics' own LetterBox (square and rectangular)."""
    import cv2
    from ultralytics.data.augment import LetterBox

    img = cv2.resize(read_bgr(sample_images[0]), (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    theirs = LetterBox((640, 640), auto=auto, stride=32)(image=img)
    shape = rect_shape([img.shape[:2]], (640, 640), 32) if auto else (640, 640)
    ours, info = letterbox(img, shape)
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)
    assert info.orig_shape == hw


def test_preprocess_layout(sample_images):
    img = read_bgr(sample_images[1])
    batch, _infos = preprocess([img], (640, 640))
    assert batch.shape == (1, 3, 640, 640) and batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    boxed, _ = letterbox(img, (640, 640))
    # channel 0 is red: the BGR image's channel 2
    np.testing.assert_allclose(batch[0, 0], boxed[..., 2] / 255.0, atol=1e-6)


def _raw_with_boxes(boxes_xyxy, scores, classes, n_anchor=100):
    """A v8-layout raw tensor (1, 84, A) holding the given boxes (in input pixels) and nothing else."""
    raw = np.zeros((1, 84, n_anchor), np.float32)
    for i, (b, s, c) in enumerate(zip(boxes_xyxy, scores, classes)):
        raw[0, 0, i], raw[0, 1, i] = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        raw[0, 2, i], raw[0, 3, i] = b[2] - b[0], b[3] - b[1]
        raw[0, 4 + c, i] = s
    return raw


@pytest.mark.parametrize("hw", [(1080, 810), (810, 1080), (24, 40), (2160, 3840), (3840, 2160), (500, 333)])
@pytest.mark.parametrize("rect", [False, True])
def test_scale_back_finds_the_painted_rectangle(hw, rect):
    """Paint a white rectangle, find it in the letterboxed input by its pixels, map the box back."""
    h, w = hw
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = int(w * 0.2), int(h * 0.3), int(w * 0.7), int(h * 0.9)
    img[y1:y2, x1:x2] = 255
    batch, infos = preprocess([img], (640, 640), rect=rect)
    ys, xs = np.nonzero(batch[0, 0] > 0.5)
    found = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # where the rectangle landed, by content
    raw = _raw_with_boxes([found], [0.9], [3])
    d = postprocess(raw, infos, "v8", NAMES)[0]
    assert len(d) == 1 and d.class_id[0] == 3 and d.image_shape == hw
    # one input pixel is 1/ratio original pixels: the tolerance of finding the edge by content
    tol = 1.0 / infos[0].ratio + 1
    np.testing.assert_allclose(d.xyxy[0], [x1, y1, x2, y2], atol=tol)


def test_boxes_are_clipped_to_the_image():
    img = np.zeros((300, 600, 3), np.uint8)
    _, infos = preprocess([img], (640, 640))
    raw = _raw_with_boxes([[-50, 100, 700, 500]], [0.9], [0])
    d = postprocess(raw, infos, "v8", NAMES)[0]
    assert d.xyxy[0, 0] == 0 and d.xyxy[0, 2] == 600
    assert d.xyxy[0, 1] >= 0 and d.xyxy[0, 3] <= 300


def test_class_filter_and_max_det():
    rng = np.random.default_rng(0)
    n = 60
    # well separated boxes on a grid so that NMS removes none of them
    boxes = [[(i % 8) * 80 + 5, (i // 8) * 80 + 5, (i % 8) * 80 + 60, (i // 8) * 80 + 60] for i in range(n)]
    scores = rng.uniform(0.3, 0.99, n).astype(np.float32)
    classes = rng.integers(0, 5, n)
    raw = _raw_with_boxes(boxes, scores, classes)
    _, infos = preprocess([np.zeros((640, 640, 3), np.uint8)], (640, 640))

    d = postprocess(raw, infos, "v8", NAMES, conf=0.25, classes=[1, 3])[0]
    expected = np.sort(scores[np.isin(classes, [1, 3])])[::-1]
    assert set(d.class_id.tolist()) <= {1, 3}
    np.testing.assert_allclose(np.sort(d.confidence)[::-1], expected, rtol=1e-6)

    d = postprocess(raw, infos, "v8", NAMES, conf=0.25, max_det=7)[0]
    np.testing.assert_allclose(d.confidence, np.sort(scores)[::-1][:7], rtol=1e-6)

    d = postprocess(raw, infos, "v8", NAMES, conf=0.9)[0]
    assert len(d) == int((scores > 0.9).sum())


def test_nms_is_per_class():
    """Two overlapping boxes survive when their classes differ, not when they are the same."""
    _, infos = preprocess([np.zeros((640, 640, 3), np.uint8)], (640, 640))
    box = [100, 100, 300, 300]
    near = [105, 105, 305, 305]
    same = postprocess(_raw_with_boxes([box, near], [0.9, 0.8], [2, 2]), infos, "v8", NAMES)[0]
    diff = postprocess(_raw_with_boxes([box, near], [0.9, 0.8], [2, 7]), infos, "v8", NAMES)[0]
    assert len(same) == 1 and same.confidence[0] == pytest.approx(0.9)
    assert len(diff) == 2
