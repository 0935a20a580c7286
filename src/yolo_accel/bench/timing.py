"""Timing and memory measurement: warm-up excluded, many iterations, robust statistics."""

from __future__ import annotations

import threading

from ..nvml import nvml_device_used, nvml_process_memory
from ..speed import Stats, measure

__all__ = ["PeakRSS", "Stats", "measure", "nvml_device_used", "nvml_process_memory"]


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
