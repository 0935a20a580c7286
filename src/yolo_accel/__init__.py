"""yolo-accel: make YOLO detectors fast in production and prove that they are still right.

Public API (imported lazily, so `import yolo_accel` stays cheap):
    Detector, Detections, export_onnx, OnnxExportSettings
"""

from __future__ import annotations

from ._version import __version__

__all__ = ["Detections", "Detector", "OnnxExportSettings", "YoloAccelError", "__version__", "export_onnx"]

_LAZY = {
    "Detector": ("yolo_accel.detector", "Detector"),
    "Detections": ("yolo_accel.detections", "Detections"),
    "export_onnx": ("yolo_accel.export.onnx", "export_onnx"),
    "OnnxExportSettings": ("yolo_accel.export.onnx", "OnnxExportSettings"),
    "YoloAccelError": ("yolo_accel.errors", "YoloAccelError"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'yolo_accel' has no attribute {name!r}")
