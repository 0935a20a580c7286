"""What every export shares: the traced model, the output checks, the result, the parity check."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ExportError, OutputExistsError, SettingsError
from ..evaluate.similarity import ParityReport
from ..model import ModelInfo

PARITY_THRESHOLD = 0.98


@dataclass
class ExportResult:
    """What an export produced; `path` is None when the parity check failed (nothing was kept)."""

    path: Path | None
    target: Path
    info: ModelInfo
    settings: Any
    seconds: float
    size_bytes: int = 0
    parity: ParityReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.path is not None


def prepare_for_export(module, family: str, dynamic: bool):
    """A copy of the model whose detection head returns one decoded tensor, as exporters expect."""
    m = copy.deepcopy(module)
    for sub in m.modules():
        if type(sub).__name__ in ("Detect", "v10Detect"):
            if getattr(sub, "end2end", False):
                raise ExportError(
                    "end-to-end (NMS-free) heads are not supported yet; export a standard Detect head model"
                )
            sub.export = True
            # dynamic: grids/anchors computed in the graph from the input size, so that the
            # declared dynamic height/width really work (a static file bakes them as constants)
            sub.dynamic = dynamic
            if family == "ultralytics":
                sub.format = "onnx"
            else:
                sub.inplace = False
    return m


def check_target(target: Path, suffix: str, force: bool) -> Path:
    """The output path, checked before any work: right suffix, not in the way, writable folder."""
    if target.suffix.lower() != suffix:
        raise SettingsError(f"--output must end in {suffix} (got {target})")
    if target.exists() and not force:
        raise OutputExistsError(f"{target} exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(target.parent, os.W_OK):
        raise SettingsError(f"cannot write to {target.parent}; choose another place with --output")
    return target


def check_parity(module, info: ModelInfo, dev, imgsz, test_backend, images: list[Path]) -> ParityReport:
    """The exported artifact (already opened as a Backend) against the FP32 PyTorch model on real images."""
    from ..backends.pytorch import from_module
    from ..detector import Detector
    from ..parity import compare_detectors

    reference = Detector(from_module(module, info, dev, half=False), imgsz=imgsz)
    test = Detector(test_backend)
    try:
        return compare_detectors(reference, test, images, threshold=PARITY_THRESHOLD)
    finally:
        test.close()
