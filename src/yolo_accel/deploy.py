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

from .errors import DataError, OutputExistsError, SettingsError

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
    source_sha256: str | None = None

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
    """Read `folder`/deploy.yaml (DataError, one line, for anything missing or wrong).

    A bundle is checked before anything in it is loaded (a `.pt` artifact is a pickle, which runs code
    when loaded): its artifact is a file inside the bundle, named without a folder, whose bytes (and its
    companions') have the SHA-256 that deploy.yaml gives, and every field has its type and range."""

    root = Path(folder).expanduser()
    path = root / "deploy.yaml" if root.is_dir() else root
    if not path.is_file():
        raise DataError(f"{root}: no deploy.yaml (a bundle is written by `yolo-accel optimize --out DIR`)")
    from .yamlfile import read_yaml

    cfg = read_yaml(path, max_bytes=MAX_YAML_BYTES)
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise DataError(f"{path}: not a yolo-accel deploy.yaml (format {FORMAT} expected)")
    from .ops.letterbox import MAX_IMGSZ

    fields = _Fields(cfg, path)
    thresholds = _Fields(fields.get("thresholds", dict), path, "thresholds.")
    imgsz = fields.get("imgsz", list)
    if len(imgsz) != 2 or not all(_is_int(v) and 32 <= v <= MAX_IMGSZ for v in imgsz):
        raise DataError(f"{path}: imgsz must be two whole numbers from 32 to {MAX_IMGSZ}, got {_show(imgsz)}")
    source_sha = fields.get("source_sha256", str, required=False)
    if source_sha is not None and not _is_sha256(source_sha):
        raise DataError(f"{path}: source_sha256 is not a SHA-256 (64 hex digits)")
    out = DeployConfig(
        folder=path.parent,
        artifact=_checked_artifact(fields, path),
        variant=fields.get("variant", str),
        device=fields.get("device", str),
        imgsz=(imgsz[0], imgsz[1]),
        conf=thresholds.number("conf", 0.0, 1.0),
        iou=thresholds.number("iou", 0.0, 1.0),
        max_det=thresholds.whole("max_det", 1, 100_000, default=300),
        batch=fields.whole("batch", 1, 1024, default=1),
        source_model=fields.get("source_model", str, required=False),
        source_sha256=source_sha,
    )
    try:
        _ = out.parsed  # an unknown variant is one line here, not a failure later
    except (SettingsError, ValueError) as e:
        raise DataError(f"{path}: variant {_show(out.variant)}: {e}") from None
    return out


MAX_YAML_BYTES = 1 << 20  # optimize writes a few KiB


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # YAML's `true` is not a size


def _is_sha256(v) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _show(v) -> str:
    import reprlib

    return reprlib.repr(v)  # bounded: a value built from YAML aliases can be enormous


class _Fields:
    """Typed reads of a deploy.yaml mapping: each wrong field is one line naming it."""

    def __init__(self, cfg: dict, path: Path, prefix: str = ""):
        self.cfg, self.path, self.prefix = cfg, path, prefix

    def get(self, key: str, kind: type, required: bool = True):
        if key not in self.cfg or self.cfg[key] is None:
            if required:
                raise DataError(f"{self.path}: incomplete deploy.yaml (no {self.prefix}{key})")
            return None
        value = self.cfg[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DataError(f"{self.path}: {self.prefix}{key} must be {_KINDS[kind]}, got {_show(value)}")
        return value

    def number(self, key: str, low: float, high: float) -> float:
        value = self.get(key, (int, float))
        if not low <= value <= high:  # NaN fails this too
            raise DataError(f"{self.path}: {self.prefix}{key} must be from {low:g} to {high:g}, got {_show(value)}")
        return float(value)

    def whole(self, key: str, low: int, high: int, default: int) -> int:
        if key not in self.cfg:
            return default
        value = self.get(key, int)
        if not low <= value <= high:
            raise DataError(f"{self.path}: {self.prefix}{key} must be from {low} to {high}, got {_show(value)}")
        return value


_KINDS = {str: "text", list: "a list", dict: "a mapping", int: "a whole number", (int, float): "a number"}


def _checked_artifact(fields: _Fields, path: Path) -> Path:
    """The artifact (and its companions) inside the bundle, with the bytes deploy.yaml's `files` hashes."""
    from .model import file_sha256

    name = fields.get("artifact", str)
    if name in ("", ".", "..") or Path(name).name != name or "/" in name or "\\" in name:
        raise DataError(f"{path}: artifact must be a file name inside the bundle, got {_show(name)}")
    hashes = fields.get("files", dict, required=False)
    if hashes is None:
        raise DataError(
            f"{path}: no `files` with the artifact's SHA-256 (a bundle from an earlier yolo-accel): "
            "run yolo-accel optimize again"
        )
    folder = path.parent.resolve()
    artifact = path.parent / name
    for p in (artifact, *(artifact.with_suffix(s) for s in COMPANIONS.get(artifact.suffix, ()))):
        if not p.is_file():
            raise DataError(f"{path}: its artifact {p.name} is missing beside it")
        if p.resolve().parent != folder:  # a symlink out of the bundle
            raise DataError(f"{path}: its artifact {p.name} points outside the bundle")
        expected = hashes.get(p.name)
        if not _is_sha256(expected):
            raise DataError(f"{path}: files has no SHA-256 for {p.name}")
        if file_sha256(p) != expected:
            raise DataError(f"{path}: {p.name} is not the file the bundle was written with (its SHA-256 differs)")
    return artifact


def check_source_model(cfg: DeployConfig, model: Path) -> None:
    """The .pt `validate --deploy` compares the bundle with is the one the bundle was made from."""
    from .model import file_sha256

    if cfg.source_sha256 is not None and file_sha256(model) != cfg.source_sha256:
        raise DataError(
            f"{model}: not the model the bundle was made from (its SHA-256 differs from source_sha256); "
            "give the reference with --model"
        )


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
            from .model import file_sha256

            files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
            doc = deploy_document(report, chosen, name, files)
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


def deploy_document(report: dict, chosen: dict, artifact_name: str, files: dict[str, str]) -> dict:
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
        "files": files,  # SHA-256 of each file of the artifact, checked before it is loaded
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
