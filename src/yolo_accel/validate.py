"""`yolo-accel validate`: accuracy, similarity to the PyTorch FP32 reference, speed, and gates.

Every backend sees the same letterboxed batch (made once per batch), so differences are the
backends'. Images are streamed one batch at a time; only small per-box records are kept.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .bench.timing import Stats
from .detector import Detector, YoloAccelWarning
from .errors import DataError, SettingsError
from .evaluate.datasets import load_dataset
from .evaluate.gates import apply_gates, load_gates
from .evaluate.map import CocoAccumulator
from .evaluate.similarity import RawDiff, match_detections, match_rate
from .images import read_image
from .ops import postprocess, preprocess
from .ops.letterbox import batch_shape

IOU_BINS = np.linspace(0.5, 1.0, 51)


@dataclass
class ValidateSettings:
    """Options of `yolo-accel validate` (Ultralytics' validation settings by default)."""

    backends: tuple[str, ...] = ("torch", "onnxruntime")
    device: str = "cpu"
    half: bool = False
    imgsz: int | None = None
    batch: int = 8
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    multi_label: bool = True  # one candidate per (box, class) above conf, as Ultralytics / YOLOv5 val
    rect: bool = True  # aspect-ratio batches with half a stride of padding (as val.py), where every backend can
    gates: str = "onnx"
    onnx: str | None = None  # use this ONNX file for the onnxruntime backend instead of the cached export
    sim_conf: float = 0.25  # similarity is measured at deployment settings
    sim_iou: float = 0.45
    match_iou: float = 0.5
    clip_labels: bool = False
    images_dir: str | None = None
    names_file: str | None = None


@dataclass
class _Run:
    key: str
    det: Detector
    half: bool
    model_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    n_ref: int = 0
    n_test: int = 0
    matched: int = 0
    ious: list[float] = field(default_factory=list)
    conf_diff: list[float] = field(default_factory=list)
    cosines: list[float] = field(default_factory=list)
    max_abs: float = 0.0
    per_image: list[tuple[str, int, int, int]] = field(default_factory=list)


def parse_backends(spec: str | tuple[str, ...], half: bool) -> list:
    """The torch FP32 reference first, then every listed variant (see backends.variants)."""
    from .backends.variants import Variant, parse_variants

    ref = Variant("torch", "torch")
    return [ref] + [v for v in parse_variants(spec, half) if v.key != "torch"]


def run_validation(model: str | Path, data: str | Path, s: ValidateSettings, progress=None) -> dict:
    """Validate every backend on DATA; returns the report as a plain dict (see report/)."""
    from .environment import describe_environment
    from .model import check_model_path, file_sha256

    src = check_model_path(model, (".pt",))
    if s.batch < 1:
        raise SettingsError(f"--batch must be at least 1 (got {s.batch})")
    gates = load_gates(s.gates)
    dataset = load_dataset(data, s.clip_labels, s.images_dir)
    plan = parse_backends(s.backends, s.half)
    runs: list[_Run] = []
    from .backends.ort import OrtOptions

    for v in plan:
        artifact = s.onnx if (v.backend == "onnxruntime" and s.onnx) else src
        det = Detector(
            artifact,
            backend=v.backend,
            device=v.device(s.device),
            half=v.half,
            imgsz=s.imgsz,
            conf=s.conf,
            iou=s.iou,
            max_det=s.max_det,
            rect=False,
            names_file=s.names_file,
            multi_label=s.multi_label,
            ort_options=OrtOptions(io_binding=v.io_binding, cuda_graph=v.cuda_graph and v.backend == "onnxruntime"),
            torch_options=v.torch_options(),
        )
        runs.append(_Run(v.key, det, v.half))
    ref = runs[0]
    imgsz, stride, names = ref.det.imgsz, ref.det.info.stride, ref.det.names
    for r in runs[1:]:
        fixed = r.det.backend.input_hw
        if fixed and tuple(fixed) != tuple(imgsz):
            raise SettingsError(
                f"{r.key} takes {fixed[0]}x{fixed[1]} input but the reference runs at "
                f"{imgsz[0]}x{imgsz[1]}; pass --imgsz {fixed[0]}"
            )
    if len(dataset.names) != len(names):
        warnings.warn(
            f"the dataset has {len(dataset.names)} class names and the model {len(names)}: check the class map",
            YoloAccelWarning,
            stacklevel=2,
        )

    # rectangular batches need every backend to take any size, and are avoided on ONNX Runtime CUDA,
    # where each new shape costs a cuDNN algorithm search
    rect = s.rect and all(r.det.backend.input_hw is None and not r.det.backend.prefers_fixed_shape for r in runs)
    if rect:  # as YOLOv5 / Ultralytics val: similar aspect ratios share a batch and its padded shape
        from PIL import Image

        def aspect(it):
            try:
                with Image.open(it.path) as im:
                    return im.size[1] / im.size[0]
            except Exception:  # unreadable: read_image reports it below
                return 1.0

        dataset.items.sort(key=aspect)
    acc = CocoAccumulator(dataset.names)
    skipped: list[dict] = []
    warmed = False
    for items in dataset.batches(s.batch):
        images, kept = [], []
        for it in items:
            try:
                images.append(read_image(it.path))
                kept.append(it)
            except DataError as e:  # a corrupt image is skipped and counted, not fatal
                skipped.append({"image": str(it.path), "reason": str(e)})
                warnings.warn(f"skipping {e}", YoloAccelWarning, stacklevel=2)
        if not images:
            if progress:
                progress(len(items))
            continue
        t0 = time.perf_counter_ns()
        shape = batch_shape([im.shape[:2] for im in images], imgsz[0], stride) if rect else None
        batch, infos = preprocess(images, imgsz, stride, rect=False, shape=shape)
        pre_ms = (time.perf_counter_ns() - t0) / 1e6
        for it, img in zip(kept, images):
            xyxy, cls = it.boxes(*img.shape[:2])
            acc.add_image(it.image_id, img.shape[0], img.shape[1], xyxy, cls, it.iscrowd)
        if not warmed:  # one untimed pass per backend: lazy initialisation stays out of the latencies
            for r in runs:
                r.det.forward(batch.astype(r.det.backend.input_dtype, copy=False))
            warmed = True
        raw_ref = None
        n = len(images)
        for r in runs:
            x = batch.astype(r.det.backend.input_dtype, copy=False)
            t1 = time.perf_counter_ns()
            raw = r.det.forward(x)
            t2 = time.perf_counter_ns()
            dets = r.det.postprocess(raw, infos)
            t3 = time.perf_counter_ns()
            r.model_ms += [(t2 - t1) / 1e6 / n] * n
            r.e2e_ms += [(pre_ms + (t3 - t1) / 1e6) / n] * n
            for it, d in zip(kept, dets):
                acc.add_detections(r.key, it.image_id, d)
            sim = postprocess(raw, infos, r.det.info.layout, names, s.sim_conf, s.sim_iou, None, s.max_det)
            if r is ref:
                raw_ref, sim_ref = raw, sim
                continue
            for i, it in enumerate(kept):
                diff = RawDiff.compute(raw_ref[i], raw[i])
                m = match_detections(sim_ref[i], sim[i], s.match_iou)
                r.cosines.append(diff.cosine)
                r.max_abs = max(r.max_abs, diff.max_abs)
                r.n_ref += m.n_ref
                r.n_test += m.n_test
                r.matched += m.matched
                r.ious += m.ious.tolist()
                r.conf_diff += m.conf_diff.tolist()
                r.per_image.append((it.path.name, int(m.n_ref), int(m.n_test), int(m.matched)))
        if progress:
            progress(len(items))
    if not acc.images:
        raise DataError(f"{data}: no readable images")

    results = {}
    ref_map = None
    ref_model_ms = float(np.median(ref.model_ms))
    for r in runs:
        mres = acc.evaluate(r.key, s.max_det)
        if r is ref:
            ref_map = mres
        entry = {
            "runtime": r.det.backend.describe(),  # validate feeds every backend the same host batch
            "artifact": str(r.det.info.path),
            "artifact_sha256": r.det.info.sha256,
            "artifact_bytes": r.det.info.path.stat().st_size,
            "half": r.half,
            "accuracy": mres.to_dict(),
            "speed": {
                "model_ms": Stats.of(r.model_ms).to_dict(),
                "e2e_ms": Stats.of(r.e2e_ms).to_dict(),
                "speedup": ref_model_ms / float(np.median(r.model_ms)),
            },
        }
        if r is not ref:
            sim_rate = match_rate(r.n_ref, r.n_test, r.matched)
            loss_pct = 100.0 * (ref_map.map50_95 - mres.map50_95) / ref_map.map50_95 if ref_map.map50_95 else 0.0
            worst = sorted(r.per_image, key=lambda t: (match_rate(t[1], t[2], t[3]), -t[1]))
            entry["similarity"] = {
                "match_rate": sim_rate,
                "reference_detections": r.n_ref,
                "detections": r.n_test,
                "matched": r.matched,
                "mean_iou": float(np.mean(r.ious)) if r.ious else 0.0,
                "mean_abs_conf_diff": float(np.mean(r.conf_diff)) if r.conf_diff else 0.0,
                "raw_cosine_min": float(np.min(r.cosines)) if r.cosines else 1.0,
                "raw_cosine_mean": float(np.mean(r.cosines)) if r.cosines else 1.0,
                "raw_max_abs_diff": r.max_abs,
                "iou_histogram": {"bins": IOU_BINS.tolist(), "counts": np.histogram(r.ious, IOU_BINS)[0].tolist()},
                "worst_images": [
                    {"image": w[0], "reference": w[1], "detections": w[2], "matched": w[3]}
                    for w in worst[:5]
                    if w[3] < max(w[1], w[2])
                ],
            }
            entry["map_loss_pct"] = loss_pct
            entry["map_drop_points"] = 100.0 * (ref_map.map50_95 - mres.map50_95)
            checks = apply_gates(
                gates,
                entry["speed"]["speedup"],
                sim_rate,
                loss_pct,
                device=s.device,
                half=r.half,
                mean_iou=entry["similarity"]["mean_iou"],
                max_abs=r.max_abs,
            )
            entry["gates"] = [asdict(c) for c in checks]
            entry["passed"] = all(c.passed for c in checks)
        results[r.key] = entry
        r.det.close()
    gated = [v for k, v in results.items() if k != "torch"]
    verdict = "PASS" if all(v["passed"] for v in gated) else "FAIL"
    return {
        "kind": "validation",
        "model": {
            "path": str(src),
            "sha256": file_sha256(src),
            "family": ref.det.info.family,
            "layout": ref.det.info.layout,
            "classes": len(names),
        },
        "data": {
            "source": str(dataset.source),
            "format": dataset.kind,
            "images": len(acc.images),
            "instances": dataset.instances,
            "backgrounds": dataset.backgrounds,
            "skipped": skipped,
        },
        "settings": {**asdict(s), "imgsz": list(imgsz), "backends": [v.key for v in plan], "rect": rect},
        "reference": "torch",
        "gates": asdict(gates),
        "backends": results,
        "verdict": verdict if gated else "PASS",
        "environment": describe_environment(s.device),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
