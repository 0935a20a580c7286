"""OpenVINO backend: an IR (`.xml` + `.bin`, FP32 or INT8) on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._deps import require
from ..device import Device, cpu_threads
from ..errors import DeviceError, ModelError
from .base import Backend

RT_KEY = "yolo_accel"  # the IR's runtime info section holding the export's metadata


def read_openvino_info(model, path: Path, names_file=None):
    """ModelInfo of an IR: the metadata our export keeps in its runtime info, else its shapes alone."""
    from ..model import info_from_graph

    meta: dict[str, str] = {}
    rt = model.get_rt_info()
    if RT_KEY in rt:
        meta = {k: str(v.value if hasattr(v, "value") else v) for k, v in rt[RT_KEY].items()}
    if len(model.inputs) != 1:
        raise ModelError(f"{path}: expected one image input, found {len(model.inputs)}")

    def dims(port) -> list:
        return [d.get_length() if d.is_static else "?" for d in port.get_partial_shape()]

    in_dims, out_dims = dims(model.inputs[0]), dims(model.outputs[0])
    if len(in_dims) != 4 or len(out_dims) != 3:
        raise ModelError(f"{path}: input {in_dims} / output {out_dims} is not a YOLO detector's (4-D in, 3-D out)")
    return info_from_graph(path, "openvino", meta, in_dims, out_dims, False, names_file)


class OpenVINOBackend(Backend):
    """Runs an OpenVINO IR on the CPU. `half` runs it in bfloat16 where the CPU has it (AMX, AVX-512
    BF16), which OpenVINO would otherwise choose by itself: FP32 stays FP32 unless asked."""

    name = "openvino"

    def __init__(self, model_path, device: Device, half: bool = False, names_file=None, **_: object):
        ov = require("openvino")
        if device.is_cuda:
            raise DeviceError("the openvino backend runs on the CPU: use --device cpu")
        self.device = device
        self.half = False  # inputs are float32 whatever the inference precision
        core = ov.Core()
        path = Path(model_path)
        try:
            model = core.read_model(str(path))
        except Exception as e:  # OpenVINO raises RuntimeError with a long C++ trace
            raise ModelError(f"{path}: OpenVINO cannot read it ({str(e).splitlines()[0]})") from e
        self.info = read_openvino_info(model, path, names_file)
        self.precision = "bf16" if half else "f32"
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self.precision}
        if threads := cpu_threads():
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self._output = self.compiled.output(0)
        shape = model.inputs[0].get_partial_shape()
        self._static = shape.is_static
        self._shape = [d.get_length() for d in shape] if shape.is_static else None

    @property
    def batch_size(self) -> int | None:
        return self._shape[0] if self._shape else None

    @property
    def input_hw(self) -> tuple[int, int] | None:
        return (self._shape[2], self._shape[3]) if self._shape else None

    @property
    def input_dtype(self) -> type:
        return np.float32

    def forward(self, batch: np.ndarray) -> np.ndarray:
        out = self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.array(out[self._output], copy=True)  # the request's buffer is reused by the next call

    def describe(self) -> str:
        precision = self.info.metadata.get("precision", "fp32")
        return f"OpenVINO {precision} IR on CPU ({self.precision} inference)"
