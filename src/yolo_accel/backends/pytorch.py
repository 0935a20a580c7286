"""PyTorch backends: eager `.pt` (the reference, with optional FP16, channels_last, CUDA graphs and
torch.compile) and AOTInductor `.pt2` packages (see export/compiled.py)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from .._deps import require
from ..device import Device, check_torch_cuda, cpu_threads
from ..errors import SettingsError
from .base import Backend


@dataclass
class TorchOptions:
    """Speed settings of the torch backends; none of them changes outputs beyond float rounding."""

    channels_last: bool = False  # NHWC memory format (faster convolutions with FP16 on tensor cores)
    cuda_graph: bool = False  # capture one CUDA graph per input shape and replay it
    compile: bool = False  # torch.export + torch.compile (inductor) per input shape; kernels cached on disk
    compile_mode: str = "default"  # torch.compile mode ("default", "max-autotune-no-cudagraphs", ...)

    def check(self, device: Device) -> None:
        if self.cuda_graph and not device.is_cuda:
            raise SettingsError("--cuda-graph needs --device cuda")


def inductor_cache() -> None:
    """Point inductor's on-disk cache into yolo-accel's cache (unless the user chose one): runs reuse it."""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is not None:
        try:
            from torch._inductor.runtime.cache_dir_utils import default_cache_dir
        except ImportError:  # an older torch: take any value as the user's choice
            return
        # torch writes its own default into the environment the first time it looks for the
        # cache (often at import): that value is not a choice the user made
        if os.path.abspath(current) != os.path.abspath(default_cache_dir()):
            return
    from ..assets import cache_dir

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir() / "inductor")


def inductor_settings():
    """Inductor's config for our compiles (a context manager): one compile thread unless
    TORCHINDUCTOR_COMPILE_THREADS says otherwise.

    Why one thread: by default inductor starts a pool of compile worker processes (one per core)
    that outlives the compile. On the H100 machine (16 cores), end-to-end calls after a compile in
    the same process ran at a median 1.59 ms, p95 4.37 ms with the pool, and 1.29 / 1.45 ms without
    it (YOLOv8n, batch 1, 1080p; one run each). Why the pool slows the host side is not established.
    Compiling a nano model on one thread took longer there (about 11-22 s more per shape, from
    caches that were not equally empty).
    """
    import contextlib

    import torch._inductor.config as config

    if "TORCHINDUCTOR_COMPILE_THREADS" in os.environ:
        return contextlib.nullcontext()
    return config.patch(compile_threads=1)


class _TorchRunner(Backend):
    """What the eager and the AOTInductor backends share: tensors in, tensors out, optional CUDA graphs."""

    _fn = None  # device tensor -> raw output tensor

    def _setup(self, device: Device, half: bool, options: TorchOptions | None):
        self._torch = torch = require("torch")
        if (threads := cpu_threads()) and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        check_torch_cuda(device)
        self.options = options or TorchOptions()
        self.options.check(device)
        self.device, self.half = device, half
        self._dev = torch.device(str(device))
        self._graphs = None
        self._setup_s: dict[str, float] = {}
        self._first_calls: set[tuple] = set()

    def _raw(self, x):
        """One eager (or compiled) call; the head's raw output only."""
        y = self._fn(x)
        return y[0] if isinstance(y, (list, tuple)) else y

    def _prepare(self, x):
        torch = self._torch
        x = x.to(self._dev, dtype=torch.float16 if self.half else torch.float32, non_blocking=True)
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def device_io(self) -> bool:
        return self.device.is_cuda

    @property
    def prefers_fixed_shape(self) -> bool:
        # every new shape is a new CUDA graph capture or a recompilation
        return self.options.cuda_graph or self.options.compile

    @property
    def reuses_output(self) -> bool:
        return self.options.cuda_graph  # a replay writes the graph's static output

    def forward_device(self, batch):
        torch = self._torch
        x = self._prepare(batch)
        n = x.shape[0]
        if self.prefers_fixed_shape and n & (n - 1):
            # every batch size is a graph capture or a compilation (seconds, and memory for each):
            # a batch is padded up to a power of two, so that a video engine whose batches take any
            # size from 1 to 128 makes 8 of them, not 128; the padding rows' outputs are dropped
            shape = (1 << n.bit_length(), *x.shape[1:])
            padded = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=_memory_format(x))
            padded[:n] = x
            padded[n:] = 0
            return self.forward_device(padded)[:n]
        key = (tuple(x.shape), x.dtype)
        first = key not in self._first_calls
        t0 = time.perf_counter()
        with torch.inference_mode():
            if self.options.cuda_graph:
                y = self._cuda_graphs()(x)
            else:
                y = self._raw(x)
        if first:  # compilation (torch.compile) and graph capture happen on a shape's first call
            self._first_calls.add(key)
            self.synchronize()
            self._setup_s[f"first_call_{'x'.join(map(str, key[0]))}"] = time.perf_counter() - t0
        return y

    def _cuda_graphs(self):
        if self._graphs is None:
            from .cuda_graph import CudaGraphs, module_tensors

            self._graphs = CudaGraphs(self._raw, keep_alive=lambda: module_tensors(getattr(self, "module", None)))
        return self._graphs

    def freeze_graphs(self) -> None:
        """With --cuda-graph: capture no more graphs; shapes not captured yet run eagerly (CudaGraphs.freeze)."""
        if self.options.cuda_graph:
            self._cuda_graphs().freeze()

    def forward(self, batch: np.ndarray) -> np.ndarray:
        x = self._torch.from_numpy(np.ascontiguousarray(batch))
        return self.forward_device(x).float().cpu().numpy()

    def model_runner(self, batch: np.ndarray):
        x = self._prepare(self._torch.from_numpy(np.ascontiguousarray(batch)))
        self.forward_device(x)  # compiles / captures outside the timed runs
        return lambda: self.forward_device(x)

    @property
    def setup_seconds(self) -> dict[str, float]:
        out = dict(self._setup_s)
        if self._graphs is not None:
            out["cuda_graph_capture"] = self._graphs.capture_seconds
        return out

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

    def _options_text(self) -> str:
        o = self.options
        flags = [
            f for f, on in (("FP16", self.half), ("channels_last", o.channels_last), ("CUDA graph", o.cuda_graph)) if on
        ]
        if o.compile:
            flags.append(f"torch.compile({o.compile_mode})")
        return (" " + ", ".join(flags)) if flags else ""

    def close(self) -> None:
        self._graphs = None
        self._fn = None
        if self.device.is_cuda:
            self._torch.cuda.empty_cache()


class TorchBackend(_TorchRunner):
    """Runs a `.pt` checkpoint (Ultralytics or original YOLOv5) with torch."""

    name = "torch"

    def __init__(
        self, model_path, device: Device, half: bool = False, torch_options: TorchOptions | None = None, **_: object
    ):
        from ..model import load_pytorch

        self._setup(device, half, torch_options)
        if half and not device.is_cuda:
            raise SettingsError("--half needs a CUDA device (FP16 on the CPU is slow and not validated)")
        module, self.info = load_pytorch(model_path)
        self._use(module)

    def _use(self, module) -> None:
        torch = self._torch
        self.module = module.to(self._dev)
        if self.half:
            self.module = self.module.half()
        if self.options.channels_last:  # 4-D weights only (heads keep other tensors, e.g. anchors)
            for m in self.module.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
        self._fn = self.module
        if self.options.compile:
            inductor_cache()
            self._compiled: dict[tuple, object] = {}
            self._export_copy = None
            self._fn = self._compiled_call

    def _traceable(self):
        """The export-ready copy of the model that every input shape is traced from (made once:
        the traced programs share its weights)."""
        if self._export_copy is None:
            from ..model import prepare_for_export

            graph = prepare_for_export(self.module, self.info.family, dynamic=True)
            if self.info.family == "ultralytics":
                # the Ultralytics head reads its strides as Python numbers (`.item()`) on every call:
                # from a device tensor that is a wait for the GPU, which CUDA graph capture forbids
                # (and which stalls the host's launches); from a host tensor it is free
                for head in graph.modules():
                    if isinstance(getattr(head, "stride", None), self._torch.Tensor):
                        head.stride = head.stride.cpu()
            self._export_copy = graph
        return self._export_copy

    def _compiled_call(self, x):
        """The model compiled by inductor for this input's shape, dtype and layout (built on first use).

        Why torch.export first: torch.compile of the checkpoint's own module stops at every piece of
        Python dynamo cannot trace (YOLOv5's SPPF opens a `warnings.catch_warnings()` in forward;
        the Ultralytics head turns a stride tensor into a Python number), about 20 graph breaks per
        model, after which dynamo's recompile limit sends whole layers back to eager. A non-strict
        torch.export runs that Python once and records one graph of tensor ops; compiling that graph
        gives one inductor kernel set for the whole network.
        """
        torch = self._torch
        key = (tuple(x.shape), x.dtype, x.is_contiguous(memory_format=torch.channels_last))
        fn = self._compiled.get(key)
        if fn is not None:
            return fn(x)
        from .._deps import quiet
        from ..errors import ModelError, summary

        try:
            # export wants ordinary tensors; forward_device runs under inference_mode
            with torch.inference_mode(False), torch.no_grad(), quiet():
                example = torch.zeros_like(x)
                program = torch.export.export(self._traceable(), (example,), strict=False)
            fn = torch.compile(program.module(), mode=self.options.compile_mode, dynamic=False)
            # the exported graph reads the head's strides as Python numbers (`.item()` of a constant
            # tensor, see `_traceable`): let dynamo keep them in the graph instead of breaking it there
            with torch._dynamo.config.patch(capture_scalar_outputs=True), inductor_settings():
                y = fn(x)  # compiles now
        except Exception as e:
            why = summary(e)
            raise ModelError(f"--compile could not trace or compile this model ({why}); leave out --compile") from e
        self._compiled[key] = fn
        return y

    def describe(self) -> str:
        t = self._torch
        where = t.cuda.get_device_name(self._dev) if self.device.is_cuda else "CPU"
        return f"torch {t.__version__} on {where}{self._options_text()}"

    def close(self) -> None:
        super().close()
        self.module = None


class CompiledBackend(_TorchRunner):
    """Runs an AOTInductor package (`.pt2` from `yolo-accel export --format compiled`): torch only."""

    name = "compiled"

    def __init__(
        self, model_path, device: Device, half: bool = False, torch_options: TorchOptions | None = None, **_: object
    ):
        from .aoti import load_compiled

        options = torch_options or TorchOptions()
        if options.compile or options.channels_last:
            # the package fixed its kernels and input layout when it was compiled
            raise SettingsError("a .pt2 package is compiled already; leave out --compile and --channels-last")
        if options.cuda_graph:
            # on the H100 (torch 2.11) the package's runner did work that stream capture forbids
            # ("operation not permitted when stream is capturing"), and the failed capture broke the
            # CUDA context for what came after: refuse it up front
            raise SettingsError(
                "a .pt2 package cannot be captured in a CUDA graph (torch's AOTInductor runner breaks stream "
                "capture); leave out --cuda-graph, or run the .pt with --backend torch --cuda-graph"
            )
        self._setup(device, half, options)
        t0 = time.perf_counter()
        self._fn, self.info = load_compiled(model_path, device)
        self._setup_s["load"] = time.perf_counter() - t0
        if half != self.info.half:
            # the package's input dtype is fixed at export time; the flag must agree with it
            raise SettingsError(
                f"{self.info.path.name} was compiled for {'FP16' if self.info.half else 'FP32'} input; "
                f"{'add' if self.info.half else 'leave out'} --half"
            )

    @property
    def max_batch_size(self) -> int | None:
        return int(self.info.metadata.get("max_batch", 0)) or None

    def _raw(self, x):
        limit = self.max_batch_size
        if limit and x.shape[0] > limit:
            raise SettingsError(
                f"{self.info.path.name} takes batches of 1..{limit}; use --batch {limit} or less, or export "
                f"again with --max-batch {x.shape[0]}"
            )
        return super()._raw(x)

    def describe(self) -> str:
        t = self._torch
        where = t.cuda.get_device_name(self._dev) if self.device.is_cuda else "CPU"
        return f"AOTInductor package (torch {t.__version__}) on {where}{self._options_text()}"


def from_module(module, info, device: Device, half: bool = False) -> TorchBackend:
    """A TorchBackend around an already loaded module (export's parity check reuses its model)."""
    self = TorchBackend.__new__(TorchBackend)
    self._setup(device, half, None)
    self.info = info
    self._use(module)
    return self


def _memory_format(x):
    import torch

    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
