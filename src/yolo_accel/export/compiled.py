"""`.pt` -> AOTInductor package (`.pt2`): torch.export, then inductor compiles it ahead of time.

The package runs with torch alone (no ultralytics, no yolov5 code): the graph, the weights and the
compiled kernels are inside, with our metadata under `extra/`. It is compiled for one device
type (and, on CUDA, one GPU architecture) and one torch version; the loader checks both and says
so in one line instead of failing deep inside torch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import __version__
from .._deps import quiet, require
from ..device import Device, check_torch_cuda, parse_device
from ..errors import ExportError, ModelError, SettingsError
from ..model import ModelInfo, check_model_path, file_sha256, info_from_metadata
from .common import (
    PARITY_THRESHOLD,
    ExportResult,
    check_parity,
    check_target,
    keep_if_parity,
    load_for_export,
    partial_file,
    prepare_for_export,
)
from .cxx import package_compiler

METADATA_NAME = "yolo_accel.json"  # stored as <archive>/extra/yolo_accel.json


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


def _gpu_name(dev: Device) -> str:
    import torch

    return torch.cuda.get_device_name(dev.index) if dev.is_cuda else "cpu"


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
        "gpu": _gpu_name(dev),
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


def read_compiled_metadata(path: str | Path) -> dict:
    """Our metadata from a `.pt2` package, or ModelError when it is not one of ours."""
    p = check_model_path(path, (".pt2",))
    try:
        with zipfile.ZipFile(p) as z:
            name = next((n for n in z.namelist() if n.endswith(f"extra/{METADATA_NAME}")), None)
            if name is None:
                raise ModelError(f"{p}: a .pt2 package without yolo-accel metadata; export it with yolo-accel")
            return json.loads(z.read(name))
    except zipfile.BadZipFile as e:
        raise ModelError(f"{p}: not a .pt2 package (not a zip archive)") from e


# what the child process runs: torch alone, the same loader call as load_compiled
CHILD_LOAD = "import sys, torch; torch._inductor.aoti_load_package(sys.argv[1], device_index=int(sys.argv[2]))"


def check_loads_in_child(path: Path, device_index: int, timeout_s: float = 600.0, shown: str | None = None) -> None:
    """Load the package once in a child process before this process does; ModelError if the child fails.

    Why: on the project's H100 torch's AOTInductor loader killed whole processes with SIGSEGV
    inside the package (the std::regex of torch's `parse_device_str`, run while the model is
    constructed): the package had been built by a compiler that links libstdc++ statically
    (export/cxx.py now avoids that, but a `.pt2` from elsewhere may still be one). A crash cannot
    be caught in Python: a child takes the risk, and a bench or a video run gets one error line
    instead of dying. The verdict is cached per package content, torch, interpreter and
    device, so the check costs one child start per package and environment. `shown`: the name to put in
    messages (an export checks its temporary file under the final name).
    """
    from ..assets import cache_dir

    torch = require("torch")
    key_parts = [file_sha256(path), torch.__version__, sys.executable, device_index]
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:16]
    marker = cache_dir() / "compiled" / "load-checks" / f"{key}.ok"
    if marker.is_file():
        return
    name = shown or path.name
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD_LOAD, str(path), str(device_index)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as e:
        raise ModelError(f"{name}: loading it in a test process took over {timeout_s:.0f} s") from e
    if child.returncode < 0:
        try:
            why = signal.Signals(-child.returncode).name
        except ValueError:
            why = f"signal {-child.returncode}"
        raise ModelError(
            f"{name}: torch's AOTInductor loader crashed ({why}) loading it in a test process, so this "
            "process does not load it; packages built by a C++ compiler that links libstdc++ statically do "
            "this: export it again here (`yolo-accel doctor` names the compiler) or run the .pt with --cuda-graph"
        )
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise ModelError(f"{name}: torch {torch.__version__} cannot load it: {last}")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"package": str(path), "torch": torch.__version__, "python": sys.executable}))


def load_compiled(path: str | Path, device: Device):
    """(callable, ModelInfo) for a `.pt2` package; the device and torch version must be the package's."""
    torch = require("torch")
    p = check_model_path(path, (".pt2",))
    meta = read_compiled_metadata(p)
    if meta["device_type"] != device.kind:
        raise SettingsError(
            f"{p.name} was compiled for {meta['device_type']}; run it with --device {meta['device_type']} "
            f"or export again with --device {device}"
        )
    built, running = meta["torch_version"].split("+")[0], torch.__version__.split("+")[0]
    if built.split(".")[:2] != running.split(".")[:2]:
        raise ModelError(
            f"{p.name} was compiled with torch {built}; this is torch {running}: export it again here "
            "(compiled packages are tied to the torch version)"
        )
    if device.is_cuda and meta.get("gpu") != _gpu_name(device):
        import warnings

        warnings.warn(
            f"{p.name} was compiled on {meta.get('gpu')}, this is {_gpu_name(device)}: export again if it fails",
            stacklevel=2,
        )
    index = device.index if device.is_cuda else -1
    check_loads_in_child(p, index)
    with quiet():
        fn = torch._inductor.aoti_load_package(str(p), device_index=index)
    return fn, info_from_metadata(p, "pt2", {**meta, "batch": None}, half=bool(meta.get("half")))


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
    from ..backends.pytorch import inductor_cache

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
        say(f"compiling with AOTInductor for {_gpu_name(dev)} (a minute or more)")
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

        return keep_if_parity(result, tmp, t_start, parity if check else None)


def cached_compiled(model_path: str | Path, imgsz: int | None, half: bool, device: str | Device) -> Path:
    """The `.pt2` package of `model_path` for these settings, compiled once and reused after.

    Keyed on the checkpoint's SHA-256, the settings, the torch and yolo-accel versions, the GPU and the
    C++ compiler.
    """
    from ..assets import cache_dir

    torch = require("torch")
    dev = parse_device(device)
    src = check_model_path(model_path, (".pt",))
    s = CompiledExportSettings(imgsz=imgsz, half=half)
    sha = file_sha256(src)
    check_torch_cuda(dev)
    cxx = package_compiler().cxx  # a package built by another compiler may crash the loader (export/cxx.py)
    key_parts = [sha, asdict(s), __version__, torch.__version__, dev.kind, _gpu_name(dev), cxx]
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "compiled" / f"{src.stem}-{sha[:8]}-{dev.kind}-{key}.pt2"
    if path.is_file():
        return path
    result = export_compiled(src, path, s, device=dev, force=True, check=True)
    if not result.ok:
        raise ExportError(
            f"the compiled package of {src.name} failed its parity check ({result.parity.match_rate:.1%} of "
            f"detections matched, {PARITY_THRESHOLD:.0%} needed); run `yolo-accel export --format compiled`"
        )
    return path
