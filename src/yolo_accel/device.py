"""Device strings: 'cpu', 'cuda', 'cuda:N' (and 'N' as Ultralytics users write it)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import DeviceError, SettingsError


@dataclass(frozen=True)
class Device:
    """A parsed device: kind 'cpu' or 'cuda', and the CUDA ordinal."""

    kind: str
    index: int = 0

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.is_cuda else "cpu"


def parse_device(text: str | Device | None) -> Device:
    """Parse a device string; raises SettingsError on anything else."""
    if isinstance(text, Device):
        return text
    t = (text or "cpu").strip().lower()
    if t == "cpu":
        return Device("cpu")
    if t in ("cuda", "gpu"):
        return Device("cuda", 0)
    m = re.fullmatch(r"(?:cuda:)?(\d+)", t)
    if m:
        return Device("cuda", int(m.group(1)))
    raise SettingsError(f"unknown device {text!r}: use cpu, cuda or cuda:N")


def check_torch_cuda(device: Device) -> None:
    """Raise DeviceError when `device` is CUDA and PyTorch cannot use it."""
    if not device.is_cuda:
        return
    import torch

    if not torch.cuda.is_available():
        raise DeviceError(
            f"--device {device} asked for, but PyTorch sees no CUDA GPU "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}): "
            "use --device cpu, or install the CUDA build of torch on a machine with an NVIDIA GPU"
        )
    n = torch.cuda.device_count()
    if device.index >= n:
        raise DeviceError(f"--device {device} asked for, but only {n} CUDA device(s) exist")


THREADS_ENV = "YOLO_ACCEL_THREADS"


def cpu_threads(requested: int = 0) -> int:
    """The CPU threads a backend may use for inference: `requested` when given (> 0), else
    $YOLO_ACCEL_THREADS, else 0 (the runtime's own default: one per core).

    For several yolo-accel processes on one machine (containers, test workers, one process per
    camera): each runtime otherwise starts a thread per core, and their busy-waiting threads
    then compete for the same cores.
    """
    import os

    if requested > 0:
        return requested
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"${THREADS_ENV} must be a whole number of threads (got {text!r})") from None
    if value < 0:
        raise SettingsError(f"${THREADS_ENV} must be 0 or more (got {value})")
    return value
