"""CUDA graph capture per static input shape, around any device-tensor -> device-tensor callable."""

from __future__ import annotations

import time
from collections.abc import Callable


def module_tensors(module) -> list:
    """Tensors a module holds outside its parameters and buffers (YOLO heads cache grids and anchors so).

    A captured graph reads those tensors' memory; a later call at another shape may replace them,
    and the old memory must stay alive while the graph that reads it exists.
    """
    import torch

    out = []
    if module is None:
        return out
    for m in module.modules():
        for v in vars(m).values():
            if isinstance(v, torch.Tensor):
                out.append(v)
            elif isinstance(v, (list, tuple)):
                out.extend(t for t in v if isinstance(t, torch.Tensor))
    return out


class CudaGraphs:
    """Replays one captured CUDA graph per (shape, dtype) of the input; captures on first sight.

    A replay launches the whole network as one graph: no per-kernel launch cost on the CPU, which
    is what limits small models at batch 1. All of the graphs share one memory pool (as
    torch.compile's CUDA graph trees do): a graph's activations are dead between its replays, so the
    graph for every batch size from 1 to 128 costs little more than the largest one alone, where a
    pool per graph roughly doubled it. The price: an output lives in the pool, and the next replay of
    any shape may overwrite it, so a caller copies out what it keeps before the next call (the
    detector's launch does, on the same CUDA stream, so in order). Replays must not run concurrently
    (one thread launches them).
    """

    def __init__(self, fn: Callable, keep_alive: Callable[[], list] = list, warmup: int = 3):
        import torch

        self._torch = torch
        self._fn = fn
        self._keep_alive = keep_alive
        self._warmup = warmup
        self._graphs: dict[tuple, tuple] = {}
        self.pool = None  # the memory pool of the first capture, shared by the later ones
        self.capture_seconds = 0.0
        self.frozen = False
        self.eager_shapes: set[tuple] = set()

    def freeze(self) -> None:
        """Capture no more graphs: a shape first seen from now on runs eagerly.

        A capture fails ("operation failed due to a previous error during capture"), even in
        thread-local capture mode, while another thread of the process opens, rewinds or closes an
        NVDEC decoder, as a serve engine does whenever a camera joins or a file loops (PyNvVideoCodec
        does part of that work in threads of its own: a lock around our calls into it did not stop the
        failures). So an engine captures every batch size it will use before its decoders open, then
        freezes.
        """
        self.frozen = True

    def __call__(self, x):
        key = (tuple(x.shape), x.dtype, x.device)
        entry = self._graphs.get(key)
        if entry is None:
            if self.frozen:
                self.eager_shapes.add(key[0])
                return self._fn(x)
            entry = self._graphs[key] = self._capture(x)
        graph, static_in, static_out, _ = entry
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _capture(self, x):
        torch = self._torch
        t0 = time.perf_counter()
        static_in = x.clone()
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(self._warmup):  # builds lazy state (grids, cuDNN plans) outside the capture
                self._fn(static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (decoders, another stream's engine) may use CUDA during the capture
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"), torch.inference_mode():
            static_out = self._fn(static_in)
        torch.cuda.current_stream(x.device).synchronize()
        if self.pool is None:
            self.pool = graph.pool()
        self.capture_seconds += time.perf_counter() - t0
        return graph, static_in, static_out, self._keep_alive()

    @property
    def shapes(self) -> list[tuple]:
        return [k[0] for k in self._graphs]

    def clear(self) -> None:
        self._graphs.clear()
        self.pool = None
