"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._deps import available, require
from ..device import Device, cpu_threads
from ..errors import DeviceError, ModelError, SettingsError
from .base import Backend

_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass
class OrtOptions:
    """ONNX Runtime session and provider settings (each one a CLI option of the same name)."""

    intra_op_threads: int = 0  # 0: ONNX Runtime's default (one per physical core)
    inter_op_threads: int = 0
    graph_optimization: str = "all"
    # CUDA execution provider
    gpu_mem_limit_gb: float = 2.0
    arena_extend_strategy: str = "kNextPowerOfTwo"
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    do_copy_in_default_stream: bool = True
    # TensorRT execution provider, used first on CUDA when the installed build has it
    tensorrt: bool = True
    trt_engine_cache: str | None = None
    trt_fp16: bool | None = None  # None: follow --half
    # IO binding (CUDA): inputs and outputs live in device buffers bound once, no per-run allocation;
    # in the GPU pipeline those buffers are torch tensors, shared by data pointer
    io_binding: bool = False
    # ONNX Runtime's own CUDA graph (needs IO binding, one input shape, every node on the CUDA provider)
    cuda_graph: bool = False

    def check(self, device: Device) -> None:
        if (self.io_binding or self.cuda_graph) and not device.is_cuda:
            raise SettingsError(
                "IO binding and CUDA graphs need --device cuda (on the CPU inputs already live in host memory)"
            )
        if self.cuda_graph and not self.io_binding:
            raise SettingsError("ONNX Runtime's CUDA graph needs IO binding (the -iobind variant)")

    def cuda_provider_options(self, device: Device) -> dict[str, str]:
        opts = {
            "device_id": str(device.index),
            "arena_extend_strategy": self.arena_extend_strategy,
            "gpu_mem_limit": str(int(self.gpu_mem_limit_gb * (1 << 30))),
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            "do_copy_in_default_stream": "1" if self.do_copy_in_default_stream else "0",
        }
        if self.cuda_graph:
            opts["enable_cuda_graph"] = "1"
        return opts

    def tensorrt_provider_options(self, device: Device, half: bool) -> dict[str, str]:
        from ..assets import cache_dir

        cache = Path(self.trt_engine_cache) if self.trt_engine_cache else cache_dir() / "trt-ep"
        cache.mkdir(parents=True, exist_ok=True)
        fp16 = half if self.trt_fp16 is None else self.trt_fp16
        return {
            "device_id": str(device.index),
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": "True",
            "trt_fp16_enable": "True" if fp16 else "False",
        }


def tensorrt_libraries_present() -> bool:
    """True when libnvinfer loads. onnxruntime-gpu lists the TensorRT provider even without it, and its
    fall-back retry then drops every provider option we set, so we only ask for TensorRT when it can load."""
    import ctypes

    for name in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so", "nvinfer_10.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


class OnnxRuntimeBackend(Backend):
    """Runs an ONNX file with ONNX Runtime and reports which provider really runs it."""

    name = "onnxruntime"

    def __init__(
        self,
        model_path,
        device: Device,
        half: bool = False,
        ort_options: OrtOptions | None = None,
        names_file=None,
        **_: object,
    ):
        ort = require("onnxruntime")
        from ..model import read_onnx

        self._ort = ort
        self.device = device
        self.options = opts = ort_options or OrtOptions()
        opts.check(device)
        proto, self.info = read_onnx(model_path, names_file)
        del proto
        # an FP16 ONNX file decides the input dtype, not the flag
        self.half = self.info.half
        if half and not self.info.half:
            raise SettingsError(
                f"{self.info.path} is an FP32 ONNX file; --half needs an FP16 export "
                "(yolo-accel export MODEL.pt --format onnx --half)"
            )
        available = ort.get_available_providers()
        if device.is_cuda:
            if "CUDAExecutionProvider" not in available:
                raise DeviceError(
                    f"--device {device} asked for, but this ONNX Runtime ({ort.__version__}) has no CUDA "
                    f"execution provider (available: {', '.join(available)}): "
                    "pip uninstall onnxruntime && pip install onnxruntime-gpu"
                )
            if hasattr(ort, "preload_dlls"):  # CUDA / cuDNN from the nvidia-* wheels, as torch loads them
                with contextlib.suppress(Exception):
                    ort.preload_dlls()
            providers: list = []
            if opts.tensorrt and "TensorrtExecutionProvider" in available and tensorrt_libraries_present():
                providers.append(("TensorrtExecutionProvider", opts.tensorrt_provider_options(device, half)))
            providers.append(("CUDAExecutionProvider", opts.cuda_provider_options(device)))
            providers.append("CPUExecutionProvider")
        else:
            providers = ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        level = _OPT_LEVELS.get(opts.graph_optimization.lower())
        if level is None:
            raise SettingsError(
                f"unknown graph optimisation level {opts.graph_optimization!r}; use one of {', '.join(_OPT_LEVELS)}"
            )
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        so.intra_op_num_threads = cpu_threads(int(opts.intra_op_threads))
        so.inter_op_num_threads = int(opts.inter_op_threads)
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.info.path), sess_options=so, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeException types
            raise ModelError(f"{self.info.path}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})") from e
        self.providers = self.session.get_providers()
        if device.is_cuda and "CUDAExecutionProvider" in self.providers:
            got = self.session.get_provider_options().get("CUDAExecutionProvider", {})
            want = opts.cuda_provider_options(device)
            if got.get("cudnn_conv_algo_search") != want["cudnn_conv_algo_search"]:
                raise DeviceError(
                    "ONNX Runtime dropped the CUDA provider options (a provider failed and it retried "
                    "with defaults); run `yolo-accel doctor`"
                )
        if device.is_cuda and self.providers[0] not in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            # ONNX Runtime only warns when the CUDA provider fails to load; we refuse instead
            raise DeviceError(
                f"the CUDA execution provider failed to load (session runs on "
                f"{', '.join(self.providers)}); check CUDA/cuDNN libraries with `yolo-accel doctor`"
            )
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name
        self._binding = None  # (shape, input OrtValue, IOBinding), rebuilt when the batch shape changes
        self._device_bindings: dict[tuple, tuple] = {}  # shape -> (IOBinding, torch input, torch output)

    @property
    def prefers_fixed_shape(self) -> bool:
        return self.device.is_cuda

    def _bound(self, x: np.ndarray):
        """An IOBinding with the input copied into a device buffer and the output left on the device."""
        if self._binding is None or self._binding[0] != x.shape:
            ov = self._ort.OrtValue.ortvalue_from_numpy(x, "cuda", self.device.index)
            binding = self.session.io_binding()
            binding.bind_ortvalue_input(self._input, ov)
            binding.bind_output(self._output, "cuda", self.device.index)
            self._binding = (x.shape, ov, binding)
        else:
            self._binding[1].update_inplace(x)
        return self._binding[2]

    def _torch_buffers(self) -> bool:
        """IO binding onto torch tensors (always, when torch is installed; needed for CUDA graphs)."""
        if self.options.cuda_graph and not available("torch"):
            raise SettingsError("ONNX Runtime's CUDA graph in yolo-accel needs torch for its device buffers")
        return self.device_io and available("torch")

    def model_runner(self, batch: np.ndarray):
        x = np.ascontiguousarray(batch, dtype=self.input_dtype)
        if not self.options.io_binding:
            return lambda: self.session.run([self._output], {self._input: x})
        if self._torch_buffers():
            import torch

            xt = torch.from_numpy(x).to(self.device_torch)
            binding, static_in, _ = self._device_binding(xt)
            static_in.copy_(xt)
            torch.cuda.current_stream(xt.device).synchronize()
            return lambda: self.session.run_with_iobinding(binding)
        binding = self._bound(x)
        return lambda: self.session.run_with_iobinding(binding)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=self.input_dtype)
        if self._torch_buffers():
            import torch

            return self.forward_device(torch.from_numpy(x)).float().cpu().numpy()
        if self.options.io_binding:
            binding = self._bound(x)
            self.session.run_with_iobinding(binding)
            return np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)
        try:
            (y,) = self.session.run([self._output], {self._input: x})
        except Exception as e:
            raise ModelError(
                f"{self.info.path}: ONNX Runtime failed on input {x.shape} {x.dtype} ({str(e).splitlines()[0]})"
            ) from e
        return np.asarray(y, dtype=np.float32)

    @property
    def device_io(self) -> bool:
        return self.device.is_cuda and self.options.io_binding

    def _device_binding(self, x):
        """IO binding onto torch tensors of this input shape: input and output buffers bound once."""
        import torch

        entry = self._device_bindings.get(tuple(x.shape))
        if entry is not None:
            return entry
        if self.options.cuda_graph and self._device_bindings:
            raise SettingsError(
                "ONNX Runtime's CUDA graph takes one input shape per session; use one batch size "
                "(and --square) or leave out the -graph variant"
            )
        static_in = torch.empty_like(x)
        dtype = np.float16 if self.half else np.float32
        out_meta = self.session.get_outputs()[0]
        declared = list(out_meta.shape)
        out_dtype = torch.float16 if "float16" in out_meta.type else torch.float32
        if all(isinstance(d, int) for d in declared[1:]):
            out_shape = [int(x.shape[0]), *declared[1:]]
        elif self.options.cuda_graph:
            # a probe run would be the run that ONNX Runtime captures, with the probe's buffers
            raise SettingsError(
                f"{self.info.path.name}: ONNX Runtime's CUDA graph needs an export with a fixed height and width"
            )
        else:  # one run with ONNX Runtime's own output buffer tells the output shape
            probe = self.session.io_binding()
            probe.bind_input(self._input, "cuda", self.device.index, dtype, list(x.shape), static_in.data_ptr())
            probe.bind_output(self._output, "cuda", self.device.index)
            torch.cuda.current_stream(x.device).synchronize()
            self.session.run_with_iobinding(probe)
            out_shape = list(probe.get_outputs()[0].shape())
        static_out = torch.empty(out_shape, dtype=out_dtype, device=x.device)
        binding = self.session.io_binding()
        binding.bind_input(self._input, "cuda", self.device.index, dtype, list(x.shape), static_in.data_ptr())
        binding.bind_output(
            self._output,
            "cuda",
            self.device.index,
            np.float16 if out_dtype == torch.float16 else np.float32,
            list(static_out.shape),
            static_out.data_ptr(),
        )
        entry = self._device_bindings[tuple(x.shape)] = (binding, static_in, static_out)
        return entry

    def forward_device(self, batch):
        import torch

        x = batch.to(self.device_torch, dtype=torch.float16 if self.half else torch.float32)
        binding, static_in, static_out = self._device_binding(x)
        static_in.copy_(x)
        # ONNX Runtime runs on its own stream: torch's writes must be done before it reads
        torch.cuda.current_stream(x.device).synchronize()
        self.session.run_with_iobinding(binding)  # returns when its stream is done
        return static_out

    @property
    def reuses_output(self) -> bool:
        return self.device_io  # outputs bound once, written by every run

    @property
    def device_torch(self):
        import torch

        return torch.device(str(self.device))

    def synchronize(self) -> None:
        if self.device_io:
            import torch

            torch.cuda.synchronize(self.device_torch)

    def describe(self) -> str:
        io = (", IO binding" if self.options.io_binding else "") + (", CUDA graph" if self.options.cuda_graph else "")
        return f"onnxruntime {self._ort.__version__} [{self.providers[0]}{io}]"

    def close(self) -> None:
        self._device_bindings.clear()
        self._binding = None
        self.session = None
