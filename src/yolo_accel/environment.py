"""The environment a measurement was taken in (recorded in every report)."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from importlib import metadata

from ._version import __version__


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_environment(device: str = "cpu") -> dict:
    """Versions, CPU and (when CUDA is used) GPU, driver, CUDA and cuDNN."""
    env = {
        "yolo_accel": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_threads": os.cpu_count(),
        "packages": {},
    }
    for dist in (
        "torch",
        "torchvision",
        "onnxruntime",
        "onnxruntime-gpu",
        "onnx",
        "numpy",
        "opencv-python-headless",
        "opencv-python",
        "ultralytics",
        "yolov5",
        "faster-coco-eval",
        "openvino",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            env["packages"][dist] = metadata.version(dist)
    if device.startswith("cuda") and "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            idx = torch.device(device).index or 0
            env["gpu"] = torch.cuda.get_device_name(idx)
            env["cuda"] = torch.version.cuda
            env["cudnn"] = torch.backends.cudnn.version()
            try:
                import pynvml

                pynvml.nvmlInit()
                env["driver"] = pynvml.nvmlSystemGetDriverVersion()
            except Exception:
                pass
    return env
