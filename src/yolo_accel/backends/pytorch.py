"""PyTorch eager backend: the reference every other backend is compared with."""

from __future__ import annotations

import numpy as np

from .._deps import require
from ..device import Device, check_torch_cuda
from ..errors import SettingsError
from .base import Backend


class TorchBackend(Backend):
    """Runs a `.pt` checkpoint (Ultralytics or original YOLOv5) with torch."""

    name = "torch"

    def __init__(self, model_path, device: Device, half: bool = False, **_: object):
        torch = require("torch")
        from ..model import load_pytorch

        check_torch_cuda(device)
        if half and not device.is_cuda:
            raise SettingsError("--half needs a CUDA device (FP16 on the CPU is slow and not validated)")
        self.device, self.half = device, half
        self.module, self.info = load_pytorch(model_path)
        self._torch = torch
        self._dev = torch.device(str(device))
        self.module = self.module.to(self._dev)
        if half:
            self.module = self.module.half()

    def forward(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self._dev, non_blocking=True)
        x = x.half() if self.half else x.float()
        with torch.inference_mode():
            y = self.module(x)
        if isinstance(y, (list, tuple)):  # eval mode returns (decoded, raw feature maps)
            y = y[0]
        return y.float().cpu().numpy()

    def model_runner(self, batch: np.ndarray):
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self._dev)
        x = x.half() if self.half else x.float()

        def run():
            with torch.inference_mode():
                self.module(x)

        return run

    def synchronize(self) -> None:
        if self.device.is_cuda:
            self._torch.cuda.synchronize(self._dev)

    def peak_device_memory(self) -> dict[str, int] | None:
        if not self.device.is_cuda:
            return None
        t = self._torch.cuda
        return {"allocated": int(t.max_memory_allocated(self._dev)), "reserved": int(t.max_memory_reserved(self._dev))}

    def reset_peak_memory(self) -> None:
        if self.device.is_cuda:
            self._torch.cuda.reset_peak_memory_stats(self._dev)

    def describe(self) -> str:
        t = self._torch
        where = t.cuda.get_device_name(self._dev) if self.device.is_cuda else "CPU"
        return f"torch {t.__version__} on {where}{' FP16' if self.half else ''}"

    def close(self) -> None:
        self.module = None
        if self.device.is_cuda:
            self._torch.cuda.empty_cache()


def from_module(module, info, device: Device, half: bool = False) -> TorchBackend:
    """A TorchBackend around an already loaded module (export's parity check reuses its model)."""
    torch = require("torch")
    check_torch_cuda(device)
    self = TorchBackend.__new__(TorchBackend)
    self.device, self.half, self.info, self._torch = device, half, info, torch
    self._dev = torch.device(str(device))
    self.module = module.to(self._dev)
    if half:
        self.module = self.module.half()
    return self
