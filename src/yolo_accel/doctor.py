"""`yolo-accel doctor`: what is installed, what works, and the fix for what does not."""

from __future__ import annotations

import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from importlib import metadata

from ._version import __version__

OK, MISSING, WARN = "OK", "MISSING", "WARN"


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _package(name: str, dist: str, fix: str, required: bool = True) -> Check:
    v = _version(dist)
    if v:
        return Check(name, OK, v)
    return Check(name, MISSING if required else WARN, "not installed", fix)


def run_checks() -> list[Check]:
    """Every check, in report order. Imports torch and onnxruntime when they are installed."""
    checks = [
        Check(
            "python",
            OK if sys.version_info >= (3, 10) else WARN,
            f"{platform.python_version()} ({sys.executable})",
            "" if sys.version_info >= (3, 10) else "use Python 3.10 or newer",
        ),
        Check("yolo-accel", OK, __version__),
    ]
    for dist in (
        "numpy",
        "opencv-python-headless",
        "onnx",
        "onnxslim",
        "typer",
        "rich",
        "pyyaml",
        "matplotlib",
        "faster-coco-eval",
        "psutil",
    ):
        alt = "opencv-python" if dist == "opencv-python-headless" else None
        c = _package(dist, dist, f"pip install {dist}")
        if c.status != OK and alt and _version(alt):
            c = Check(dist, OK, f"{alt} {_version(alt)}")
        checks.append(c)
    checks += _torch_checks()
    checks += _onnxruntime_checks()
    checks += _tensorrt_checks()
    checks.append(
        _package("nvidia-ml-py (GPU memory)", "nvidia-ml-py", "pip install 'yolo-accel[gpu]'", required=False)
    )
    checks.append(_assets_check())
    return checks


def _torch_checks() -> list[Check]:
    out = []
    tv = _version("torch")
    if not tv:
        return [Check("torch", MISSING, "not installed (needed for .pt models)", "pip install 'yolo-accel[torch]'")]
    try:
        import torch
    except Exception as e:  # a broken install: say so rather than crash the report
        return [Check("torch", MISSING, f"{tv} installed but fails to import: {e}", "reinstall torch")]
    out.append(Check("torch", OK, f"{torch.__version__} (built for CUDA {torch.version.cuda or 'none'})"))
    if torch.cuda.is_available():
        gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        cudnn = torch.backends.cudnn.version()
        out.append(Check("torch CUDA", OK, f"{gpus}; cuDNN {cudnn}"))
    else:
        fix = (
            "install the CUDA build of torch (pip install torch --index-url https://download.pytorch.org/whl/cu126) "
            "and an NVIDIA driver"
            if not torch.version.cuda
            else "no NVIDIA GPU or driver visible: check `nvidia-smi`; CPU inference still works"
        )
        out.append(Check("torch CUDA", WARN, "CUDA not available", fix))
    out.append(_compiler_check())
    out.append(_package("torchvision", "torchvision", "pip install 'yolo-accel[torch]'"))
    out.append(_package("ultralytics (YOLOv8/YOLO11/YOLOv5u .pt)", "ultralytics", "pip install 'yolo-accel[torch]'"))
    out.append(_package("yolov5 (original YOLOv5 .pt)", "yolov5", "pip install 'yolo-accel[yolov5]'", required=False))
    return out


def _onnxruntime_checks() -> list[Check]:
    cpu, gpu = _version("onnxruntime"), _version("onnxruntime-gpu")
    out = []
    if cpu and gpu:
        out.append(
            Check(
                "onnxruntime + onnxruntime-gpu",
                WARN,
                f"both installed ({cpu} and {gpu}): they overwrite each other's files",
                "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu",
            )
        )
    if not (cpu or gpu):
        return [Check("onnxruntime", MISSING, "not installed", "pip install onnxruntime (or onnxruntime-gpu)")]
    try:
        import onnxruntime as ort
    except Exception as e:
        return [*out, Check("onnxruntime", MISSING, f"fails to import: {e}", "reinstall onnxruntime")]
    providers = ort.get_available_providers()
    out.append(
        Check(
            "onnxruntime",
            OK,
            f"{ort.__version__} ({'gpu' if gpu else 'cpu'} build); providers: {', '.join(providers)}",
        )
    )
    if "CUDAExecutionProvider" in providers:
        out.append(Check("onnxruntime CUDA provider", OK, "available"))
    else:
        out.append(
            Check(
                "onnxruntime CUDA provider",
                WARN,
                "not available (CPU only)",
                "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (needs CUDA 12/13 and cuDNN 9)",
            )
        )
    if "TensorrtExecutionProvider" in providers:
        out.append(Check("onnxruntime TensorRT provider", OK, "available"))
    return out


def _tensorrt_checks() -> list[Check]:
    out = []
    tv = _version("tensorrt") or _version("tensorrt-cu12") or _version("tensorrt-cu13")
    try:
        import tensorrt

        out.append(Check("tensorrt (Python)", OK, tensorrt.__version__))
    except Exception:
        detail = f"package {tv} present but libnvinfer not loadable" if tv else "not installed"
        out.append(
            Check(
                "tensorrt (Python)",
                WARN,
                detail,
                "install TensorRT 10 (pip install tensorrt on a machine that reaches NVIDIA's index, "
                "or the TensorRT tar/deb) for engine export",
            )
        )
    trtexec = shutil.which("trtexec")
    out.append(
        Check(
            "trtexec",
            OK if trtexec else WARN,
            trtexec or "not found on PATH",
            "" if trtexec else "add TensorRT's bin folder to PATH (e.g. export PATH=$PATH:/usr/src/tensorrt/bin)",
        )
    )
    return out


def _compiler_check() -> Check:
    """The C++ compiler that `export --format compiled` would build packages with (export/cxx.py)."""
    from .errors import ExportError
    from .export.cxx import ENV, package_compiler

    name = "C++ compiler (compiled packages)"
    try:
        choice = package_compiler()
    except ExportError as e:
        return Check(name, WARN, str(e), f"install g++ or set {ENV}")
    if choice.note:
        return Check(name, WARN, choice.note)
    return Check(name, OK, choice.cxx)


def _assets_check() -> Check:
    from .assets import DEFAULT_MODEL, find_asset
    from .errors import DataError

    try:
        p = find_asset(DEFAULT_MODEL)
        return Check("shared assets", OK, str(p.parent.parent))
    except DataError as e:
        return Check("shared assets", WARN, str(e), "set YOLO_ACCEL_ASSETS to the assets folder")


def as_json(checks: list[Check]) -> dict:
    return {
        "yolo_accel_version": __version__,
        "checks": [asdict(c) for c in checks],
        "ok": all(c.status != MISSING for c in checks),
    }
