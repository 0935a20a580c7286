"""Throughput mode: frames from any number of producers gathered into batches for one Detector.

A batch closes when it holds `max_batch` frames or when its first frame has waited `max_wait_ms`.
On the GPU pipeline two threads and two CUDA streams overlap the work: the gather thread uploads
the next batch on an upload stream while the compute thread runs the current one on a compute
stream (an event orders each batch's compute after its upload). On the CPU one thread runs batches.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from .detections import Detections
from .errors import SettingsError

_STOP = object()


@dataclass
class BatchStats:
    """What the batcher did: batches run, frames, and the mean batch size."""

    batches: int = 0
    frames: int = 0
    busy_s: float = 0.0  # compute thread time spent on batches

    @property
    def mean_batch(self) -> float:
        return self.frames / self.batches if self.batches else 0.0

    def to_dict(self) -> dict:
        return {"batches": self.batches, "frames": self.frames, "mean_batch": round(self.mean_batch, 2)}


class BatchingDetector:
    """Wraps a Detector; `submit(frame)` returns a Future of its Detections.

    Thread-safe: any number of threads (video streams) may submit. `detect_batch(frames)` submits
    a list and waits, with the same return shape as `Detector.detect_batch`, so the video pipeline
    takes either.
    """

    def __init__(self, detector, max_batch: int = 32, max_wait_ms: float = 4.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise SettingsError(f"--max-batch must be >= 1 and --max-wait-ms >= 0 (got {max_batch}, {max_wait_ms})")
        self.detector = detector
        self.max_batch, self.max_wait_s = int(max_batch), max_wait_ms / 1000
        self.stats = BatchStats()
        self._inbox: queue.Queue = queue.Queue()
        self._ready: queue.Queue = queue.Queue(maxsize=2)  # uploaded batches waiting for compute
        self._gpu = bool(getattr(detector, "gpu_ops", False))
        self._streams = None
        if self._gpu:
            import torch

            dev = torch.device(str(detector.backend.device))
            self._streams = (torch.cuda.Stream(dev), torch.cuda.Stream(dev))  # upload, compute
        self._stage_ms: dict[str, list[float]] = {"pre": [], "infer": [], "post": []}
        self._lock = threading.Lock()
        self._gather = threading.Thread(target=self._gather_loop, name="batch-gather", daemon=True)
        self._compute = threading.Thread(target=self._compute_loop, name="batch-compute", daemon=True)
        self._closed = False
        self._gather.start()
        self._compute.start()

    @property
    def names(self):
        return self.detector.names

    def describe(self) -> str:
        return f"{self.detector.describe()}, batched (max {self.max_batch}, wait {self.max_wait_s * 1000:g} ms)"

    # -- producers ------------------------------------------------------------------------------
    def submit(self, frame) -> Future:
        """Queue one BGR uint8 frame; the Future resolves to its Detections."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        fut: Future = Future()
        self._inbox.put((frame, fut))
        return fut

    def detect_batch(self, frames: Sequence) -> tuple[list[Detections], dict[str, float]]:
        """Submit frames and wait for all; per-image stage times are the recent batches' averages."""
        futures = [self.submit(f) for f in frames]
        dets = [f.result() for f in futures]
        return dets, self.stage_ms()

    def stage_ms(self) -> dict[str, float]:
        """Per-image pre / infer / post ms, averaged over the last few batches."""
        with self._lock:
            return {k: (sum(v[-8:]) / len(v[-8:]) if v else 0.0) for k, v in self._stage_ms.items()}

    # -- the two threads --------------------------------------------------------------------------
    def _next_batch(self):
        first = self._inbox.get()
        if first is _STOP:
            return None
        items = [first]
        deadline = time.perf_counter() + self.max_wait_s
        while len(items) < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                item = self._inbox.get(timeout=left) if left > 0 else self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._inbox.put(_STOP)  # finish this batch, stop on the next call
                break
            items.append(item)
        return items

    def _gather_loop(self) -> None:
        while True:
            items = self._next_batch()
            if items is None:
                self._ready.put(_STOP)
                return
            frames = [f for f, _ in items]
            futures = [fut for _, fut in items]
            try:
                if self._gpu:
                    import torch

                    t0 = time.perf_counter_ns()
                    upload = self._streams[0]
                    tensors = self.detector.upload(frames, stream=upload)
                    done = torch.cuda.Event()
                    done.record(upload)
                    # the upload's host time counts as pre-processing; the wait in the queue does not
                    self._ready.put((tensors, done, futures, time.perf_counter_ns() - t0))
                else:
                    self._ready.put((frames, None, futures, 0))
            except BaseException as e:  # the frames' owners get the error, the batcher lives on
                for fut in futures:
                    fut.set_exception(e)

    def _compute_loop(self) -> None:
        while True:
            job = self._ready.get()
            if job is _STOP:
                return
            frames, done, futures, upload_ns = job
            t1 = time.perf_counter()
            try:
                if self._gpu:
                    import torch

                    compute = self._streams[1]
                    with torch.cuda.stream(compute):
                        compute.wait_event(done)
                        for t in frames:  # the upload stream's memory is now also used by this stream
                            t.record_stream(compute)
                        dets, per = self.detector.detect_device(frames, time.perf_counter_ns() - upload_ns)
                else:
                    dets, per = self.detector.detect_batch(frames)
            except BaseException as e:
                for fut in futures:
                    fut.set_exception(e)
                continue
            with self._lock:
                self.stats.batches += 1
                self.stats.frames += len(frames)
                self.stats.busy_s += time.perf_counter() - t1
                for k, v in per.items():
                    self._stage_ms[k].append(v)
                    del self._stage_ms[k][:-64]
            for fut, d in zip(futures, dets):
                fut.set_result(d)

    def close(self) -> None:
        """Finish queued frames, then stop the threads."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put(_STOP)
        self._gather.join()
        self._compute.join()

    def __enter__(self) -> BatchingDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
