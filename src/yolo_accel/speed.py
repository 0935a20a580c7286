"""One timing harness for `bench` and `validate`: how fast a Detector runs, measured the way it runs
deployed (GPU pipeline and device buffers where the backend takes them), model-only and end to end.

Both commands call `time_detector`, so a speedup that `validate` gates on is the speedup `bench`
reports for the same settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

MIN_TIMED = 30  # fewer timed runs than this and a median says little: reports say so
NOISY_CV = 0.10  # a spread (std / mean) above this: the machine was busy or clocks moved; reports say so


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

    @property
    def cv(self) -> float:
        """Coefficient of variation: std / mean."""
        return self.std / self.mean if self.mean > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "cv": round(self.cv, 4)}


def spread_note(stats: Stats, what: str) -> str | None:
    """A warning when a sample spreads too much to trust its median to a few percent, else None."""
    if stats.cv <= NOISY_CV:
        return None
    return (
        f"{what} times spread widely (coefficient of variation {stats.cv:.0%}, over {NOISY_CV:.0%}): "
        "the machine was busy or its clocks changed; run again with more --iters"
    )


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


@dataclass
class SpeedSettings:
    warmup: int = 10
    iters: int = 100  # model-only runs (at least 3, stopping after duration_s)
    duration_s: float | None = 20.0
    e2e_iters: int = 100  # end-to-end calls, within half of duration_s


@dataclass
class Speed:
    """Latency of one batch size: model-only and end to end (per batch, ms), and the end-to-end stages."""

    batch: int
    model: Stats
    e2e: Stats
    stages: dict[str, float] = field(default_factory=dict)  # medians per batch: pre, infer, post

    @property
    def enough(self) -> bool:
        return self.model.n >= MIN_TIMED and self.e2e.n >= MIN_TIMED


def time_detector(det, frames: list[np.ndarray], s: SpeedSettings) -> Speed:
    """Model-only: the prepared batch already where the backend wants it (`Backend.model_runner`),
    timed with CUDA events for torch and compiled on the GPU, perf_counter_ns otherwise, after warm-up.
    End to end: decoded uint8 frames in host memory -> Detections through `Detector.detect_batch`
    (the GPU pipeline where the detector uses it), two untimed calls first."""
    backend = det.backend
    on_cuda = bool(getattr(getattr(backend, "device", None), "is_cuda", False))
    batch, _ = det.preprocess(frames)
    run = backend.model_runner(batch)
    cuda_events = on_cuda and backend.name in ("torch", "compiled")
    model_ms = measure(run, s.warmup, s.iters, s.duration_s, sync=backend.synchronize, cuda_events=cuda_events)
    b = len(frames)
    pre, inf, post = [], [], []
    deadline = time.perf_counter() + (s.duration_s or 1e9) / 2
    for i in range(max(3, s.e2e_iters) + 2):
        _, per = det.detect_batch(frames)  # per-image stage times; reported per batch
        if i >= 2:
            pre.append(per["pre"] * b)
            inf.append(per["infer"] * b)
            post.append(per["post"] * b)
            if len(pre) >= 3 and time.perf_counter() > deadline:
                break
    e2e = Stats.of(np.asarray(pre) + np.asarray(inf) + np.asarray(post))
    stages = {"pre": Stats.of(pre).median, "infer": Stats.of(inf).median, "post": Stats.of(post).median}
    return Speed(b, Stats.of(model_ms), e2e, stages)
