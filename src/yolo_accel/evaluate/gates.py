"""Acceptance gates: built-in profiles from the project's requirements, or a YAML file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import DataError, SettingsError


@dataclass(frozen=True)
class Gates:
    """Thresholds a backend must meet against the PyTorch FP32 reference."""

    name: str
    min_speedup: float  # model-only median latency, reference / backend
    min_similarity: float  # share of reference detections matched (0..1)
    max_map_loss_pct: float  # drop in mAP50-95 relative to the reference, in percent (strictly below)


PROFILES = {
    "onnx": Gates("onnx", min_speedup=1.5, min_similarity=0.98, max_map_loss_pct=1.0),
    "tensorrt": Gates("tensorrt", min_speedup=2.5, min_similarity=0.95, max_map_loss_pct=2.0),
}


def load_gates(spec: str | Path) -> Gates:
    """A profile name (onnx, tensorrt) or a YAML file; the file may start from a profile with `base:`.

    min_similarity may be written as a fraction (0.98) or a percentage (98).
    """
    key = str(spec).strip().lower()
    if key in PROFILES:
        return PROFILES[key]
    path = Path(spec)
    if not path.is_file():
        raise SettingsError(f"unknown gates {spec!r}: use {', '.join(PROFILES)} or a YAML file")
    from ..yamlfile import read_yaml

    cfg = read_yaml(path) or {}
    if not isinstance(cfg, dict):
        raise DataError(f"{path}: expected a mapping of gate names to thresholds")
    allowed = {f.name for f in fields(Gates)} | {"base"}
    for k in cfg:
        if k not in allowed:
            raise DataError(f"{path}: unknown key {k!r}; allowed: {', '.join(sorted(allowed - {'name'}))}")
    base = PROFILES.get(str(cfg.pop("base", "onnx")).lower())
    if base is None:
        raise DataError(f"{path}: unknown base profile; use {', '.join(PROFILES)}")
    values = asdict(base)
    values["name"] = str(cfg.pop("name", path.stem))
    for k, v in cfg.items():
        try:
            values[k] = float(v)
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}: {k} must be a number (got {v!r})") from e
    if values["min_similarity"] > 1:
        values["min_similarity"] /= 100.0
    import math

    bounds = {  # a gate out of these passes or fails everything: a typo, refused before the run
        "min_speedup": (0.0, 1000.0, "a speedup from 0 to 1000"),
        "min_similarity": (0.0, 1.0, "a share from 0 to 1 (or a percentage up to 100)"),
        "max_map_loss_pct": (0.0, 100.0, "a percentage from 0 to 100"),
    }
    for k, (low, high, what) in bounds.items():
        v = values[k]
        if not (math.isfinite(v) and low <= v <= high):
            raise DataError(f"{path}: {k} must be {what} (got {cfg.get(k, v)!r})")
    return Gates(**values)


@dataclass
class GateResult:
    """One criterion for one backend."""

    criterion: str
    measured: float
    threshold: float
    passed: bool
    advice: str = ""


def apply_gates(
    g: Gates,
    speedup: float,
    similarity: float,
    map_loss_pct: float,
    *,
    device: str,
    half: bool,
    mean_iou: float,
    max_abs: float,
    on_device: bool = False,
    speed_metric: str = "model",
    int8: bool = False,
) -> list[GateResult]:
    """Check the three criteria and attach advice that fits the measured cause of each failure."""
    results = [
        GateResult("speedup", speedup, g.min_speedup, speedup >= g.min_speedup),
        GateResult("similarity", similarity, g.min_similarity, similarity >= g.min_similarity),
        GateResult("mAP loss %", map_loss_pct, g.max_map_loss_pct, map_loss_pct < g.max_map_loss_pct),
    ]
    sim_ok = results[1].passed
    for r in results:
        if r.passed:
            continue
        if r.criterion == "speedup":
            if device == "cpu":
                r.advice = (
                    "on the CPU the gain is bounded by the cores: try the CUDA provider (--device cuda) "
                    "and FP16, or a smaller --imgsz; check ONNX Runtime's intra-op threads"
                )
            elif not half:
                r.advice = "try FP16 (-fp16 or --half), CUDA graphs (-graph) or torch.compile (-compile)" + (
                    "" if on_device else ", and IO binding (-iobind) to keep inputs on the GPU"
                )
            elif not on_device:
                r.advice = (
                    "host copies may dominate: use IO binding (-iobind) to keep inputs and outputs on the GPU; "
                    "try CUDA graphs (-graph) or a larger --speed-batch"
                )
            else:
                r.advice = (
                    "the inputs already stay on the GPU: the network itself is not faster; try CUDA graphs "
                    "(-graph), torch.compile (-compile) or a larger --speed-batch"
                    + ("" if speed_metric == "e2e" else "; `yolo-accel bench` shows where the time goes")
                )
        elif r.criterion == "similarity":
            if int8:
                r.advice = (
                    f"INT8 quantization moves the outputs (max |Δ| {max_abs:.3g}): calibrate on more images like "
                    "the deployment's (--calib-data, --calib-images); judge it by the mAP loss, or use FP32"
                )
            elif half:
                r.advice = (
                    f"FP16 changes the raw output (max |Δ| {max_abs:.3g}): check for overflow, keep the "
                    "detection head in FP32, or compare against an FP32 export"
                )
            else:
                r.advice = (
                    f"FP32 outputs differ (max |Δ| {max_abs:.3g}, matched-box IoU {mean_iou:.3f}): "
                    "re-export with --no-simplify or another --opset, and check the export settings"
                )
        elif r.criterion == "mAP loss %":
            if sim_ok:
                r.advice = (
                    "detections match the reference but accuracy drops: check the letterbox / input size "
                    "and the class map (names) of the artifact"
                )
            else:
                r.advice = "follows from the low similarity: fix that first"
    return results
