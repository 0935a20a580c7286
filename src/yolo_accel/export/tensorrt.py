"""`.pt` -> TensorRT engine, from the (cached) ONNX export, with the TensorRT 10 Python API or `trtexec`.

Written against TensorRT 10 and NOT exercised by this project's CI or GPU machine (TensorRT cannot
be installed there): what the tests check is everything around the build (the trtexec command
line, the calibration batches, the engine's name, the error paths).

Engines are tied to the TensorRT version and the GPU, so the file name records both, and the
model metadata sits beside the engine in `<engine>.json`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._deps import available, require
from .._version import __version__
from ..device import Device, check_torch_cuda, parse_device
from ..errors import ExportError, MissingDependencyError, SettingsError
from ..model import ModelInfo, check_model_path
from .common import ExportResult, check_parity, check_target, keep_if_parity, load_for_export, partial_file

INPUT = "images"  # the input name of our ONNX exports
BUILDERS = ("auto", "python", "trtexec")


@dataclass
class EngineExportSettings:
    """Everything that changes the engine (and so keys the cache and the file name)."""

    imgsz: int | None = None
    half: bool = True  # FP16 kernels allowed (the usual choice; FP32 layers stay where TensorRT prefers)
    int8: bool = False  # INT8 with an entropy calibrator fed from calib_data
    calib_data: str | None = None  # data.yaml / image folder for INT8 calibration
    calib_images: int = 512
    calib_batch: int = 8
    dynamic: bool = False  # an optimisation profile over the batch axis
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    batch: int = 1  # the fixed batch when not dynamic
    workspace_gb: float = 4.0
    builder: str = "auto"  # python (TensorRT's Python API), trtexec, or auto: python if importable

    def validate(self) -> None:
        if self.builder not in BUILDERS:
            raise SettingsError(f"--builder must be one of {', '.join(BUILDERS)} (got {self.builder!r})")
        if self.int8 and not self.calib_data:
            raise SettingsError("--int8 needs --calib-data (a data.yaml or a folder of representative images)")
        if self.dynamic and not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise SettingsError(
                f"need 1 <= --min-batch <= --opt-batch <= --max-batch (got {self.min_batch}, "
                f"{self.opt_batch}, {self.max_batch})"
            )
        if self.batch < 1 or self.workspace_gb <= 0 or self.calib_images < 1 or self.calib_batch < 1:
            raise SettingsError("--batch, --workspace, --calib-images and --calib-batch must be positive")

    def shapes(self, imgsz: tuple[int, int]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes of the optimisation profile."""
        h, w = imgsz
        if not self.dynamic:
            return ((self.batch, 3, h, w),) * 3
        return tuple((b, 3, h, w) for b in (self.min_batch, self.opt_batch, self.max_batch))

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else ("fp16" if self.half else "fp32")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def gpu_identity(dev: Device) -> tuple[str, str]:
    """(GPU name, compute capability 'smXY') of a CUDA device, as the engine name records them."""
    import torch

    major, minor = torch.cuda.get_device_capability(dev.index)
    return torch.cuda.get_device_name(dev.index), f"sm{major}{minor}"


def engine_name(stem: str, s: EngineExportSettings, trt_version: str, gpu: str, sm: str) -> str:
    """A file name that says what the engine is for: model, precision, batch range, TensorRT, GPU.

    >>> engine_name("yolov5n", EngineExportSettings(dynamic=True), "10.3.0", "NVIDIA H100 80GB HBM3", "sm90")
    'yolov5n-fp16-b1-32-trt10.3.0-NVIDIA-H100-80GB-HBM3-sm90.engine'
    """
    batches = f"b{s.min_batch}-{s.max_batch}" if s.dynamic else f"b{s.batch}"
    return f"{stem}-{s.precision}-{batches}-trt{_safe(trt_version)}-{_safe(gpu)}-{sm}.engine"


def trtexec_command(
    onnx_path: Path, engine_path: Path, s: EngineExportSettings, imgsz: tuple[int, int], timing_cache: Path
) -> list[str]:
    """The trtexec command line that builds the same engine as the Python builder (INT8 aside)."""
    cmd = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        f"--memPoolSize=workspace:{int(s.workspace_gb * 1024)}M",
        f"--timingCacheFile={timing_cache}",
        "--skipInference",
    ]
    if s.half:
        cmd.append("--fp16")
    lo, opt, hi = ("x".join(map(str, shape)) for shape in s.shapes(imgsz))
    cmd += [f"--minShapes={INPUT}:{lo}", f"--optShapes={INPUT}:{opt}", f"--maxShapes={INPUT}:{hi}"]
    return cmd


def calibration_batches(data: str | Path, n_images: int, batch: int, imgsz: tuple[int, int], stride: int = 32):
    """Letterboxed NCHW float32 batches of the dataset's images, prepared exactly as inference prepares them.

    The square `imgsz` input (no rect), the same `ops.preprocess` as the Detector; the last batch
    is dropped when short, since an INT8 calibration profile has one batch size.
    """
    from ..evaluate.datasets import load_dataset
    from ..images import read_image
    from ..ops import preprocess

    items = load_dataset(data).items[:n_images]
    if len(items) < batch:
        raise SettingsError(f"--calib-data {data}: {len(items)} images, fewer than one batch of {batch}")

    def gen() -> Iterator[np.ndarray]:
        for i in range(0, len(items) - batch + 1, batch):
            images = [read_image(it.path) for it in items[i : i + batch]]
            yield preprocess(images, imgsz, stride, rect=False, dtype=np.float32)[0]

    return gen()


def make_calibrator(trt, batches: Iterator[np.ndarray], batch: int, cache: Path):
    """An IInt8EntropyCalibrator2 over `batches`, with a calibration cache file (built only with TensorRT)."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self._batches, self._device_batch = batches, None

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names):
            try:
                x = next(self._batches)
            except StopIteration:
                return None
            self._device_batch = torch.from_numpy(x).cuda()  # kept alive until the next call
            return [int(self._device_batch.data_ptr())]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()


def _build_python(onnx_path: Path, out: Path, s: EngineExportSettings, imgsz, timing_cache: Path, calib) -> None:
    """TensorRT 10 Python API: builder, ONNX parser, profile, FP16/INT8 flags, timing cache."""
    trt = require("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(s.workspace_gb * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT, *s.shapes(imgsz))
    config.add_optimization_profile(profile)
    if s.half:
        config.set_flag(trt.BuilderFlag.FP16)
    if s.int8:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calib
        config.set_calibration_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT log above)")
    out.write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))


def _build_trtexec(onnx_path: Path, out: Path, s: EngineExportSettings, imgsz, timing_cache: Path) -> None:
    cmd = trtexec_command(onnx_path, out, s, imgsz, timing_cache)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise ExportError(f"cannot run trtexec: {e}") from e
    if proc.returncode != 0 or not out.is_file():
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise ExportError(f"trtexec failed (exit {proc.returncode}): {tail}")


def choose_builder(requested: str, int8: bool) -> str:
    """python or trtexec, or MissingDependencyError (exit 2) naming what to install."""
    has_python, has_trtexec = available("tensorrt"), shutil.which("trtexec") is not None
    if requested == "python" or (requested == "auto" and has_python):
        if not has_python:
            raise MissingDependencyError("TensorRT (Python module `tensorrt`)", package="tensorrt")
        return "python"
    if int8:
        raise MissingDependencyError(
            "TensorRT's Python module (INT8 calibration runs our calibrator through it)", package="tensorrt"
        )
    if not has_trtexec:
        raise MissingDependencyError(
            "TensorRT (neither the Python module `tensorrt` nor `trtexec` on PATH)", package="tensorrt"
        )
    return "trtexec"


def _metadata(info: ModelInfo, s: EngineExportSettings, imgsz, trt_version: str, gpu: str, sm: str, secs: float):
    return {
        "names": {str(k): v for k, v in info.names.items()},
        "stride": info.stride,
        "imgsz": list(imgsz),
        "layout": info.layout,
        "family": info.family,
        "precision": s.precision,
        "batch": None if s.dynamic else s.batch,
        "batch_range": [s.min_batch, s.max_batch] if s.dynamic else [s.batch, s.batch],
        "tensorrt_version": trt_version,
        "gpu": gpu,
        "compute_capability": sm,
        "source": info.path.name,
        "source_sha256": info.sha256,
        "exporter": f"yolo-accel {__version__}",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(secs, 1),
        "export_settings": asdict(s),
    }


def _trt_version(builder: str) -> str:
    if builder == "python":
        return require("tensorrt").__version__
    proc = subprocess.run(["trtexec", "--help"], capture_output=True, text=True)
    m = re.search(r"TensorRT[^\d]*v?(\d+)(\d\d)(\d\d)", proc.stdout + proc.stderr)  # [TensorRT v100300]
    return f"{int(m.group(1))}.{int(m.group(2))}.{int(m.group(3))}" if m else "unknown"


def export_engine(
    model_path: str | Path,
    output: str | Path | None = None,
    settings: EngineExportSettings | None = None,
    device: str | Device = "cuda",
    force: bool = False,
    check: bool = True,
    status=None,
    parity_images: list[Path] | None = None,
) -> ExportResult:
    """Build a TensorRT engine from the cached ONNX export of a `.pt`; metadata goes to `<engine>.json`.

    With the Python builder the engine is then checked against the PyTorch model like every export.
    """
    t_start = time.perf_counter()
    s = settings or EngineExportSettings()
    s.validate()
    dev = parse_device(device)
    if not dev.is_cuda:
        raise SettingsError("TensorRT engines are built on a CUDA GPU: use --device cuda")
    src = check_model_path(model_path, (".pt",))
    builder = choose_builder(s.builder, s.int8)
    check_torch_cuda(dev)
    say = status or (lambda _t: None)
    from ..assets import cache_dir
    from .onnx import cached_onnx

    trt_version = _trt_version(builder)
    gpu, sm = gpu_identity(dev)
    name = engine_name(src.stem, s, trt_version, gpu, sm)
    # the output is checked before the model is loaded (the name needs only TensorRT and the GPU)
    target = check_target(Path(output).expanduser() if output else src.with_name(name), ".engine", force)
    module, info, imgsz = load_for_export(src, s.imgsz, say)
    say(f"exporting {src.name} to ONNX (cached)")
    onnx_path = cached_onnx(src, imgsz=imgsz[0], half=False, device=dev)
    timing_cache = cache_dir() / "tensorrt" / f"timing-trt{_safe(trt_version)}-{sm}.cache"
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    meta_path = target.with_name(target.name + ".json")
    with partial_file(target, f"TensorRT export of {src.name}") as tmp:
        say(f"building the {s.precision.upper()} engine with {builder} (minutes)")
        t0 = time.perf_counter()
        if builder == "python":
            calib = None
            if s.int8:
                trt = require("tensorrt")
                batches = calibration_batches(s.calib_data, s.calib_images, s.calib_batch, imgsz, info.stride)
                calib = make_calibrator(trt, batches, s.calib_batch, timing_cache.with_name(f"{src.stem}-calib.cache"))
            _build_python(onnx_path, tmp, s, imgsz, timing_cache, calib)
        else:
            _build_trtexec(onnx_path, tmp, s, imgsz, timing_cache)
        secs = time.perf_counter() - t0
        meta = _metadata(info, s, imgsz, trt_version, gpu, sm, secs)
        result = ExportResult(None, target, info, s, 0.0, tmp.stat().st_size, notes=[f"{builder} build: {secs:.0f} s"])

        def parity():
            from ..assets import sample_images
            from ..backends.tensorrt import TensorRTBackend

            say("checking parity with the PyTorch model")
            engine = TensorRTBackend(tmp, dev, metadata=meta)
            return check_parity(module, info, dev, imgsz, engine, parity_images or sample_images())

        if check and not available("tensorrt"):
            result.notes.append("parity not checked: running an engine needs TensorRT's Python module")
        run_parity = parity if check and available("tensorrt") else None
        return keep_if_parity(
            result,
            tmp,
            t_start,
            run_parity,
            before_keep=lambda: meta_path.write_text(json.dumps(meta, indent=1)),
            force=force,
        )


def cached_engine(model_path: str | Path, imgsz: int | None, half: bool, device: str | Device) -> Path:
    """The engine of `model_path` for these settings, built once into the cache and reused after."""
    from ..assets import cache_dir
    from ..model import file_sha256

    dev = parse_device(device)
    src = check_model_path(model_path, (".pt",))
    s = EngineExportSettings(imgsz=imgsz, half=half, dynamic=True, min_batch=1, opt_batch=8, max_batch=64)
    builder = choose_builder(s.builder, s.int8)
    check_torch_cuda(dev)
    gpu, sm = gpu_identity(dev)
    folder = cache_dir() / "engines" / file_sha256(src)[:12]
    path = folder / engine_name(src.stem, s, _trt_version(builder), gpu, sm)
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    result = export_engine(src, path, s, device=dev, force=True, check=True)
    if not result.ok:
        raise ExportError(f"the TensorRT engine of {src.name} failed its parity check; run yolo-accel export")
    return path
