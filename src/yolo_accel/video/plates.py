"""The plate-reading stage of a stream: which vehicle crops to read, read off the detection path.

For each tracked vehicle, a crop is read when its box is at least `min_width` pixels wide and larger
than any crop of that track read so far (a vehicle coming closer gets sharper, bigger plates), at
most `tries` times per track. A frame never waits for a read: when `queue` reads are already under
way, the crop is skipped (a later, larger one will come); on a file (`catch_up`), where nothing is
lost by reading later, the largest skipped crop of each track is kept instead and read when the
reader is free, at the latest when the stream ends. The best read per track is kept (text,
confidence, frame, crop), and each improvement is reported once as a plate record.

Where the reads run: in the engine, a reader process of their own that every worker sends its
crops to (`ReaderProcess`); RapidOCR's pre- and post-processing is Python, and in a thread of the
worker it would take the interpreter lock from the tracking of every frame. Elsewhere (the
sequential path, tests) a thread pool (`ThreadReads`). The engine hands a frame's pixels to the
workers for plates at most 10 times a second, and for a live stream only while the reader process is
idle: copying every frame for a reader that reads a few crops a second is what costs a fast stream
its FPS.
"""

from __future__ import annotations

import contextlib
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..plates.reader import VEHICLE_CLASSES, PlateRead, PlateReader, pick


@dataclass
class TrackPlate:
    text: str
    confidence: float
    frame: int
    class_name: str
    crop: np.ndarray | None = field(default=None, repr=False)


def _timed_read(reader: PlateReader, crop: np.ndarray) -> tuple[list[tuple[str, float]], float]:
    """(text, confidence) of every plate-like line of `crop`, and the ms it took."""
    t = time.perf_counter()
    try:
        found = [(r.text, r.confidence) for r in reader.candidates(crop)]
    except Exception:  # one unreadable crop must not end the reads
        found = []
    return found, (time.perf_counter() - t) * 1000


def _drain(q, timeout: float = 0.0) -> list:
    """Everything in `q` now, waiting up to `timeout` for the first item."""
    out = []
    with contextlib.suppress(queue.Empty):
        out.append(q.get(timeout=timeout) if timeout else q.get_nowait())
        while True:
            out.append(q.get_nowait())
    return out


class ThreadReads:
    """Reads in a thread pool of this process: `submit(track, crop)`, results from `poll()`."""

    def __init__(self, reader: PlateReader, workers: int = 1):
        self.reader = reader
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="plates")
        self._done: queue.SimpleQueue = queue.SimpleQueue()

    def submit(self, tid: int, crop: np.ndarray) -> None:
        self.pool.submit(lambda: self._done.put((tid, *_timed_read(self.reader, crop))))

    def poll(self, timeout: float = 0.0) -> list:
        """(track, [(text, confidence), ...], ms) of the reads finished since the last call."""
        return _drain(self._done, timeout)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class WorkerReads:
    """A worker's end of the engine's reader process: one request queue for all, answers on this
    worker's queue, sorted here by stream."""

    def __init__(self, requests, results, worker: int, waiting=None):
        self.requests, self.results, self.worker, self.waiting = requests, results, worker, waiting
        self.answers: dict[int, list] = {}

    def for_stream(self, sid: int) -> ProcessReads:
        return ProcessReads(self, sid)

    def collect(self, timeout: float = 0.0) -> None:
        for (sid, tid), found, ms in _drain(self.results, timeout):
            self.answers.setdefault(sid, []).append((tid, found, ms))


class ProcessReads:
    """One stream's reads through its worker's `WorkerReads`."""

    def __init__(self, owner: WorkerReads, sid: int):
        self.owner, self.sid = owner, sid

    def submit(self, tid: int, crop: np.ndarray) -> None:
        if self.owner.waiting is not None:
            with self.owner.waiting.get_lock():
                self.owner.waiting.value += 1
        self.owner.requests.put((self.owner.worker, (self.sid, tid), crop))

    def poll(self, timeout: float = 0.0) -> list:
        self.owner.collect(timeout)
        return self.owner.answers.pop(self.sid, [])

    def close(self) -> None:
        self.owner.answers.pop(self.sid, None)


def reader_main(requests, results: list, device: str, waiting=None) -> None:
    """The reader process: reads crops until it gets None; answers on the sending worker's queue."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine stops it when its workers are done
    reader = PlateReader(device=device)
    _timed_read(reader, np.full((48, 160, 3), 127, np.uint8))  # the first read loads the models: not a crop's
    while True:
        msg = requests.get()
        if msg is None:
            return
        worker, key, crop = msg
        results[worker].put((key, *_timed_read(reader, crop)))
        if waiting is not None:
            with waiting.get_lock():
                waiting.value -= 1


class ReaderProcess:
    """The engine's plate reader process and its queues (one back to each worker)."""

    def __init__(self, ctx, n_workers: int, device: str = "cpu", capacity: int = 1):
        self.requests = ctx.Queue()
        self.results = [ctx.Queue() for _ in range(max(1, n_workers))]
        self.waiting = ctx.Value("i", 0)  # crops sent and not yet answered
        self.capacity = capacity
        self.process = ctx.Process(
            target=reader_main,
            args=(self.requests, self.results, device, self.waiting),
            name="yolo-accel-plates",
            daemon=True,
        )
        self.process.start()

    def link(self, worker: int) -> tuple:
        """What worker `worker` needs (picklable into its process): WorkerReads(*link)."""
        return (self.requests, self.results[worker], worker, self.waiting)

    def idle(self) -> bool:
        """Whether a crop sent now would be read soon: the engine hands a frame's pixels to the workers
        for plates only then (copying every frame's pixels for a reader that is busy costs the FPS)."""
        return self.waiting.value < self.capacity

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.requests.put(None)
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()


class PlateStage:
    def __init__(
        self,
        names: dict[int, str],
        tries: int = 5,
        pattern: str | None = None,
        device: str = "cpu",
        workers: int = 1,
        queue: int = 2,
        min_width: int = 64,
        grow: float = 1.15,
        crops_dir: str | None = None,
        classes: tuple[str, ...] = VEHICLE_CLASSES,
        reader: PlateReader | None = None,
        reads: ProcessReads | None = None,
        min_confidence: float = 0.6,
        catch_up: bool = False,
    ):
        """`reads`: this stream's end of the engine's `ReaderProcess`; without it, `reader` (or a new
        PlateReader) in a thread pool. `catch_up`: crops skipped while the reader was busy are read later
        (a file's stream: see the module's docstring)."""
        import re

        self.pattern = re.compile(pattern) if pattern else None
        self.min_confidence = min_confidence
        self.reads = reads if reads is not None else ThreadReads(reader or PlateReader(device=device), workers)
        self.ids = {k for k, v in names.items() if v in classes}
        self.names, self.tries_max, self.queue, self.min_width, self.grow = names, tries, queue, min_width, grow
        self.crops_dir = Path(crops_dir) if crops_dir else None
        if self.crops_dir is not None:
            self.crops_dir.mkdir(parents=True, exist_ok=True)
        self.tries: dict[int, int] = {}
        self.read_area: dict[int, float] = {}
        self.pending: dict[int, tuple[int, str, np.ndarray]] = {}  # track -> (frame, class, crop)
        self.best: dict[int, TrackPlate] = {}
        self.read_ms: list[float] = []
        self.skipped_busy = 0
        self.catch_up = catch_up
        self.deferred: dict[int, tuple[float, int, str, np.ndarray]] = {}  # track -> (area, frame, class, crop)
        self._new: list[dict] = []

    def offer(self, index: int, image: np.ndarray, d) -> None:
        """Queue the reads this frame's tracked vehicles are worth (never waits), and take in finished ones."""
        self._collect()
        if d.tracker_id is None or not len(d):
            return
        for (x1, y1, x2, y2), cls, tid in zip(d.xyxy, d.class_id, d.tracker_id):
            tid, cls = int(tid), int(cls)
            if tid < 0 or cls not in self.ids or x2 - x1 < self.min_width:
                continue
            if self.tries.get(tid, 0) >= self.tries_max:
                continue
            area = float((x2 - x1) * (y2 - y1))
            if area <= self.read_area.get(tid, 0.0) * self.grow:
                continue
            h, w = image.shape[:2]
            box = (slice(max(int(y1), 0), min(int(y2), h)), slice(max(int(x1), 0), min(int(x2), w)))
            if tid in self.pending or len(self.pending) >= self.queue:  # busy: this crop waits or is skipped
                self.skipped_busy += tid not in self.pending
                if self.catch_up and area > self.deferred.get(tid, (0.0,))[0]:
                    self.deferred[tid] = (area, index, self.names.get(cls, str(cls)), image[box].copy())
                continue
            self.deferred.pop(tid, None)
            self._submit(tid, area, index, self.names.get(cls, str(cls)), image[box].copy())

    def _submit(self, tid: int, area: float, index: int, class_name: str, crop: np.ndarray) -> None:
        self.tries[tid] = self.tries.get(tid, 0) + 1
        self.read_area[tid] = area
        self.pending[tid] = (index, class_name, crop)
        self.reads.submit(tid, crop)

    def _submit_deferred(self) -> None:
        """While the reader has room: the largest kept crop first (the likeliest to read well)."""
        while self.deferred and len(self.pending) < self.queue:
            tid = max(
                (t for t in self.deferred if t not in self.pending), key=lambda t: self.deferred[t][0], default=None
            )
            if tid is None:
                return
            area, index, class_name, crop = self.deferred.pop(tid)
            if self.tries.get(tid, 0) < self.tries_max and area > self.read_area.get(tid, 0.0) * self.grow:
                self._submit(tid, area, index, class_name, crop)

    def _collect(self, timeout: float = 0.0) -> None:
        self._read_results(timeout)
        if self.deferred:
            self._submit_deferred()

    def _read_results(self, timeout: float) -> None:
        for tid, found, ms in self.reads.poll(timeout):
            index, class_name, crop = self.pending.pop(tid, (0, "", None))
            self.read_ms.append(ms)
            r = pick([PlateRead(t, c) for t, c in found], self.min_confidence, self.pattern)
            old = self.best.get(tid)
            if r is None or (old is not None and old.confidence >= r.confidence):
                continue
            self.best[tid] = TrackPlate(r.text, r.confidence, index, class_name, crop)
            rec = {"event": "plate", "track_id": tid, "class_name": class_name, "plate": r.text}
            rec.update(confidence=round(r.confidence, 4), frame=index)
            self._new.append(rec)
            if self.crops_dir is not None and crop is not None:
                import cv2

                cv2.imwrite(str(self.crops_dir / f"track{tid}.jpg"), crop)

    def plate_of(self, tid: int) -> str | None:
        p = self.best.get(tid)
        return p.text if p else None

    def drain(self) -> list[dict]:
        """The plate records (improved best reads) since the last call."""
        self._collect()
        new, self._new = self._new, []
        return new

    def finish(self, wait: bool = True, wait_s: float = 30.0) -> dict:
        """Collect the reads still under way (or drop them) and stop; the stream's plate summary."""
        deadline = time.perf_counter() + (wait_s if wait else 0.0)
        while (self.pending or self.deferred) and time.perf_counter() < deadline:
            self._collect(timeout=0.2)
        self.reads.close()
        ms = np.asarray(self.read_ms) if self.read_ms else np.zeros(1)
        return {
            "reads": len(self.read_ms),
            "tracks_tried": len(self.tries),
            "most_tries": max(self.tries.values(), default=0),
            "tracks_read": len(self.best),
            "skipped_busy": self.skipped_busy,
            "unread": len(self.deferred),  # kept crops the stream's end left no time for
            "ms_per_read": {"mean": round(float(ms.mean()), 1), "p95": round(float(np.percentile(ms, 95)), 1)},
            "plates": {
                str(t): {"text": p.text, "confidence": round(p.confidence, 4), "frame": p.frame}
                | {"class": p.class_name}
                for t, p in sorted(self.best.items())
            },
        }
