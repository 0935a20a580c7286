"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import SettingsError, YoloAccelError

BACKEND_HELP = (
    "torch (.pt), onnxruntime (.onnx), compiled (.pt2, AOTInductor), openvino (.xml, CPU) or tensorrt (.engine); "
    "default: from the model's suffix. A .pt asked to run on another backend is exported once into the cache."
)
VARIANTS_HELP = (
    "Comma-separated variants NAME[-fp16][-cl][-compile][-iobind][-graph][-cpu]. NAME: torch (.pt), onnxruntime "
    "(.onnx), compiled (.pt2), openvino (.xml; -fp16: bfloat16 on the CPU) or tensorrt (.engine); a .pt model is "
    "exported once for the others. -fp16: half precision (CUDA); -cl: channels_last; -compile: torch.compile; "
    "-iobind: ONNX Runtime IO binding (inputs and outputs stay on the GPU); -graph: CUDA graphs; -cpu: this row "
    "on the CPU. e.g. torch,torch-fp16-cl-compile-graph,onnxruntime-fp16-iobind."
)
BackendOpt = Annotated[str | None, typer.Option("--backend", "-b", help=BACKEND_HELP)]
MaxDetOpt = Annotated[int, typer.Option("--max-det", help="Most detections per image (300, as Ultralytics).")]

# -- shared options -----------------------------------------------------------------------------
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="cpu, cuda or cuda:N.")]
HalfOpt = Annotated[bool, typer.Option("--half", help="FP16 (CUDA only).")]
ImgszOpt = Annotated[
    int | None,
    typer.Option("--imgsz", help="Input size in pixels (a stride multiple; default: the model's own)."),
]
OpsetOpt = Annotated[int, typer.Option("--opset", help="ONNX opset (12 and up; 17 recommended).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace existing output files.")]
# speed options of the GPU path (none changes outputs beyond float rounding; FP16 is --half)
CudaGraphOpt = Annotated[
    bool,
    typer.Option(
        "--cuda-graph",
        help="Capture one CUDA graph per input shape and replay it (torch on CUDA; onnxruntime with "
        "--io-binding uses ONNX Runtime's own; not compiled .pt2 packages, whose runner breaks capture).",
    ),
]
ChannelsLastOpt = Annotated[bool, typer.Option("--channels-last", help="NHWC memory format (torch backend).")]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.export + torch.compile the model, one graph per input shape (first call compiles; cached on disk).",
    ),
]
IoBindingOpt = Annotated[
    bool, typer.Option("--io-binding", help="onnxruntime on CUDA: inputs and outputs stay in device buffers.")
]
GpuOpsOpt = Annotated[
    bool | None,
    typer.Option(
        "--gpu-ops/--cpu-ops",
        help="Letterbox, NMS and scale-back on the GPU (frames go up once, only boxes come back). "
        "Default: on wherever the backend takes device tensors (torch/compiled on CUDA, onnxruntime "
        "with --io-binding).",
    ),
]


DeployOpt = Annotated[
    Path | None,
    typer.Option(
        "--deploy",
        help="Run a bundle from `yolo-accel optimize` exactly as chosen: its artifact, backend, device, precision, "
        "speed options, input size and thresholds (instead of --model and those options).",
    ),
]


def deploy_config(deploy: Path | None, model: Path | None, backend: str | None = None):
    """The bundle's DeployConfig when --deploy is given (None otherwise); --model is then not taken."""
    if deploy is None:
        if model is None:
            raise SettingsError("--model is needed (or --deploy DIR, a bundle from yolo-accel optimize)")
        return None
    if model is not None or backend:
        raise SettingsError("--deploy runs the bundle's own model and backend: leave out --model and --backend")
    from ..deploy import load_deploy

    return load_deploy(deploy)


OcrOpt = Annotated[
    bool,
    typer.Option(
        "--ocr",
        help="Read the plates of tracked vehicles (car, motorcycle, bus, truck) off the detection path "
        "(the ocr extra: pip install 'yolo-accel\\[ocr]'); the events get the plate text.",
    ),
]
PlatePatternOpt = Annotated[
    str | None,
    typer.Option(
        "--plate-pattern",
        help="With --ocr: accept only plates matching this regular expression after normalising to upper-case "
        "letters and digits, e.g. '[A-Z]{2}[0-9]{2}[A-Z]{3}' (UK).",
    ),
]


def check_ocr_options(ocr: bool, plate_pattern: str | None, **with_ocr_only) -> None:
    """--ocr's extra installed and --plate-pattern a regular expression (checked before any work); the
    options in `with_ocr_only` ({"--plate-crops": value, ...}) given only with --ocr."""
    import re

    from .._deps import require

    if not ocr:
        given = [k for k, v in {"--plate-pattern": plate_pattern, **with_ocr_only}.items() if v]
        if given:
            raise SettingsError(f"{' and '.join(given)} go{'es' if len(given) == 1 else ''} with --ocr")
        return
    require("rapidocr_onnxruntime")  # a missing extra is one line here, not an error in every stream
    if plate_pattern:
        try:
            re.compile(plate_pattern)
        except re.error as e:
            raise SettingsError(f"--plate-pattern is not a regular expression: {e}") from None


MAX_FRAME_SIDE = 16384


def check_imgsz_option(imgsz: int | None) -> None:
    if imgsz is not None and imgsz <= 0:
        from ..errors import SettingsError

        raise SettingsError(f"--imgsz must be a positive number of pixels (got {imgsz})")
    from ..ops.letterbox import MAX_IMGSZ

    if imgsz is not None and imgsz > MAX_IMGSZ:
        from ..errors import SettingsError

        raise SettingsError(f"--imgsz {imgsz}: at most {MAX_IMGSZ} pixels (YOLO models run at 320-1280)")


def speed_options(
    cuda_graph: bool, channels_last: bool, compile: bool, io_binding: bool, gpu_ops: bool | None, threads: int = 0
) -> dict:
    """Detector keyword arguments for the speed flags shared by predict and video."""
    from ..backends.ort import OrtOptions
    from ..backends.pytorch import TorchOptions

    return {
        "torch_options": TorchOptions(channels_last=channels_last, cuda_graph=cuda_graph, compile=compile),
        "ort_options": OrtOptions(
            intra_op_threads=threads, io_binding=io_binding, cuda_graph=cuda_graph and io_binding
        ),
        "gpu_ops": gpu_ops,
    }


def parse_batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise YoloAccelError(f"--batch takes comma-separated whole numbers, e.g. 1,8,32 (got {text!r})") from None
    if not values or min(values) < 1:
        raise YoloAccelError(f"--batch sizes must be at least 1 (got {text!r})")
    return values


def parse_frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise YoloAccelError(f"--frame-size takes WxH, e.g. 1920x1080 (got {text!r})") from None
    if w < 1 or h < 1:
        raise YoloAccelError(f"--frame-size must be positive (got {text!r})")
    if max(w, h) > MAX_FRAME_SIDE:
        raise YoloAccelError(f"--frame-size {text}: at most {MAX_FRAME_SIDE} pixels a side")
    return w, h


def finite(value: float | None) -> float | None:
    """Option callback: a number of seconds or a rate must be a finite number (NaN passes Click's ranges)."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value
