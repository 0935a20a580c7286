"""`yolo-accel validate`: accuracy, similarity to the PyTorch FP32 reference, speed, and gates.

Every backend sees the same images in the same batches, each run the way it runs deployed: on the
CPU the NumPy/OpenCV pre- and post-processing, on CUDA the GPU pipeline wherever the backend takes
device tensors (letterbox, network and NMS on the GPU), so that the accuracy verdict covers the
code that runs in production. Speed comes from the same harness as `bench` (`speed.time_detector`).
Images are streamed one batch at a time; only small per-box records are kept.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .detector import Detector
from .errors import DataError, SettingsError, YoloAccelWarning
from .evaluate.datasets import load_dataset
from .evaluate.gates import apply_gates, load_gates
from .evaluate.map import CocoAccumulator
from .evaluate.similarity import RawDiff, match_detections, match_rate
from .images import read_image
from .ops import postprocess, preprocess
from .ops.letterbox import batch_shape
from .speed import MIN_TIMED, Speed, SpeedSettings, time_detector

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
    openvino: str | None = None  # and this IR (e.g. an INT8 export) for the openvino backend
    artifacts: dict[str, str] = field(default_factory=dict)  # backend -> the file it runs (any backend)
    sim_conf: float = 0.25  # similarity is measured at deployment settings
    sim_iou: float = 0.45
    match_iou: float = 0.5
    clip_labels: bool = False
    images_dir: str | None = None
    names_file: str | None = None
    speed_metric: str = "model"  # what the speed gate compares: model-only or end-to-end latency
    speed_batch: int = 1  # the batch size timed for the speed gate
    speed_iters: int = 50  # timed runs per backend (model-only and end-to-end each)
    speed_warmup: int = 10
    speed_duration_s: float = 10.0  # cap per backend and measure; never fewer than 3 runs


SPEED_METRICS = ("model", "e2e")


@dataclass
class _Run:
    key: str
    det: Detector
    half: bool
    speed: Speed | None = None
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
    from .assets import parity_images_from
    from .environment import describe_environment
    from .model import artifact_bytes, check_model_path, file_sha256

    src = check_model_path(model, (".pt",))
    if s.batch < 1:
        raise SettingsError(f"--batch must be at least 1 (got {s.batch})")
    if s.speed_metric not in SPEED_METRICS:
        raise SettingsError(f"--speed-metric is model or e2e (got {s.speed_metric!r})")
    if s.speed_batch < 1 or s.speed_iters < 3:
        raise SettingsError("--speed-batch must be at least 1 and --speed-iters at least 3")
    gates = load_gates(s.gates)
    dataset = load_dataset(data, s.clip_labels, s.images_dir)
    if dataset.items and dataset.instances == 0:  # every mAP would be -1 and no mAP gate could be judged
        raise DataError(
            f"{data}: none of its {len(dataset.items)} images has a labelled object (no labels/ folder beside "
            "images/, or every label file empty): mAP cannot be measured, so there is no verdict"
        )
    plan = parse_backends(s.backends, s.half)
    runs: list[_Run] = []
    from .backends.ort import OrtOptions

    # an export made on the way (a .pt on onnxruntime) checks parity on the dataset's images, not on sample images
    with parity_images_from([it.path for it in dataset.items[:2]]):
        for v in plan:
            given = {"onnxruntime": s.onnx, "openvino": s.openvino, **s.artifacts}.get(v.backend)
            artifact = given or src
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
    speed_frame = None
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
        if speed_frame is None:
            speed_frame = images[0]
        shape = batch_shape([im.shape[:2] for im in images], imgsz[0], stride) if rect else None
        host = None  # the NumPy letterbox, made once for every backend on the host path
        for it, img in zip(kept, images):
            xyxy, cls = it.boxes(*img.shape[:2])
            acc.add_image(it.image_id, img.shape[0], img.shape[1], xyxy, cls, it.iscrowd)
        raw_ref = None
        for r in runs:
            if r.det.gpu_ops:
                raw, dets, sim = _on_device(r.det, images, shape, s)
            else:
                if host is None:
                    host = preprocess(images, imgsz, stride, rect=False, shape=shape)
                batch, infos = host
                raw = r.det.forward(batch.astype(r.det.backend.input_dtype, copy=False))
                dets = r.det.postprocess(raw, infos)
                sim = postprocess(raw, infos, r.det.info.layout, names, s.sim_conf, s.sim_iou, None, s.max_det)
            for it, d in zip(kept, dets):
                acc.add_detections(r.key, it.image_id, d)
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
    # speed: the bench harness on one frame of the dataset, at --speed-batch, after the accuracy pass
    timing = SpeedSettings(s.speed_warmup, s.speed_iters, s.speed_duration_s, s.speed_iters)
    for r in runs:
        r.speed = time_detector(r.det, [speed_frame] * s.speed_batch, timing)

    results = {}
    ref_map = None
    for r in runs:
        mres = acc.evaluate(r.key, s.max_det)
        if r is ref:
            ref_map = mres
        entry = {
            "runtime": r.det.describe(),
            "artifact": str(r.det.info.path),
            "artifact_sha256": r.det.info.sha256,
            "artifact_bytes": artifact_bytes(r.det.info.path),
            "half": r.half,
            "accuracy": mres.to_dict(),
            "speed": _speed_entry(r.speed, ref.speed, s, speed_frame),
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
                on_device=bool(r.det.gpu_ops),
                speed_metric=s.speed_metric,
                int8=r.det.info.metadata.get("precision") == "int8",
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


def _on_device(det: Detector, images: list, shape, s: ValidateSettings):
    """One batch through the GPU pipeline, as it runs deployed: raw output (for the raw-output
    comparison), the validation detections (multi-label, on the device) and the deployment-setting
    detections (the production route: candidates on the device, NMS on the host)."""
    from .ops.torch_ops import postprocess_torch

    batch, infos = det.preprocess_device(det.upload(images), shape)
    raw = det.forward_device(batch)
    dets = postprocess_torch(raw, infos, *det._post_settings(raw.shape))
    layout = det.info.layout
    sim = postprocess_torch(raw, infos, layout, det.names, s.sim_conf, s.sim_iou, None, s.max_det)
    return raw.float().cpu().numpy(), dets, sim


def _speed_entry(speed: Speed, ref: Speed, s: ValidateSettings, frame) -> dict:
    """What the speed gate compares, stated: the metric, the batch, both latencies and both speedups."""
    by = {"model": ref.model.median / speed.model.median, "e2e": ref.e2e.median / speed.e2e.median}
    h, w = frame.shape[:2]
    out = {
        "metric": s.speed_metric,
        "batch": s.speed_batch,
        "frame": f"{w}x{h}",
        "model_ms": speed.model.to_dict(),
        "e2e_ms": speed.e2e.to_dict(),
        "stages_ms": speed.stages,
        "speedup": by[s.speed_metric],
        "speedup_model": by["model"],
        "speedup_e2e": by["e2e"],
        "timed_runs": {"model": speed.model.n, "e2e": speed.e2e.n},
    }
    if not (speed.enough and ref.enough):
        out["note"] = (
            f"fewer than {MIN_TIMED} timed runs (--speed-iters, or the {s.speed_duration_s:g} s each measure "
            "may take): the speedup rests on "
            f"{min(speed.model.n, speed.e2e.n, ref.model.n, ref.e2e.n)} runs"
        )
    return out
