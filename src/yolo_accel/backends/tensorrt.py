"""TensorRT engine backend (TensorRT 10 tensor-address API), inside the GPU pipeline.

Written against TensorRT 10 (`set_input_shape`, `set_tensor_address`, `execute_async_v3` on
torch's current stream, torch-allocated device buffers). NOT exercised by this project's CI or
GPU machine: TensorRT cannot be installed there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._deps import require
from ..device import Device, check_torch_cuda
from ..errors import ModelError, SettingsError
from ..model import ModelInfo, info_from_metadata
from .base import Backend


def engine_info(path: Path, meta: dict) -> ModelInfo:
    """ModelInfo from the metadata beside an engine (written by `yolo-accel export --format engine`)."""
    if not meta:
        raise ModelError(
            f"{path}: no {path.name}.json beside it; build engines with `yolo-accel export --format engine`, "
            "which records class names, input size and layout there"
        )
    # the engine's input stays FP32 (FP16 / INT8 are inside it)
    return info_from_metadata(path, "engine", meta, half=False)


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT engine on torch-owned buffers."""

    name = "tensorrt"

    def __init__(self, model_path, device: Device, half: bool = False, metadata: dict | None = None, **_: object):
        trt = require("tensorrt")
        self._torch = torch = require("torch")
        check_torch_cuda(device)
        if not device.is_cuda:
            raise SettingsError("TensorRT runs on CUDA only: use --device cuda")
        path = Path(model_path)
        self.info = engine_info(path, metadata if metadata is not None else read_engine_metadata(path))
        self.device, self.half = device, False  # precision is the engine's; the flag is ignored
        self._dev = torch.device(str(device))
        built, running = self.info.metadata.get("tensorrt_version", ""), trt.__version__
        if built and built.split(".")[:2] != running.split(".")[:2]:
            raise ModelError(f"{path.name} was built with TensorRT {built}; this is {running}: export it again")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ModelError(f"{path}: TensorRT cannot load it (another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{path}: expected one input and one output, found {inputs} and {outputs}")
        self._in, self._out = inputs[0], outputs[0]
        self._out_dtype = (
            torch.float16 if self.engine.get_tensor_dtype(self._out) == trt.DataType.HALF else torch.float32
        )
        lo, _, hi = self.engine.get_tensor_profile_shape(self._in, 0)
        self.batch_range = (int(lo[0]), int(hi[0]))
        self._outputs: dict[tuple, object] = {}

    @property
    def batch_size(self) -> int | None:
        lo, hi = self.batch_range
        return lo if lo == hi else None

    @property
    def max_batch_size(self) -> int | None:
        lo, hi = self.batch_range
        return None if lo == hi else hi

    @property
    def device_io(self) -> bool:
        return True

    @property
    def reuses_output(self) -> bool:
        return True  # the output buffer is bound to the engine once

    @property
    def input_dtype(self) -> type:
        return np.float32

    def forward_device(self, batch):
        torch = self._torch
        x = batch.to(self._dev, dtype=torch.float32).contiguous()
        n = int(x.shape[0])
        if not self.batch_range[0] <= n <= self.batch_range[1]:
            raise SettingsError(
                f"{self.info.path.name} takes batches of {self.batch_range[0]}..{self.batch_range[1]} (got {n}); "
                "export again with --dynamic --max-batch"
            )
        self.context.set_input_shape(self._in, tuple(x.shape))
        shape = tuple(self.context.get_tensor_shape(self._out))
        out = self._outputs.get(shape)
        if out is None:
            out = self._outputs[shape] = torch.empty(shape, dtype=self._out_dtype, device=self._dev)
        self.context.set_tensor_address(self._in, x.data_ptr())
        self.context.set_tensor_address(self._out, out.data_ptr())
        stream = torch.cuda.current_stream(self._dev)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise ModelError(f"{self.info.path.name}: TensorRT execution failed")
        return out

    def forward(self, batch: np.ndarray) -> np.ndarray:
        y = self.forward_device(self._torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return y.float().cpu().numpy()

    def model_runner(self, batch: np.ndarray):
        x = self._torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self._dev)
        return lambda: self.forward_device(x)

    def synchronize(self) -> None:
        self._torch.cuda.synchronize(self._dev)

    def describe(self) -> str:
        import tensorrt as trt

        meta = self.info.metadata
        return f"TensorRT {trt.__version__} engine ({meta.get('precision', '?').upper()}) on {meta.get('gpu', '?')}"

    def close(self) -> None:
        self._outputs.clear()
        self.context = None
        self.engine = None


def read_engine_metadata(path: Path) -> dict:
    """The metadata beside an engine (`<engine>.json`), or an empty dict when there is none."""
    side = path.with_name(path.name + ".json")
    return json.loads(side.read_text()) if side.is_file() else {}
