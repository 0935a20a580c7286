"""`yolo-accel optimize`: validate and time every candidate this machine can run, keep the ones that
pass the gates, rank them, and say which one to deploy.

Each candidate is validated in a `validate` run of its own (the reference re-run beside it, so the
speed gate compares two timings taken together and a candidate that crashes or runs out of memory
becomes one failed row instead of the end of the search). Candidates run cheapest first; one
whose estimated cost no longer fits in the time budget is skipped with that reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import SettingsError, message
from .candidates import EXPORT_COST_S, REFERENCE, Candidate

TARGETS = ("latency", "throughput")


@dataclass
class OptimizeSettings:
    """Options of `yolo-accel optimize`."""

    device: str = "cpu"
    target: str = "latency"  # latency: batch 1 unless --batch; throughput: images/s at --batch (8)
    batch: int | None = None
    gates: str = "onnx"
    time_budget_min: float = 30.0
    imgsz: int | None = None
    conf: float = 0.25  # the deployment thresholds written to deploy.yaml (and the similarity's)
    iou: float = 0.45
    candidates: list[str] | None = None  # only these (the reference always runs)
    calib_data: str | None = None  # INT8 calibration images (default: the validation images)
    calib_images: int = 300
    iters: int = 50  # timed runs per candidate (model-only and end-to-end each)
    val_batch: int = 8  # images per batch in the accuracy pass
    extra: list[Candidate] = field(default_factory=list)  # the user's own artifacts

    @property
    def speed_batch(self) -> int:
        return self.batch or (8 if self.target == "throughput" else 1)

    def check(self) -> None:
        if self.target not in TARGETS:
            raise SettingsError(f"--target is latency or throughput (got {self.target!r})")
        if self.batch is not None and self.batch < 1:
            raise SettingsError(f"--batch must be at least 1 (got {self.batch})")
        if self.time_budget_min <= 0:
            raise SettingsError(f"--time-budget must be positive minutes (got {self.time_budget_min})")
        if self.iters < 3:
            raise SettingsError(f"--iters must be at least 3 (got {self.iters})")
        if self.calib_images < 1:
            raise SettingsError("--calib-images must be at least 1")


def prepare_artifact(c: Candidate, src: Path, data: str, s: OptimizeSettings) -> str | None:
    """The file candidate `c` runs, exported into the cache once (None: the `.pt` itself); the export
    checks parity on the dataset's first images (no sample images needed)."""
    from ..assets import parity_images_from
    from ..evaluate.datasets import load_dataset

    if c.artifact or c.export not in ("onnx", "openvino", "openvino-int8", "aoti", "tensorrt"):
        return c.artifact
    with parity_images_from([it.path for it in load_dataset(data).items[:2]]):
        return _export(c, src, data, s)


def _export(c: Candidate, src: Path, data: str, s: OptimizeSettings) -> str | None:
    from ..backends.variants import parse_variant

    v = parse_variant(c.variant)
    if c.export == "onnx":
        from ..export.onnx import cached_onnx

        return str(cached_onnx(src, imgsz=s.imgsz, half=v.half, device=s.device))
    if c.export in ("openvino", "openvino-int8"):
        from ..export.openvino import cached_openvino

        return str(
            cached_openvino(
                src,
                s.imgsz,
                int8=c.int8,
                calib_data=s.calib_data or data,
                calib_images=s.calib_images,
                dynamic=s.speed_batch > 1,  # a fixed 1x3xHxW IR is faster at batch 1
            )
        )
    if c.export == "aoti":
        from ..export.compiled import cached_compiled

        return str(cached_compiled(src, s.imgsz, v.half, s.device))
    if c.export == "tensorrt":
        from ..export.tensorrt import cached_engine

        return str(cached_engine(src, s.imgsz, half=True, device=s.device))
    raise AssertionError(c.export)


def _validate(src: Path, data: str, c: Candidate, artifact: str | None, s: OptimizeSettings, progress) -> dict:
    from ..validate import ValidateSettings, run_validation

    vs = ValidateSettings(
        backends=(c.variant,),
        device=s.device,
        imgsz=s.imgsz,
        batch=s.val_batch,
        rect=False,  # one letterbox for every candidate (fixed-size artifacts need it): mAPs compare across rows
        gates=s.gates,
        sim_conf=s.conf,
        sim_iou=s.iou,
        speed_batch=s.speed_batch,
        speed_iters=s.iters,
        artifacts={c.backend: artifact} if artifact else {},
    )
    return run_validation(src, data, vs, progress=progress)


def _row(c: Candidate) -> dict:
    return {"name": c.name, "variant": c.variant, "about": c.about, "int8": c.int8, "status": "waiting"}


def _fill(row: dict, entry: dict, batch: int) -> None:
    """A validation entry's figures into a candidate row."""
    sp = entry["speed"]
    row.update(
        {
            "artifact": entry["artifact"],
            "artifact_bytes": entry["artifact_bytes"],
            "runtime": entry["runtime"],
            "map50_95": entry["accuracy"]["map50_95"],
            "map50": entry["accuracy"]["map50"],
            "model_ms": sp["model_ms"]["median"],
            "model_ms_p95": sp["model_ms"]["p95"],
            "e2e_ms": sp["e2e_ms"]["median"],
            "throughput_ips": batch / (sp["model_ms"]["median"] / 1000),
            "speedup": sp["speedup"],
        }
    )
    if "similarity" in entry:
        row["similarity"] = entry["similarity"]["match_rate"]
        row["map_loss_pct"] = entry["map_loss_pct"]
        row["map_drop_points"] = entry["map_drop_points"]
        row["gates"] = entry["gates"]
        row["failed_gates"] = [g["criterion"] for g in entry["gates"] if not g["passed"]]
        row["advice"] = [f"{g['criterion']}: {g['advice']}" for g in entry["gates"] if g["advice"]]


def rank(rows: list[dict], target: str) -> list[dict]:
    """The rows that passed every gate, best first: lowest model latency (latency target) or most
    images a second at the batch (throughput target)."""
    passed = [r for r in rows if r["status"] == "pass"]
    if target == "throughput":
        return sorted(passed, key=lambda r: -r["throughput_ips"])
    return sorted(passed, key=lambda r: r["model_ms"])


def run_optimize(
    model: str | Path,
    data: str | Path,
    candidates: list[Candidate],
    s: OptimizeSettings,
    update: Callable[[list[dict]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Try every candidate; returns the optimize report (a plain dict; "chosen" names the winner or is
    None). `update(rows)` is called whenever a row changes (the live table)."""
    from ..environment import describe_environment
    from ..evaluate.gates import load_gates
    from ..model import check_model_path, file_sha256

    s.check()
    src = check_model_path(model, (".pt",))
    gates = load_gates(s.gates)
    data = str(data)
    t_start = clock()
    budget = s.time_budget_min * 60.0
    ordered = [c for c in candidates if c.name == REFERENCE.name]
    runnable = [c for c in candidates if c.name != REFERENCE.name and c.skip is None]
    # cheapest first, so a tight budget still sees the cheap wins
    runnable.sort(key=lambda c: EXPORT_COST_S.get(c.export, 0))
    ordered += runnable + [c for c in candidates if c.name != REFERENCE.name and c.skip is not None]
    rows = [_row(c) for c in ordered]
    for row, c in zip(rows, ordered):
        if c.skip:
            row.update(status="skipped", reason=c.skip)

    def show():
        if update:
            update(rows)

    ref_report: dict | None = None
    ref_seconds = 0.0
    for row, c in zip(rows, ordered):
        if c.skip:
            continue
        if ref_report is not None:
            left = budget - (clock() - t_start)
            need = EXPORT_COST_S.get(c.export, 0) + 2 * ref_seconds  # its export, then it and the reference
            if need > left:
                row.update(status="skipped", reason=f"time budget: needs about {need:.0f} s, {max(left, 0):.0f} s left")
                show()
                continue
        try:
            row["status"] = "exporting"
            show()
            t0 = clock()
            artifact = prepare_artifact(c, src, data, s)
            row["export_s"] = round(clock() - t0, 2)
            row["status"] = "validating"
            show()

            def progress(n, row=row):
                row["done"] = row.get("done", 0) + n
                show()

            t1 = clock()
            report = _validate(src, data, c, artifact, s, progress)
            row["validate_s"] = round(clock() - t1, 2)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # a crash, an OOM, a failed export: a row, and the search goes on
            if isinstance(e, SystemExit):
                raise
            row.update(status="error", reason=message(e))
            if c.name == REFERENCE.name:
                raise
            show()
            continue
        entry = report["backends"][c.variant if c.name != REFERENCE.name else "torch"]
        _fill(row, entry, s.speed_batch)
        if c.name == REFERENCE.name:
            ref_report, ref_seconds = report, row["validate_s"]
            row["status"] = "reference"
        else:
            row["status"] = "pass" if entry["passed"] else "fail"
            if not entry["passed"]:
                row["reason"] = "failed " + ", ".join(row["failed_gates"])
        show()
    best = rank(rows, s.target)
    chosen = best[0]["name"] if best else None
    for i, r in enumerate(best):
        r["rank"] = i + 1
    if chosen:
        next(r for r in rows if r["name"] == chosen)["status"] = "chosen"
    show()
    assert ref_report is not None
    return {
        "kind": "optimize",
        "model": {"path": str(src), "name": src.name, "sha256": file_sha256(src), **ref_report["model"]},
        "data": {**ref_report["data"], "source": data},
        "settings": {
            **{k: v for k, v in asdict(s).items() if k != "extra"},
            "speed_batch": s.speed_batch,
            "imgsz": ref_report["settings"]["imgsz"],
        },
        "names": {str(k): v for k, v in _names(src).items()},
        "gates": asdict(gates),
        "target": s.target,
        "metric": "model-only median latency at batch "
        + f"{s.speed_batch}"
        + (" (lowest wins)" if s.target == "latency" else ", as images per second (most wins)"),
        "candidates": rows,
        "chosen": chosen,
        "elapsed_s": round(clock() - t_start, 1),
        "environment": describe_environment(s.device),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _names(src: Path) -> dict[int, str]:
    from ..model import load_pytorch

    return load_pytorch(src)[1].names
