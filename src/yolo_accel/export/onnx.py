"""`.pt` -> ONNX: classic TorchScript exporter, onnxslim, metadata, then a parity check.

The file is written under a temporary name and moved into place only when everything,
parity included, succeeded: a failed export leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from .._deps import quiet, require
from .._version import __version__
from ..device import Device, check_torch_cuda, parse_device
from ..errors import ExportError, SettingsError
from ..model import ModelInfo, check_model_path, prepare_for_export
from .common import (
    ExportResult,
    cached_export,
    check_parity,
    check_target,
    keep_if_parity,
    load_for_export,
    partial_file,
)


@dataclass
class OnnxExportSettings:
    """Everything that changes the exported file (and so keys the cache)."""

    imgsz: int | None = None  # None: the checkpoint's training size, else 640
    opset: int = 17
    dynamic: bool = False  # dynamic batch, height and width (as Ultralytics' dynamic=True)
    half: bool = False  # FP16 weights and input (needs CUDA)
    batch: int = 1  # batch size of the example input (the fixed batch when not dynamic)
    simplify: bool = True  # onnxslim

    def validate(self) -> None:
        if not 7 <= self.opset <= 23:
            raise SettingsError(f"--opset {self.opset} is outside the supported range 7..23 (17 recommended)")
        if self.batch < 1:
            raise SettingsError(f"--batch must be at least 1 (got {self.batch})")


def _metadata(info: ModelInfo, s: OnnxExportSettings, imgsz: tuple[int, int]) -> dict[str, str]:
    import torch

    return {
        "names": json.dumps({str(k): v for k, v in info.names.items()}),
        "stride": str(info.stride),
        "imgsz": json.dumps(list(imgsz)),
        "task": info.task,
        "layout": info.layout or "",
        "family": info.family,
        "source": info.path.name,
        "source_sha256": info.sha256,
        "exporter": f"yolo-accel {__version__}",
        "yolo_accel_version": __version__,
        "torch_version": torch.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "export_settings": json.dumps(asdict(s)),
        "batch": str(s.batch) if not s.dynamic else "dynamic",
    }


def default_output(model_path: Path, s: OnnxExportSettings) -> Path:
    """model.pt -> model.onnx beside it (model-fp16.onnx for --half)."""
    return model_path.with_name(model_path.stem + ("-fp16" if s.half else "") + ".onnx")


def export_onnx(
    model_path: str | Path,
    output: str | Path | None = None,
    settings: OnnxExportSettings | None = None,
    device: str | Device = "cpu",
    force: bool = False,
    check: bool = True,
    parity_images: list[Path] | None = None,
    status=None,
) -> ExportResult:
    """Export a `.pt` to ONNX and check it against the PyTorch model on real images.

    `status(text)` is called at each step (the CLI shows it as a spinner).
    """
    t_start = time.perf_counter()
    s = settings or OnnxExportSettings()
    s.validate()
    say = status or (lambda _t: None)
    src = check_model_path(model_path, (".pt",))
    dev = parse_device(device)
    if s.half and not dev.is_cuda:
        raise SettingsError("--half export needs a CUDA device (--device cuda): FP16 is traced on the GPU")
    target = Path(output).expanduser() if output else default_output(src, s)
    check_target(target, ".onnx", force)
    if check:
        from ..assets import sample_images

        images = parity_images or sample_images()
    torch = require("torch")
    onnx = require("onnx")
    check_torch_cuda(dev)

    module, info, imgsz = load_for_export(src, s.imgsz, say)
    from ..errors import YoloAccelWarning

    s.imgsz = imgsz[0] if imgsz[0] == imgsz[1] else None
    with partial_file(target, f"ONNX export of {src.name}") as tmp:
        say(f"tracing {src.name} at {imgsz[0]}x{imgsz[1]}, opset {s.opset}")
        # FP16 with a dynamic height/width would compute the heads' grids in FP16 inside the graph
        # (an FP16 Range, which ONNX Runtime rejects): FP16 files keep a fixed size, batch stays dynamic
        dynamic_hw = s.dynamic and not s.half
        if s.dynamic and s.half:
            warnings.warn(
                f"--half: height and width stay fixed at {imgsz[0]}x{imgsz[1]}; only the batch axis is dynamic",
                YoloAccelWarning,
                stacklevel=2,
            )
        m = prepare_for_export(module, info.family, dynamic_hw).to(str(dev))
        x = torch.zeros(s.batch, 3, *imgsz, device=str(dev))
        if s.half:
            m, x = m.half(), x.half()
        with torch.inference_mode():
            for _ in range(2):  # dry runs build the heads' grids, as Ultralytics / YOLOv5 do
                m(x)
        anchors_axis = 1 if info.layout == "v5" else 2
        if not s.dynamic:
            dyn = None
        elif dynamic_hw:
            dyn = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", anchors_axis: "anchors"}}
        else:
            dyn = {"images": {0: "batch"}, "output0": {0: "batch"}}
        with quiet(), torch.no_grad():
            torch.onnx.export(
                m,
                (x,),
                str(tmp),
                opset_version=s.opset,
                input_names=["images"],
                output_names=["output0"],
                dynamic_axes=dyn,
                do_constant_folding=True,
                dynamo=False,
            )  # classic exporter: single file, any opset >= 7
        proto = onnx.load(str(tmp))
        if len(proto.graph.output) != 1:
            raise ExportError(f"the exported graph has {len(proto.graph.output)} outputs; expected 1")
        if s.simplify:
            say("simplifying with onnxslim")
            onnxslim = require("onnxslim")
            with quiet():
                proto = onnxslim.slim(proto)
        onnx.checker.check_model(proto)
        del proto.metadata_props[:]
        for k, v in _metadata(info, s, imgsz).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(proto, str(tmp))
        result = ExportResult(None, target, info, s, 0.0, tmp.stat().st_size)

        def parity():
            from ..backends.ort import OnnxRuntimeBackend

            say("checking parity with the PyTorch model")
            return check_parity(module, info, dev, imgsz, OnnxRuntimeBackend(tmp, dev, half=s.half), images)

        return keep_if_parity(result, tmp, t_start, parity if check else None, force=force)


def cached_onnx(
    model_path: str | Path,
    imgsz: int | None = None,
    half: bool = False,
    device: str | Device = "cpu",
    opset: int = 17,
) -> Path:
    """The ONNX export of `model_path` for these settings, exported once and reused after.

    Keyed on the checkpoint's SHA-256, the export settings and the yolo-accel version.
    """
    src = check_model_path(model_path, (".pt",))
    s = OnnxExportSettings(imgsz=imgsz, opset=opset, dynamic=True, half=half, batch=1, simplify=True)
    return cached_export(
        src,
        "onnx",
        ".onnx",
        [asdict(s), __version__],
        lambda path: export_onnx(src, path, s, device=device, force=True, check=True),
        "ONNX export",
        "yolo-accel export",
    )
