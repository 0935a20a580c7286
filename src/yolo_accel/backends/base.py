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
    def max_batch_size(self) -> int | None:
        """The largest batch one call takes, or None when any size works (a fixed batch size is split)."""
        return None

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


def in_fixed_batches(backend: Backend, batch, run, cat, zeros, keep):
    """`run` over `batch` in the artifact's fixed batch size (the last part padded with zeros), or in one
    call when it takes any batch size. `cat`/`zeros`/`keep` are NumPy's or torch's: `keep` copies out
    of a backend's reused output buffer before the next run overwrites it."""
    n = len(batch)
    fixed = backend.batch_size
    if fixed is None or fixed == n:
        return run(batch)
    outs = []
    for i in range(0, n, fixed):
        part = batch[i : i + fixed]
        k = len(part)
        if k < fixed:
            part = cat([part, zeros((fixed - k, *part.shape[1:]), dtype=part.dtype)])
        outs.append(keep(run(part)[:k]))
    return cat(outs)


def forward_host(backend: Backend, batch: np.ndarray) -> np.ndarray:
    """Raw head output for a prepared NumPy batch of any size."""
    return in_fixed_batches(backend, batch, backend.forward, np.concatenate, np.zeros, lambda a: a)


def takes_any_size(backend: Backend) -> bool:
    """Whether rectangular (minimally padded) input suits this backend: any input size, and a new
    shape is cheap (not ONNX Runtime on CUDA, where each one starts a cuDNN algorithm search)."""
    return backend.input_hw is None and not backend.prefers_fixed_shape


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

    def check_available(self) -> None:
        """MissingDependencyError naming the install when the backend's runtime is not installed."""
        if not self.is_available():
            from ..errors import MissingDependencyError

            raise MissingDependencyError(self.description, package=self.install.removeprefix("pip install "))

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
            "openvino",
            ".openvino",
            "OpenVINOBackend",
            (".xml",),
            "openvino",
            "pip install 'yolo-accel[openvino]'",
            ("cpu",),
            "OpenVINO IR on the CPU (FP32, or INT8 from export --format openvino --int8; --half: bfloat16)",
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
        "ov": "openvino",
    }
    key = aliases.get(key, key)
    if key not in BACKENDS:
        raise SettingsError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}")
    return BACKENDS[key]
