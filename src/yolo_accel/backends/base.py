"""The backend contract and the one registry that export, predict, validate, bench and doctor use."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .._deps import available
from ..device import Device
from ..errors import SettingsError
from ..model import ModelInfo


class Backend(ABC):
    """A runner: built once (heavy work in __init__), then `forward` many times, then `close`."""

    name: str = ""
    info: ModelInfo
    device: Device
    half: bool = False

    @property
    def batch_size(self) -> int | None:
        """Fixed batch size the artifact takes, or None when any batch size works."""
        return self.info.batch

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """Fixed input (height, width) of the artifact, or None when it accepts any stride multiple."""
        return None if self.info.dynamic_hw else self.info.imgsz

    @property
    def prefers_fixed_shape(self) -> bool:
        """True when a new input shape is expensive (ONNX Runtime on CUDA: a cuDNN algorithm search)."""
        return False

    @property
    def input_dtype(self) -> type:
        return np.float16 if self.half else np.float32

    @abstractmethod
    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Raw head output (float32 NumPy) for a prepared NCHW batch."""

    @property
    def reuses_output(self) -> bool:
        """True when `forward_device` returns a buffer the next call overwrites (a CUDA graph's output,
        IO-bound ONNX Runtime outputs)."""
        return False

    @property
    def device_io(self) -> bool:
        """True when `forward_device` takes and returns torch tensors on the backend's CUDA device.

        Such a backend runs inside the GPU pipeline (ops.torch_ops): frames go up once, boxes come back.
        """
        return False

    def forward_device(self, batch):
        """Raw head output (a torch tensor on the device) for a prepared NCHW torch tensor on the device.

        The result may live in a buffer the backend reuses: read it before the next call.
        """
        raise NotImplementedError(f"the {self.name} backend takes host arrays only")

    @property
    def setup_seconds(self) -> dict[str, float]:
        """One-off costs the backend paid (e.g. compilation, CUDA graph capture), in seconds."""
        return {}

    def describe(self) -> str:
        """One line: what actually runs the model (library, version, provider / device)."""
        return self.name

    def model_runner(self, batch: np.ndarray):
        """A no-argument callable that runs inference on `batch` already placed where the backend wants it.

        This is what "model-only" latency times: no host copies where the backend can avoid them.
        """
        return lambda: self.forward(batch)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the CPU)."""

    def peak_device_memory(self) -> dict[str, int] | None:
        """Peak device memory since the last reset, where the backend can tell (torch)."""
        return None

    def reset_peak_memory(self) -> None:
        """Start a new peak-memory window."""

    def close(self) -> None:
        """Release sessions and device memory."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class BackendSpec:
    """One row of the registry: how to find, check and build a backend."""

    name: str
    module: str  # where the Backend subclass lives (imported only when used)
    cls: str
    suffixes: tuple[str, ...]  # model files it runs directly
    requires: str  # Python module that must be importable
    install: str  # what to run when it is not
    devices: tuple[str, ...]
    description: str

    def is_available(self) -> bool:
        return available(self.requires)

    def load(self) -> type[Backend]:
        return getattr(importlib.import_module(self.module, __package__), self.cls)


BACKENDS: dict[str, BackendSpec] = {
    s.name: s
    for s in (
        BackendSpec(
            "torch",
            ".pytorch",
            "TorchBackend",
            (".pt",),
            "torch",
            "pip install 'yolo-accel[torch]'",
            ("cpu", "cuda"),
            "PyTorch eager (the reference); FP16, channels_last, CUDA graphs, torch.compile",
        ),
        BackendSpec(
            "onnxruntime",
            ".ort",
            "OnnxRuntimeBackend",
            (".onnx",),
            "onnxruntime",
            "pip install onnxruntime (CPU) or 'yolo-accel[gpu]' with onnxruntime-gpu",
            ("cpu", "cuda"),
            "ONNX Runtime (CPU, CUDA and TensorRT execution providers)",
        ),
        BackendSpec(
            "compiled",
            ".pytorch",
            "CompiledBackend",
            (".pt2",),
            "torch",
            "pip install 'yolo-accel[torch]'",
            ("cpu", "cuda"),
            "AOTInductor package (.pt2 from export --format compiled; runs with torch alone)",
        ),
        BackendSpec(
            "tensorrt",
            ".tensorrt",
            "TensorRTBackend",
            (".engine",),
            "tensorrt",
            "pip install tensorrt (TensorRT 10; needs NVIDIA's package index and a CUDA GPU)",
            ("cuda",),
            "TensorRT engine (TensorRT 10 Python API; not verified on this project's machines)",
        ),
    )
}


def get_backend_spec(name: str) -> BackendSpec:
    """The registry row for `name`, or SettingsError listing the known backends."""
    key = name.strip().lower().replace("_", "").replace("-", "")
    aliases = {
        "pytorch": "torch",
        "ort": "onnxruntime",
        "onnx": "onnxruntime",
        "aoti": "compiled",
        "pt2": "compiled",
        "trt": "tensorrt",
        "engine": "tensorrt",
    }
    key = aliases.get(key, key)
    if key not in BACKENDS:
        raise SettingsError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}")
    return BACKENDS[key]
