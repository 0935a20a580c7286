"""`.pt` -> AOTInductor package (`.pt2`): torch.export, then inductor compiles it ahead of time.

The package runs with torch alone (no ultralytics, no yolov5 code): the graph, the weights and the
compiled kernels are inside, with our metadata under `extra/`. It is compiled for one device
type (and, on CUDA, one GPU architecture) and one torch version; the loader checks both and says
so in one line instead of failing deep inside torch.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .._deps import quiet, require
from .._version import __version__
from ..backends.aoti import METADATA_NAME, check_loads_in_child, gpu_name
from ..backends.pytorch import inductor_cache
from ..device import Device, check_torch_cuda, parse_device
from ..errors import SettingsError
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
from .cxx import package_compiler


@dataclass
class CompiledExportSettings:
    """Everything that changes the compiled package (and so keys the cache)."""

    imgsz: int | None = None  # None: the checkpoint's training size
    half: bool = False  # FP16 weights and input (CUDA only)
    max_batch: int = 128  # the package takes any batch size from 1 to this

    def validate(self, dev: Device) -> None:
        if self.half and not dev.is_cuda:
            raise SettingsError("--half needs --device cuda (FP16 kernels are compiled for the GPU)")
        if not 1 <= self.max_batch <= 1024:
            raise SettingsError(f"--max-batch must be between 1 and 1024 (got {self.max_batch})")


def default_output(model_path: Path, s: CompiledExportSettings, dev: Device) -> Path:
    """model.pt -> model-cuda.pt2 beside it (model-fp16-cuda.pt2 for --half): the device is in the name."""
    return model_path.with_name(f"{model_path.stem}{'-fp16' if s.half else ''}-{dev.kind}.pt2")


def _metadata(info: ModelInfo, s: CompiledExportSettings, imgsz, dev: Device, compile_s: float) -> dict:
    import torch

    return {
        "names": {str(k): v for k, v in info.names.items()},
        "stride": info.stride,
        "imgsz": list(imgsz),
        "layout": info.layout,
        "family": info.family,
        "half": s.half,
        "max_batch": s.max_batch,
        "device_type": dev.kind,
        "gpu": gpu_name(dev),
        "torch_version": torch.__version__,
        "source": info.path.name,
        "source_sha256": info.sha256,
        "exporter": f"yolo-accel {__version__}",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "compile_seconds": round(compile_s, 2),
        "export_settings": asdict(s),
    }


def _write_metadata(path: Path, meta: dict) -> None:
    """Add our metadata to the package's extra/ folder (where torch's PT2 reader expects extra files)."""
    with zipfile.ZipFile(path) as z:
        prefix = next(n for n in z.namelist() if n.endswith("archive_format")).rsplit("archive_format", 1)[0]
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(f"{prefix}extra/{METADATA_NAME}", json.dumps(meta, indent=1))


def export_compiled(
    model_path: str | Path,
    output: str | Path | None = None,
    settings: CompiledExportSettings | None = None,
    device: str | Device = "cpu",
    force: bool = False,
    check: bool = True,
    parity_images: list[Path] | None = None,
    status=None,
) -> ExportResult:
    """Compile a `.pt` ahead of time into a `.pt2` package, then check it against the PyTorch model.

    The batch axis is dynamic (1..max_batch); height and width are fixed at imgsz. Written under a
    temporary name and moved into place only after the parity check: a failure leaves nothing.
    """
    t_start = time.perf_counter()
    s = settings or CompiledExportSettings()
    dev = parse_device(device)
    s.validate(dev)
    say = status or (lambda _t: None)
    src = check_model_path(model_path, (".pt",))
    target = check_target(Path(output).expanduser() if output else default_output(src, s, dev), ".pt2", force)
    if check:
        from ..assets import sample_images

        images = parity_images or sample_images()
    torch = require("torch")
    check_torch_cuda(dev)
    inductor_cache()
    module, info, imgsz = load_for_export(src, s.imgsz, say)
    s.imgsz = imgsz[0] if imgsz[0] == imgsz[1] else None
    with partial_file(target, f"AOTInductor export of {src.name}") as tmp:
        # dynamic=True computes the heads' grids in the graph from the (static) feature sizes: no
        # cached-grid check that would pin the batch size; inductor folds them into constants
        m = prepare_for_export(module, info.family, dynamic=True).to(str(dev))
        x = torch.zeros(min(2, s.max_batch), 3, *imgsz, device=str(dev))
        if s.half:
            m, x = m.half(), x.half()
        say(f"tracing {src.name} with torch.export at {imgsz[0]}x{imgsz[1]}, batch 1..{s.max_batch}")
        dims = None
        if s.max_batch > 1:
            dims = ({0: torch.export.Dim("batch", min=1, max=s.max_batch)},)
        with quiet(), torch.no_grad():
            ep = torch.export.export(m, (x,), dynamic_shapes=dims, strict=False)
        cxx = package_compiler()
        if cxx.note:
            say(cxx.note)
        say(f"compiling with AOTInductor for {gpu_name(dev)} (a minute or more)")
        t0 = time.perf_counter()
        with quiet(), torch._inductor.config.patch({"cpp.cxx": (None, cxx.cxx)}):
            torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp))
        compile_s = time.perf_counter() - t0
        _write_metadata(tmp, _metadata(info, s, imgsz, dev, compile_s))
        result = ExportResult(None, target, info, s, 0.0, tmp.stat().st_size)
        result.notes.append(f"AOTInductor compile: {compile_s:.1f} s")
        if cxx.note:
            result.notes.append(cxx.note)

        def parity():
            from ..backends.pytorch import CompiledBackend

            say("checking parity with the PyTorch model")
            check_loads_in_child(tmp, dev.index if dev.is_cuda else -1, shown=target.name)
            return check_parity(module, info, dev, imgsz, CompiledBackend(tmp, dev, half=s.half), images)

        return keep_if_parity(result, tmp, t_start, parity if check else None, force=force)


def cached_compiled(model_path: str | Path, imgsz: int | None, half: bool, device: str | Device) -> Path:
    """The `.pt2` package of `model_path` for these settings, compiled once and reused after.

    Keyed on the checkpoint's SHA-256, the settings, the torch and yolo-accel versions, the GPU and the
    C++ compiler.
    """
    torch = require("torch")
    dev = parse_device(device)
    src = check_model_path(model_path, (".pt",))
    s = CompiledExportSettings(imgsz=imgsz, half=half)
    check_torch_cuda(dev)
    cxx = package_compiler().cxx  # a package built by another compiler may crash the loader (export/cxx.py)
    return cached_export(
        src,
        "compiled",
        ".pt2",
        [asdict(s), __version__, torch.__version__, dev.kind, gpu_name(dev), cxx],
        lambda path: export_compiled(src, path, s, device=dev, force=True, check=True),
        "compiled package",
        "yolo-accel export --format compiled",
        tag=f"{dev.kind}-",
    )
