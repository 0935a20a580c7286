"""Bounded statistics for long video runs: per-stage timing histograms and a memory monitor.

A stream may run for hours, so nothing here keeps one value per frame: timings go into a fixed
log-scale histogram (mean exact, percentiles to within about 2 %), memory samples into a list that
is thinned when it grows long.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

STAGES = ("decode", "pre", "infer", "post", "track", "count", "annotate", "encode")

_BINS_PER_DECADE = 100
_LOW_MS = 1e-3  # the first bin starts at 1 microsecond
_N_BINS = 8 * _BINS_PER_DECADE  # up to 100 s


@dataclass
class Histogram:
    """Count, sum and a log-scale histogram of values in ms (pickles to a few kB)."""

    count: int = 0
    total: float = 0.0
    bins: np.ndarray = field(default_factory=lambda: np.zeros(_N_BINS + 1, np.int64))

    def add(self, ms: float) -> None:
        self.count += 1
        self.total += ms
        i = int((math.log10(ms / _LOW_MS)) * _BINS_PER_DECADE) if ms > _LOW_MS else 0
        self.bins[min(max(i, 0), _N_BINS)] += 1

    def merge(self, other: Histogram) -> None:
        self.count += other.count
        self.total += other.total
        self.bins += other.bins

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def below(self, edges_ms) -> list[int]:
        """How many values lie under each edge (Prometheus' cumulative buckets), to the bins' 2 %."""
        cum = np.concatenate([[0], np.cumsum(self.bins)])
        return [int(cum[min(max(round(math.log10(e / _LOW_MS) * _BINS_PER_DECADE), 0), _N_BINS + 1)]) for e in edges_ms]

    def percentile(self, q: float) -> float:
        """The upper edge of the bin holding the q-th percentile."""
        if not self.count:
            return 0.0
        i = int(np.searchsorted(np.cumsum(self.bins), math.ceil(q / 100 * self.count)))
        return _LOW_MS * 10 ** ((i + 1) / _BINS_PER_DECADE)


class StageTimes:
    """One histogram per pipeline stage; `table()` is the summary's per-stage table."""

    def __init__(self):
        self.stages: dict[str, Histogram] = {}

    def add(self, stage: str, ms: float) -> None:
        h = self.stages.get(stage)
        if h is None:
            h = self.stages[stage] = Histogram()
        h.add(ms)

    def merge(self, other: StageTimes) -> None:
        for stage, h in list(other.stages.items()):  # a copy: `other` may be growing in another thread
            mine = self.stages.get(stage)
            if mine is None:
                self.stages[stage] = Histogram(h.count, h.total, h.bins.copy())
            else:
                mine.merge(h)

    def table(self) -> list[dict]:
        means = {s: self.stages[s].mean for s in STAGES if s in self.stages and self.stages[s].count}
        total = sum(means.values()) or 1.0
        return [
            {"stage": s, "mean_ms": means[s], "p95_ms": self.stages[s].percentile(95), "share": means[s] / total}
            for s in STAGES
            if s in means
        ]


def _gpu_probe(device_index: int | None):
    """A function returning (GPU memory MB of this process or the caching allocator, GPU %, decoder %), or None."""
    if device_index is None:
        return None
    try:
        import torch
    except ImportError:
        return None
    from ..nvml import nvml_process_memory

    nvml = None
    try:
        import pynvml

        pynvml.nvmlInit()
        nvml = pynvml.nvmlDeviceGetHandleByIndex(device_index)
    except Exception:  # no NVML (no driver, no nvidia-ml-py): the allocator's figure alone
        nvml = None

    def probe() -> tuple[float, float | None, float | None]:
        mem = torch.cuda.memory_reserved(device_index) / 2**20
        util = dec = None
        if nvml is not None:
            with contextlib.suppress(Exception):
                util = float(pynvml.nvmlDeviceGetUtilizationRates(nvml).gpu)
                dec = float(pynvml.nvmlDeviceGetDecoderUtilization(nvml)[0])
            # NVML's figure includes what the allocator does not see (NVDEC surfaces, CUDA context)
            used = nvml_process_memory(device_index)
            if used:
                mem = used / 2**20
        return mem, util, dec

    return probe


class MemoryMonitor:
    """Samples host memory (this process and its workers) and GPU memory every `interval_s` in a thread.

    Samples are [seconds since start, main RSS MB, workers' RSS MB, GPU MB, GPU %, decoder %]
    (the GPU columns are None without CUDA). When more than `max_samples` pile up, every other one
    is dropped and the interval doubles, so a run of any length keeps a bounded curve.
    """

    def __init__(self, interval_s: float = 1.0, gpu_index: int | None = None, max_samples: int = 2000):
        import psutil

        self.interval_s, self.max_samples = interval_s, max_samples
        self._proc = psutil.Process()
        self._children: list = []
        self._gpu = _gpu_probe(gpu_index)
        self.samples: list[list] = []
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="memory-monitor", daemon=True)

    def watch(self, pids: list[int]) -> None:
        import psutil

        for pid in pids:
            with contextlib.suppress(psutil.Error):
                self._children.append(psutil.Process(pid))

    def start(self) -> MemoryMonitor:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def sample(self) -> list:
        import psutil

        rss = self._proc.memory_info().rss / 2**20
        workers = 0.0
        for c in self._children:
            with contextlib.suppress(psutil.Error):
                workers += c.memory_info().rss / 2**20
        gpu, util, dec = self._gpu() if self._gpu else (None, None, None)
        return [round(time.perf_counter() - self._t0, 3), round(rss, 1), round(workers, 1), gpu, util, dec]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(self.sample())
            if len(self.samples) > self.max_samples:
                self.samples = self.samples[::2]
                self.interval_s *= 2

    def stop(self) -> dict:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return memory_report(self.samples, self.interval_s)


def memory_report(samples: list[list], interval_s: float, warmup_fraction: float = 0.2) -> dict:
    """The curve and its drift after warm-up (the first `warmup_fraction` of the run, at least one sample).

    drift = (largest - smallest) / smallest over the samples after warm-up, in percent: "flat within
    5 %" means drift <= 5 for host memory (main + workers) and for GPU memory.
    """
    columns = ["t_s", "rss_main_mb", "rss_workers_mb", "gpu_mb", "gpu_util_pct", "decoder_util_pct"]
    out: dict = {"columns": columns, "samples": samples, "interval_s": interval_s}
    if len(samples) < 3:
        return {**out, "warmup_s": None, "rss_drift_pct": None, "gpu_drift_pct": None}
    skip = max(1, int(len(samples) * warmup_fraction))
    after = samples[skip:]

    def drift(values: list) -> float | None:
        values = [v for v in values if v is not None]
        if not values or min(values) <= 0:
            return None
        return round(100 * (max(values) - min(values)) / min(values), 2)

    def mean(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return round(float(np.mean(values)), 1) if values else None

    return {
        **out,
        "warmup_s": samples[skip][0],
        "rss_drift_pct": drift([s[1] + s[2] for s in after]),
        "gpu_drift_pct": drift([s[3] for s in after]),
        "gpu_util_mean_pct": mean([s[4] for s in after]),
        "decoder_util_mean_pct": mean([s[5] for s in after]),
    }
