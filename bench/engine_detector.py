"""The detector every published video-engine row uses (BENCHMARKS.md, "Video engine"): YOLOv5n 640 FP16,
CUDA graph, channels_last, the vehicle classes, IoU 0.5, at most 30 boxes a frame. Imported by the bench
scripts beside it (run as `python3 bench/SCRIPT.py`, which puts this folder on the path)."""

from __future__ import annotations


def published_detector(model: str):
    from yolo_accel import Detector
    from yolo_accel.backends.pytorch import TorchOptions

    return Detector(
        model,
        device="cuda",
        half=True,
        classes="car,motorcycle,bus,truck",
        iou=0.5,
        max_det=30,
        rect=False,
        torch_options=TorchOptions(cuda_graph=True, channels_last=True),
    )
