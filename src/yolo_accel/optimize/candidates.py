"""The configurations `optimize` tries on a machine, and why it skips the ones it cannot run.

A candidate is a backend variant (backends.variants syntax) plus the artifact it runs: the `.pt`
itself for torch rows, or an export made once into the cache (ONNX, OpenVINO FP32 or INT8,
AOTInductor, TensorRT), or a file the user brings (`--onnx`, `--openvino`). Availability is decided
without importing the heavy runtimes: `importlib.util.find_spec`, `torch.cuda.is_available()`, the
C++ compiler on the path.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import SettingsError

# the export each candidate needs, with a rough first estimate of its cost in seconds on a small
# model (the two-core CPU machine and the H200 host); the time budget plans with these until the
# reference run gives a measured pace
EXPORT_COST_S = {
    "none": 0,
    "onnx": 20,
    "openvino": 30,
    "openvino-int8": 120,
    "torch-compile": 150,
    "aoti": 300,
    "tensorrt": 300,
}


@dataclass(frozen=True)
class Candidate:
    """One configuration to validate and time."""

    name: str  # the row label, e.g. "openvino-int8-bf16"
    variant: str  # what validate/bench run it as, e.g. "openvino-fp16"
    export: str = "none"  # which export it needs (a key of EXPORT_COST_S)
    int8: bool = False  # an OpenVINO INT8 IR
    artifact: str | None = None  # a file the user brought (no export)
    about: str = ""  # one line for the table
    skip: str | None = None  # why it cannot run here (None: it can)

    @property
    def backend(self) -> str:
        return self.variant.split("-")[0]


REFERENCE = Candidate("torch", "torch", about="PyTorch FP32 eager: the reference")

CPU_CANDIDATES = (
    Candidate("torch-cl", "torch-cl", about="PyTorch, channels_last"),
    Candidate("onnxruntime", "onnxruntime", "onnx", about="ONNX Runtime, CPU provider"),
    Candidate("openvino", "openvino", "openvino", about="OpenVINO FP32 IR"),
    Candidate("openvino-bf16", "openvino-fp16", "openvino", about="OpenVINO FP32 IR run in bfloat16"),
    Candidate("openvino-int8", "openvino", "openvino-int8", True, about="OpenVINO INT8 IR (NNCF)"),
    Candidate("openvino-int8-bf16", "openvino-fp16", "openvino-int8", True, about="INT8 IR, other layers bfloat16"),
    Candidate("torch-compile", "torch-compile", "torch-compile", about="torch.compile (inductor, C++)"),
    Candidate("compiled", "compiled", "aoti", about="AOTInductor package"),
)
CUDA_CANDIDATES = (
    Candidate("torch-fp16", "torch-fp16", about="PyTorch FP16"),
    Candidate("torch-fp16-cl", "torch-fp16-cl", about="PyTorch FP16, channels_last"),
    Candidate("torch-fp16-graph", "torch-fp16-graph", about="PyTorch FP16, CUDA graphs"),
    Candidate("torch-fp16-cl-graph", "torch-fp16-cl-graph", about="PyTorch FP16, channels_last, CUDA graphs"),
    Candidate(
        "torch-fp16-cl-compile-graph",
        "torch-fp16-cl-compile-graph",
        "torch-compile",
        about="torch.compile FP16 replayed as CUDA graphs",
    ),
    Candidate("torch-fp16-cl-compile", "torch-fp16-cl-compile", "torch-compile", about="torch.compile FP16"),
    Candidate("onnxruntime", "onnxruntime", "onnx", about="ONNX Runtime, CUDA provider"),
    Candidate("onnxruntime-fp16-iobind", "onnxruntime-fp16-iobind", "onnx", about="ONNX Runtime FP16, IO binding"),
    Candidate("onnxruntime-fp16-graph", "onnxruntime-fp16-graph", "onnx", about="ONNX Runtime FP16, CUDA graph"),
    Candidate("compiled-fp16", "compiled-fp16", "aoti", about="AOTInductor package, FP16"),
    Candidate("tensorrt-fp16", "tensorrt-fp16", "tensorrt", about="TensorRT engine, FP16"),
)


def _available(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cuda_available() -> bool:
    if not _available("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def _ort_has_cuda() -> bool:
    if not _available("onnxruntime"):
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _has_cxx() -> bool:
    import os

    return any(shutil.which(c) for c in (os.environ.get("CXX") or "g++", "g++", "c++"))


def skip_reason(c: Candidate, cuda: bool) -> str | None:
    """Why `c` cannot run on this machine for a `cuda` (or CPU) deployment, or None."""
    backend = c.backend
    if not _available("torch"):
        return "needs PyTorch: pip install 'yolo-accel[torch]'"
    if backend == "openvino":
        if cuda:
            return "OpenVINO runs on the CPU here: optimize with --device cpu"
        if not _available("openvino"):
            return "needs OpenVINO: pip install 'yolo-accel[openvino]'"
        if c.int8 and not _available("nncf"):
            return "INT8 needs NNCF: pip install 'yolo-accel[openvino]'"
    if backend == "onnxruntime":
        if not _available("onnxruntime"):
            return "needs ONNX Runtime: pip install onnxruntime"
        if cuda and not _ort_has_cuda():
            return "this ONNX Runtime has no CUDA provider: pip install onnxruntime-gpu"
    if backend == "tensorrt":
        if not cuda:
            return "TensorRT needs a CUDA GPU"
        if not _available("tensorrt"):
            return "needs TensorRT 10: pip install tensorrt (NVIDIA's package index)"
    if c.export in ("torch-compile", "aoti") and not _has_cxx():
        return "torch.compile and AOTInductor build C++: install g++"
    return None


def list_candidates(
    device: str, only: list[str] | None = None, extra: list[Candidate] | None = None
) -> list[Candidate]:
    """Every candidate for a `device` deployment (cpu or cuda[:N]), the reference first, each with its
    skip reason set; `only` keeps the named ones (and the reference); `extra`: the user's own artifacts."""
    from ..device import parse_device

    cuda = parse_device(device).is_cuda
    if cuda and not _cuda_available():
        raise SettingsError("--device cuda: no CUDA GPU is visible to PyTorch here")
    own, other = (CUDA_CANDIDATES, CPU_CANDIDATES) if cuda else (CPU_CANDIDATES, CUDA_CANDIDATES)
    names = [c.name for c in own]
    listed = [REFERENCE, *own]
    # the other device's rows are shown skipped, so the table says what else exists
    listed += [c for c in other if c.name not in names]
    if only:
        known = {c.name for c in listed}
        unknown = [n for n in only if n not in known and n != REFERENCE.name]
        if unknown:
            raise SettingsError(f"unknown candidate {unknown[0]!r}; known: {', '.join(sorted(known))}")
        listed = [c for c in listed if c is REFERENCE or c.name in only]
    out = []
    for c in listed + list(extra or []):
        if c in other:
            reason = (
                "runs on a CUDA GPU: optimize with --device cuda" if not cuda else "a CPU configuration: --device cpu"
            )
        else:
            reason = skip_reason(c, cuda)
        out.append(Candidate(c.name, c.variant, c.export, c.int8, c.artifact, c.about, reason))
    return out


def user_candidates(onnx: list[Path], openvino: list[Path], cuda: bool) -> list[Candidate]:
    """Files the user brings (their own exports) as candidates named after the file."""
    out = []
    for p in onnx:
        variant = "onnxruntime-iobind" if cuda else "onnxruntime"
        out.append(Candidate(f"onnx:{p.name}", variant, artifact=str(p), about=f"ONNX file {p}"))
    for p in openvino:
        out.append(Candidate(f"openvino:{p.name}", "openvino", artifact=str(p), about=f"OpenVINO IR {p}"))
    return out
