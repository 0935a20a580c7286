"""CUDA paths (run on the GPU machine: `pytest -m gpu`); skipped where CUDA is absent."""

from __future__ import annotations

import numpy as np
import pytest

from yolo_accel import Detector
from yolo_accel.evaluate.similarity import match_detections

pytestmark = pytest.mark.gpu


def _agree(a, b, iou=0.5):
    n = sum(len(x) for x in a)
    m = sum(match_detections(x, y, iou).matched for x, y in zip(a, b))
    return m / max(n, 1), n


@pytest.fixture(scope="module")
def images(sample_images, coco128_images):
    return sample_images + coco128_images[:20]


@pytest.fixture(scope="module")
def cpu_reference(yolov5n_pt, images):
    with Detector(yolov5n_pt, device="cpu") as det:
        return det.predict(images)


def test_torch_cuda_matches_cpu(yolov5n_pt, images, cpu_reference):
    with Detector(yolov5n_pt, device="cuda") as det:
        assert "cuda" in str(det.backend.device) and "on CPU" not in det.describe()
        rate, n = _agree(cpu_reference, det.predict(images), iou=0.95)
    print(f"\ntorch cuda vs cpu: {rate:.2%} of {n}")
    assert rate >= 0.99


def test_torch_cuda_half(yolov5n_pt, images, cpu_reference):
    with Detector(yolov5n_pt, device="cuda", half=True) as det:
        rate, n = _agree(cpu_reference, det.predict(images))
    print(f"\ntorch cuda fp16 vs cpu fp32: {rate:.2%} of {n}")
    assert rate >= 0.98


def test_onnxruntime_cuda_provider(yolov5n_pt, images):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    with Detector(yolov5n_pt, device="cpu", rect=False) as ref:
        cpu_square = ref.predict(images)
    with Detector(yolov5n_pt, backend="onnxruntime", device="cuda") as det:
        assert det.backend.providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        assert det.rect is False  # new shapes cost a cuDNN algorithm search on the CUDA provider
        opts = det.backend.session.get_provider_options()["CUDAExecutionProvider"]
        assert opts["cudnn_conv_algo_search"] == "EXHAUSTIVE"
        assert opts["arena_extend_strategy"] == "kNextPowerOfTwo"
        assert int(opts["gpu_mem_limit"]) == 2 * (1 << 30)
        rate, n = _agree(cpu_square, det.predict(images), iou=0.95)
    print(f"\nonnxruntime CUDA vs torch cpu: {rate:.2%} of {n}")
    assert rate >= 0.99


def test_half_onnx_export_on_cuda(tmp_path, yolov5n_pt):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    from yolo_accel.export.onnx import OnnxExportSettings, export_onnx

    r = export_onnx(yolov5n_pt, tmp_path / "h.onnx", OnnxExportSettings(half=True), device="cuda")
    print(f"\nfp16 export parity: {r.parity.match_rate:.2%}, max|Δ| {r.parity.max_abs:.3g}")
    assert r.ok
    with Detector(r.path, device="cuda") as det:
        assert det.backend.input_dtype == np.float16
