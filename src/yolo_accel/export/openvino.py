"""`.pt` (or `.onnx`) -> OpenVINO IR (`.xml` + `.bin`) for CPUs, FP32 or INT8, then a parity check.

The IR is converted from this project's ONNX export (cached), so the graph and its metadata are
the ones every other backend runs; the metadata goes into the IR's runtime info. `--int8`
quantizes with NNCF's post-training quantization on calibration images prepared exactly as
inference prepares them; the head's decoding (sigmoid, grid and anchor arithmetic, concatenation)
stays in floating point, as Ultralytics' OpenVINO INT8 export does, since boxes are decoded there.
Both files are written under temporary names and moved into place only when everything, parity
included, succeeded. The INT8 parity check runs on 20 calibration images and asks for 90 % of the
PyTorch detections (INT8 moves scores near the threshold); its accuracy is `validate`'s to judge.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .._deps import quiet, require
from .._version import __version__
from ..backends.openvino import RT_KEY
from ..errors import SettingsError
from ..model import check_model_path
from .common import (
    PARITY_THRESHOLD,
    ExportResult,
    cached_export,
    check_parity,
    check_target,
    keep_if_parity,
    partial_file,
)

INT8_PARITY = 0.90  # INT8 moves scores near the threshold: some detections come and go (mAP is the judge)
INT8_PARITY_IMAGES = 20  # of the calibration set, for a check with more than a handful of detections
HEAD_OPS = ["Multiply", "Subtract", "Sigmoid", "Power", "Add", "Concat"]  # kept in floating point by --int8


@dataclass
class OpenVINOExportSettings:
    """Everything that changes the IR (and so keys the cache)."""

    imgsz: int | None = None
    dynamic: bool = False  # False: a fixed 1x3xHxW input (OpenVINO plans a static graph faster)
    int8: bool = False
    calib_data: str | None = None  # data.yaml or an image folder
    calib_images: int = 300

    def validate(self) -> None:
        if self.int8 and not self.calib_data:
            raise SettingsError("--int8 needs --calib-data (a data.yaml or a folder of representative images)")
        if self.calib_images < 1:
            raise SettingsError("--calib-images must be at least 1")


def default_output(model_path: Path, s: OpenVINOExportSettings) -> Path:
    """model.pt -> model-openvino.xml beside it (model-openvino-int8.xml for --int8)."""
    return model_path.with_name(model_path.stem + "-openvino" + ("-int8" if s.int8 else "") + ".xml")


def export_openvino(
    model_path: str | Path,
    output: str | Path | None = None,
    settings: OpenVINOExportSettings | None = None,
    device: str = "cpu",
    force: bool = False,
    check: bool = True,
    parity_images: list[Path] | None = None,
    status=None,
) -> ExportResult:
    """Export a `.pt` to an OpenVINO IR (through the cached ONNX export) and check it against PyTorch."""
    from ..device import parse_device
    from .common import load_for_export
    from .onnx import cached_onnx

    t_start = time.perf_counter()
    s = settings or OpenVINOExportSettings()
    s.validate()
    say = status or (lambda _t: None)
    src = check_model_path(model_path, (".pt",))
    if parse_device(device).is_cuda:
        raise SettingsError("the OpenVINO export targets CPUs: leave out --device cuda")
    target = Path(output).expanduser() if output else default_output(src, s)
    check_target(target, ".xml", force)
    if check:
        from ..assets import sample_images

        images = parity_images or (None if s.int8 else sample_images())  # INT8: calibration images, below
    ov = require("openvino")
    module, info, imgsz = load_for_export(src, s.imgsz, say)
    s.imgsz = imgsz[0] if imgsz[0] == imgsz[1] else None
    say(f"exporting {src.name} to ONNX at {imgsz[0]}x{imgsz[1]}")
    onnx_path = cached_onnx(src, imgsz=imgsz[0])
    from ..model import read_onnx

    _, onnx_info = read_onnx(onnx_path)
    with partial_file(target, f"OpenVINO export of {src.name}") as tmp:
        tmp_bin = tmp.with_suffix(".bin")
        try:
            say("converting to OpenVINO IR")
            model = ov.convert_model(str(onnx_path))
            if not s.dynamic:
                model.reshape([1, 3, *imgsz])
            if s.int8:
                model = _quantize(model, s, imgsz, info.stride, say)
            meta = {
                **onnx_info.metadata,
                "exporter": f"yolo-accel {__version__}",
                "openvino_export": json.dumps(asdict(s)),
            }
            meta["precision"] = "int8" if s.int8 else "fp32"
            for k, v in meta.items():
                model.set_rt_info(str(v), [RT_KEY, k])
            ov.save_model(model, str(tmp), compress_to_fp16=False)
            size = tmp.stat().st_size + tmp_bin.stat().st_size
            result = ExportResult(None, target, info, s, 0.0, size)

            def parity():
                from ..backends.openvino import OpenVINOBackend

                say("checking parity with the PyTorch model")
                cpu = parse_device("cpu")
                check_images = images or _calibration_images(s.calib_data, INT8_PARITY_IMAGES)
                threshold = INT8_PARITY if s.int8 else PARITY_THRESHOLD
                return check_parity(module, info, cpu, imgsz, OpenVINOBackend(tmp, cpu), check_images, threshold)

            result = keep_if_parity(
                result,
                tmp,
                t_start,
                parity if check else None,
                before_keep=lambda: os.replace(tmp_bin, target.with_suffix(".bin")),
                force=force,
            )
        finally:
            tmp_bin.unlink(missing_ok=True)
    return result


def _calibration_images(data: str, n: int) -> list[Path]:
    from ..evaluate.datasets import load_dataset

    return [it.path for it in load_dataset(data).items[:n]]


def _quantize(model, s: OpenVINOExportSettings, imgsz, stride: int, say):
    from .tensorrt import calibration_batches

    nncf = require("nncf")
    say(f"quantizing to INT8 on {s.calib_images} images of {s.calib_data}")
    batches = list(calibration_batches(s.calib_data, s.calib_images, 1, imgsz, stride))
    with quiet():
        return nncf.quantize(
            model,
            nncf.Dataset(batches),
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(batches),
            ignored_scope=nncf.IgnoredScope(types=HEAD_OPS, validate=False),  # a head may lack some of them
        )


def cached_openvino(
    model_path: str | Path,
    imgsz: int | None = None,
    *,
    int8: bool = False,
    calib_data: str | None = None,
    calib_images: int = 300,
    dynamic: bool = False,
) -> Path:
    """The OpenVINO IR of `model_path` for these settings (FP32, or INT8 calibrated on `calib_data`),
    exported once and reused after."""
    src = check_model_path(model_path, (".pt",))
    s = OpenVINOExportSettings(
        imgsz=imgsz, dynamic=dynamic, int8=int8, calib_data=calib_data if int8 else None, calib_images=calib_images
    )
    s.validate()
    return cached_export(
        src,
        "openvino",
        ".xml",
        [asdict(s), __version__],
        lambda path: export_openvino(src, path, s, force=True, check=True),
        "OpenVINO export",
        "yolo-accel export --format openvino" + (" --int8" if int8 else ""),
        tag="int8-" if int8 else "",
        companions=(".bin",),
    )
