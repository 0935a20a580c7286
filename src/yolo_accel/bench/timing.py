"""Timing and memory measurement: warm-up excluded, many iterations, robust statistics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Stats:
    """Summary of a latency sample in milliseconds."""

    n: int
    mean: float
    std: float
    median: float
    p95: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, values_ms) -> Stats:
        a = np.asarray(values_ms, np.float64)
        if a.size == 0:
            raise ValueError("no samples")
        return cls(
            int(a.size),
            float(a.mean()),
            float(a.std()),
            float(np.median(a)),
            float(np.percentile(a, 95)),
            float(np.percentile(a, 99)),
            float(a.min()),
            float(a.max()),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def measure(
    fn: Callable[[], object],
    warmup: int = 10,
    iters: int = 100,
    duration_s: float | None = None,
    sync: Callable[[], None] | None = None,
    cuda_events: bool = False,
) -> list[float]:
    """Run `fn` `warmup` times untimed, then time up to `iters` runs (stopping early after `duration_s`).

    CPU work is timed with perf_counter_ns; with cuda_events=True each run is bracketed by CUDA
    events on the current stream (the GPU's own clock), after `sync`.
    """
    for _ in range(max(0, warmup)):
        fn()
    if sync:
        sync()
    times: list[float] = []
    deadline = None if duration_s is None else time.perf_counter() + duration_s
    if cuda_events:
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(max(1, iters)):
        if cuda_events:
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(float(start.elapsed_time(end)))
        else:
            t0 = time.perf_counter_ns()
            fn()
            if sync:
                sync()
            times.append((time.perf_counter_ns() - t0) / 1e6)
        if deadline is not None and time.perf_counter() > deadline and len(times) >= 3:
            break
    return times


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 20 ms by a thread)."""

    def __init__(self, interval_s: float = 0.02):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRSS:
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def nvml_process_memory(device_index: int = 0) -> int | None:
    """GPU memory this process holds on the device, from NVML (None where NVML cannot tell)."""
    try:
        import os

        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if p.pid == os.getpid() and p.usedGpuMemory is not None:
                return int(p.usedGpuMemory)
        return None
    except Exception:  # no NVML, no permission, or a container that hides pids
        return None


def nvml_device_used(device_index: int = 0) -> int | None:
    """Memory in use on the whole device (a fallback where per-process numbers are hidden)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(device_index)).used)
    except Exception:
        return None
