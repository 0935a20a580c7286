"""Lazy imports of optional dependencies, each with the one-line install hint on failure."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import warnings
from types import ModuleType

from .errors import MissingDependencyError

# module -> (what to call it, extra that installs it)
_EXTRAS = {
    "torch": ("PyTorch", "torch"),
    "torchvision": ("torchvision", "torch"),
    "ultralytics": ("ultralytics", "torch"),
    "yolov5": ("the yolov5 package (original YOLOv5 checkpoints)", "yolov5"),
    "onnxruntime": ("ONNX Runtime", None),
    "onnxslim": ("onnxslim", None),
    "faster_coco_eval": ("faster-coco-eval (mAP)", None),
    "pynvml": ("nvidia-ml-py", "gpu"),
    "supervision": ("supervision", "video"),
    "trackers": ("trackers", "video"),
    "av": ("PyAV", "video"),
    "PyNvVideoCodec": ("PyNvVideoCodec (NVDEC decoding, NVENC encoding)", "nvdec"),
    "tensorrt": ("TensorRT 10 (Python module)", None),
    "rapidocr_onnxruntime": ("RapidOCR (plate reading)", "ocr"),
    "openvino": ("OpenVINO", "openvino"),
    "nncf": ("NNCF (OpenVINO INT8 quantization)", "openvino"),
    "fastapi": ("FastAPI", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "sqlalchemy": ("SQLAlchemy", "serve"),
    "prometheus_client": ("prometheus-client", "serve"),
    "ray": ("Ray", "ray"),
}


def require(module: str) -> ModuleType:
    """Import `module` or raise MissingDependencyError naming the extra that installs it."""
    try:
        with quiet():
            return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        what, extra = _EXTRAS.get(top, (top, None))
        if e.name and e.name.split(".")[0] != top:
            # the package is there but one of its own dependencies is not
            raise MissingDependencyError(f"{e.name} (needed by {what})", package=e.name) from e
        raise MissingDependencyError(what, extra=extra, package=top) from e


def available(module: str) -> bool:
    """True when `module` can be found, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def quiet():
    """Silence the banners and warnings that ultralytics / yolov5 print on import and load."""
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_OFFLINE", "True")
    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("ultralytics", "yolov5", "utils", "models")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
