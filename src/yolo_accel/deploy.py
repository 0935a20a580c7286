"""The deployment bundle `optimize` writes (`deploy/`), and reading it back for `--deploy`.

    deploy/
      model.onnx | model.xml + model.bin | model.pt | model.pt2 | model.engine   the chosen artifact
      deploy.yaml        backend variant, options, input size, names, thresholds, figures, machine
      report.json/.md/.html   every candidate, its gates, speed and mAP, the speed-vs-mAP plot

`predict`, `validate`, `bench`, `video` and `serve` take `--deploy deploy/` and run exactly the
configuration in deploy.yaml: the artifact beside it, on its backend, device, precision and speed
options, at its input size and thresholds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, OutputExistsError

FORMAT = "yolo-accel-deploy/1"
COMPANIONS = {".xml": (".bin",)}  # files that travel with an artifact


@dataclass(frozen=True)
class DeployConfig:
    """What a bundle's deploy.yaml says to run."""

    folder: Path
    artifact: Path
    variant: str  # backends.variants syntax, e.g. "openvino-fp16"
    device: str
    imgsz: tuple[int, int]
    conf: float
    iou: float
    max_det: int
    batch: int
    source_model: str | None  # the .pt it was made from (the reference for validate)

    @property
    def parsed(self):
        from .backends.variants import parse_variant

        return parse_variant(self.variant)

    @property
    def backend(self) -> str:
        return self.parsed.backend

    @property
    def run_device(self) -> str:
        return self.parsed.device(self.device)

    def detector_kwargs(self, threads: int = 0) -> dict:
        """Detector(**kwargs) for exactly this configuration."""
        from .backends.ort import OrtOptions

        v = self.parsed
        return {
            "model": self.artifact,
            "backend": v.backend,
            "device": v.device(self.device),
            "half": v.half,
            "imgsz": self.imgsz[0] if self.imgsz[0] == self.imgsz[1] else None,
            "conf": self.conf,
            "iou": self.iou,
            "torch_options": v.torch_options(),
            "ort_options": OrtOptions(
                intra_op_threads=threads,
                io_binding=v.io_binding,
                cuda_graph=v.cuda_graph and v.backend == "onnxruntime",
            ),
        }


def load_deploy(folder: str | Path) -> DeployConfig:
    """Read `folder`/deploy.yaml (DataError, one line, for anything missing or wrong)."""
    import yaml

    root = Path(folder).expanduser()
    path = root / "deploy.yaml" if root.is_dir() else root
    if not path.is_file():
        raise DataError(f"{root}: no deploy.yaml (a bundle is written by `yolo-accel optimize --out DIR`)")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid YAML ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise DataError(f"{path}: not a yolo-accel deploy.yaml (format {FORMAT} expected)")
    try:
        artifact = path.parent / str(cfg["artifact"])
        thresholds = cfg["thresholds"]
        imgsz = [int(v) for v in cfg["imgsz"]]
        out = DeployConfig(
            folder=path.parent,
            artifact=artifact,
            variant=str(cfg["variant"]),
            device=str(cfg["device"]),
            imgsz=(imgsz[0], imgsz[1]),
            conf=float(thresholds["conf"]),
            iou=float(thresholds["iou"]),
            max_det=int(thresholds.get("max_det", 300)),
            batch=int(cfg.get("batch", 1)),
            source_model=cfg.get("source_model"),
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DataError(f"{path}: incomplete deploy.yaml ({type(e).__name__}: {e})") from None
    for p in (artifact, *(artifact.with_suffix(s) for s in COMPANIONS.get(artifact.suffix, ()))):
        if not p.is_file():
            raise DataError(f"{path}: its artifact {p.name} is missing beside it")
    _ = out.parsed  # an unknown variant is one line here, not a failure later
    return out


def check_bundle_target(folder: Path, force: bool) -> None:
    """Before any work: refuse to replace an existing bundle or a non-empty folder without --force."""
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"--out {folder} is a file; give a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise OutputExistsError(f"--out {folder} exists and is not empty; pass --force to replace it")


def write_bundle(folder: str | Path, report: dict, write_reports, force: bool = False) -> Path | None:
    """Write deploy/ for `report`'s chosen candidate (only the reports when none passed). Everything goes
    to a temporary folder beside it first, which then replaces `folder`: never a half-written bundle."""
    import tempfile

    import yaml

    folder = Path(folder).expanduser()
    check_bundle_target(folder, force)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        chosen = next((r for r in report["candidates"] if r["name"] == report["chosen"]), None)
        if chosen is not None:
            src = Path(chosen.get("artifact") or report["model"]["path"])
            name = "model" + src.suffix
            shutil.copy2(src, tmp / name)
            for suffix in COMPANIONS.get(src.suffix, ()):
                shutil.copy2(src.with_suffix(suffix), tmp / ("model" + suffix))
            doc = deploy_document(report, chosen, name)
            (tmp / "deploy.yaml").write_text(
                "# Written by yolo-accel optimize; run it with --deploy on predict, validate, bench, video, serve.\n"
                + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
                encoding="utf-8",
            )
        write_reports(report, tmp)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder / "deploy.yaml" if chosen is not None else None


def deploy_document(report: dict, chosen: dict, artifact_name: str) -> dict:
    """deploy.yaml's content for the chosen row."""
    s = report["settings"]
    env = report["environment"]
    figures = {
        k: round(chosen[k], 4) if isinstance(chosen.get(k), float) else chosen.get(k)
        for k in (
            "model_ms",
            "model_ms_p95",
            "e2e_ms",
            "throughput_ips",
            "speedup",
            "map50_95",
            "map50",
            "map_loss_pct",
            "similarity",
        )
        if chosen.get(k) is not None
    }
    return {
        "format": FORMAT,
        "artifact": artifact_name,
        "candidate": chosen["name"],
        "variant": chosen["variant"],
        "runtime": chosen.get("runtime"),
        "device": s["device"],
        "imgsz": list(s["imgsz"]),
        "batch": s["speed_batch"],
        "target": report["target"],
        "thresholds": {"conf": s["conf"], "iou": s["iou"], "max_det": 300},
        "names": {int(k): v for k, v in report["names"].items()},
        "source_model": report["model"]["path"],
        "source_sha256": report["model"]["sha256"],
        "data": report["data"]["source"],
        "gates": report["gates"],
        "figures": figures,
        "machine": {
            **{k: env[k] for k in ("platform", "cpu", "cpu_threads", "gpu", "cuda", "driver", "python") if k in env},
            "packages": env.get("packages", {}),
        },
        "date": report["date"],
    }
