"""`yolo-accel bench`: every backend variant x batch size, in one process, on the same inputs."""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, ExportError, ModelError, SettingsError, YoloAccelWarning, message
from ..speed import SpeedSettings, spread_note, time_detector
from .timing import PeakRSS, nvml_device_used, nvml_process_memory


@dataclass
class BenchSettings:
    """Options of `yolo-accel bench`."""

    backends: tuple[str, ...] = ("torch", "onnxruntime")
    device: str = "cpu"
    half: bool = False
    batches: tuple[int, ...] = (1,)
    imgsz: int | None = None
    iters: int = 100
    warmup: int = 10
    duration_s: float | None = 20.0  # cap per row; at least 3 timed iterations always
    e2e_iters: int = 100  # end-to-end calls per row, within half of duration_s
    threads: int = 0  # ONNX Runtime intra-op threads (0: all cores)
    ort_gpu_mem_limit_gb: float = 2.0  # the CUDA provider's arena cap; large batches need more
    frame: str | None = None  # image used as the decoded frame; default: the shared bus.jpg
    frame_size: tuple[int, int] | None = None  # (w, h) to resize that frame to, e.g. (1920, 1080)


def _is_oom(e: BaseException) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return any(k in text for k in ("out of memory", "outofmemory", "failed to allocate", "is smaller than requested"))


def run_bench(model: str | Path, s: BenchSettings, progress=None) -> dict:
    """Benchmark; returns the report as a plain dict (rows per variant and batch)."""
    from ..assets import parity_images_from
    from ..backends.ort import OrtOptions
    from ..backends.variants import parse_variants
    from ..detector import Detector
    from ..device import parse_device
    from ..environment import describe_environment
    from ..images import read_image
    from ..model import check_model_path

    src = check_model_path(model, (".pt", ".onnx", ".xml"))
    variants = parse_variants(s.backends, s.half)
    if any(b < 1 for b in s.batches):
        raise SettingsError(f"--batch sizes must be at least 1 (got {list(s.batches)})")
    dev = parse_device(s.device)
    if s.frame:
        frame = read_image(s.frame)
    else:
        from ..assets import sample_images

        frame = read_image(sample_images()[0])
    if s.frame_size:
        import cv2

        frame = cv2.resize(frame, tuple(s.frame_size), interpolation=cv2.INTER_LINEAR)
    rows, setup = [], {}
    # an export made on the way (a .pt on onnxruntime) checks parity on the frame given, not on sample images
    with parity_images_from([s.frame] if s.frame else []):
        for v in variants:
            device = v.device(str(dev))

            def open_detector(v=v, device=device):
                t0 = time.perf_counter()
                det = Detector(
                    src,
                    backend=v.backend,
                    device=device,
                    half=v.half,
                    imgsz=s.imgsz,
                    rect=False,
                    batch=max(s.batches),
                    ort_options=OrtOptions(
                        intra_op_threads=s.threads,
                        io_binding=v.io_binding,
                        cuda_graph=v.cuda_graph and v.backend == "onnxruntime",
                        gpu_mem_limit_gb=s.ort_gpu_mem_limit_gb,
                    ),
                    torch_options=v.torch_options(),
                )
                setup.setdefault(v.key, time.perf_counter() - t0)
                return det

            # ONNX Runtime's CUDA graph holds one input shape per session: a fresh session per batch size
            per_batch = v.cuda_graph and v.backend == "onnxruntime"
            det = None
            for b in s.batches:
                if det is None or per_batch:
                    if det is not None:
                        det.close()
                    try:
                        det = open_detector()
                    except (ModelError, ExportError, DataError) as e:
                        # an artifact that cannot be built or loaded here (compile or parity failed, the
                        # loader check refused it) gives error rows with the reason and the other backends
                        # are still measured; a wrong option or a missing extra stops the run at once
                        for batch in s.batches[s.batches.index(b) :]:
                            rows.append(_failed_row(v, device, batch, str(e)))
                            if progress:
                                progress()
                        det = None
                        break
                    fixed = det.backend.batch_size
                    bad = [b for b in s.batches if fixed is not None and b != fixed]
                    if bad:
                        raise SettingsError(
                            f"{det.info.path.name} has a fixed batch size of {fixed}; batch {bad[0]} cannot run "
                            f"on it: export with --dynamic (yolo-accel export MODEL.pt --dynamic)"
                        )
                rows.append(_row(det, v, device, b, frame, s, det.info.path))
                if progress:
                    progress()
            if det is not None:
                det.close()
    baseline = {r["batch"]: r for r in rows if r["backend"] == variants[0].key and r.get("ok")}
    for r in rows:
        base = baseline.get(r["batch"])
        if r.get("ok") and base:
            r["speedup"] = base["model_ms"]["median"] / r["model_ms"]["median"]
            r["e2e_speedup"] = base["e2e_ms"]["median"] / r["e2e_ms"]["median"]
    return {
        "kind": "bench",
        "model": {"path": str(src), "name": src.name},
        "settings": {**asdict(s), "batches": list(s.batches), "backends": [v.key for v in variants]},
        "baseline": variants[0].key,
        "setup_seconds": setup,
        "rows": rows,
        "timing": (
            "Model-only: GPU rows use CUDA events for torch and compiled; ONNX Runtime's run() blocks until "
            "its stream is done and is timed with perf_counter_ns; CPU rows perf_counter_ns; the input is "
            "already on the device where the backend takes device buffers. End-to-end: from a decoded uint8 "
            "frame in host memory to Detections in host memory (upload included; GPU pipeline where "
            "gpu_ops is true). Warm-up iterations, compilation and CUDA graph capture are excluded."
        ),
        "environment": describe_environment(str(dev)),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _failed_row(v, device: str, b: int, error: str) -> dict:
    return {"backend": v.key, "batch": b, "device": device, "ok": False, "error": error}


def _row(det, v, device: str, b: int, frame: np.ndarray, s: BenchSettings, artifact: Path) -> dict:
    on_cuda = device != "cpu"
    row = {
        "backend": v.key,
        "batch": b,
        "device": device,
        "runtime": det.describe(),
        "artifact_bytes": _artifact_bytes(artifact),
        "ok": False,
    }
    frames = [frame] * b
    try:
        det.backend.reset_peak_memory()
        with PeakRSS() as rss:
            speed = time_detector(det, frames, SpeedSettings(s.warmup, s.iters, s.duration_s, s.e2e_iters))
            gpu_proc = nvml_process_memory(int(device.split(":")[1]) if ":" in device else 0) if on_cuda else None
    except Exception as e:
        if _is_oom(e):
            row["error"] = f"out of memory at batch {b}"
            _free()
            return row
        # a failing row is recorded with its reason and the run goes on (as Ultralytics' benchmark does)
        row["error"] = message(e)
        return row
    m, e2e = speed.model, speed.e2e
    notes = [n for n in (spread_note(m, "model-only"), spread_note(e2e, "end-to-end")) if n]
    if notes:
        row["warnings"] = notes
        warnings.warn(f"{v.key} batch {b}: {'; '.join(notes)}", YoloAccelWarning, stacklevel=2)
    row.update(
        {
            "ok": True,
            "model_ms": m.to_dict(),
            "e2e_ms": e2e.to_dict(),
            "stages_ms": speed.stages,
            "throughput_ips": b / (m.median / 1000),
            "e2e_throughput_ips": b / (e2e.median / 1000),
            "peak_host_rss_bytes": rss.peak,
            "gpu_ops": bool(det.gpu_ops),
            "frame_size": [int(frame.shape[1]), int(frame.shape[0])],
            "one_off_s": {k: round(v, 3) for k, v in det.backend.setup_seconds.items()},
            "gpu_memory": det.backend.peak_device_memory()
            or ({"process": gpu_proc} if gpu_proc else ({"device_used": nvml_device_used()} if on_cuda else None)),
        }
    )
    return row


def _free() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _artifact_bytes(path) -> int:
    from ..model import artifact_bytes

    return artifact_bytes(path)
