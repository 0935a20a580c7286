"""Throughput mode (BatchingDetector) on the CPU: same results as direct calls, real batching, errors."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from tests.conftest import read_bgr

from yolo_accel import Detector
from yolo_accel.batching import BatchingDetector
from yolo_accel.errors import SettingsError


@pytest.fixture(scope="module")
def detector(yolov5n_onnx):
    with Detector(yolov5n_onnx, backend="onnxruntime", rect=False) as det:
        yield det


@pytest.fixture(scope="module")
def frames(sample_images, coco128_images):
    return [read_bgr(p) for p in sample_images + coco128_images[:10]]


def _same(a, b):
    return len(a) == len(b) and np.allclose(a.xyxy, b.xyxy, atol=1e-3) and np.array_equal(a.class_id, b.class_id)


def test_results_equal_direct_calls_from_many_threads(detector, frames):
    direct = [detector.detect_batch([f])[0][0] for f in frames]
    results: dict[int, object] = {}
    with BatchingDetector(detector, max_batch=4, max_wait_ms=50) as batcher:

        def producer(offset):
            for i in range(offset, len(frames), 3):
                results[i] = batcher.submit(frames[i])

        threads = [threading.Thread(target=producer, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = {i: f.result(timeout=120) for i, f in results.items()}
        stats = batcher.stats
    assert sorted(got) == list(range(len(frames)))
    assert all(_same(got[i], direct[i]) for i in range(len(frames)))
    assert stats.frames == len(frames)
    assert stats.mean_batch > 1  # frames from three producers shared batches
    assert stats.batches >= len(frames) / 4  # never more than max_batch per batch


def test_detect_batch_returns_in_order(detector, frames):
    with BatchingDetector(detector, max_batch=8, max_wait_ms=5) as batcher:
        dets, per = batcher.detect_batch(frames[:5])
    direct, _ = detector.detect_batch(frames[:5])
    assert all(_same(a, b) for a, b in zip(dets, direct))
    assert per["infer"] > 0


def test_a_lone_frame_waits_at_most_max_wait(detector, frames):
    with BatchingDetector(detector, max_batch=64, max_wait_ms=20) as batcher:
        batcher.submit(frames[0]).result(timeout=60)  # warm
        t0 = time.perf_counter()
        batcher.submit(frames[0]).result(timeout=60)
        waited = time.perf_counter() - t0
    one = time.perf_counter()
    detector.detect_batch([frames[0]])
    alone = time.perf_counter() - one
    assert waited < alone + 0.02 + 0.5  # the batch closed on its deadline, not on a full batch


def test_errors_reach_the_submitter_and_the_batcher_lives_on(detector, frames):
    with BatchingDetector(detector, max_batch=1, max_wait_ms=0) as batcher:
        bad = batcher.submit(np.zeros((0, 0, 3), np.uint8))
        with pytest.raises(ZeroDivisionError):  # an empty frame has no aspect ratio
            bad.result(timeout=60)
        assert len(batcher.submit(frames[0]).result(timeout=60)) > 0


def test_bad_settings():
    with pytest.raises(SettingsError, match="--max-batch"):
        BatchingDetector(object(), max_batch=0)
