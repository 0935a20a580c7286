"""The plate-reading stage of a stream: which vehicle crops to read, read off the detection path.

For each tracked vehicle, a crop is read when its box is at least `min_width` pixels wide and larger
than any crop of that track read so far (a vehicle coming closer gets sharper, bigger plates), at
most `tries` times per track. Reads run in a thread pool (ONNX Runtime releases the interpreter
lock while it runs); a frame never waits for them: when `queue` reads are already waiting, the
crop is skipped (a later, larger one will come). The best read per track is kept (text,
confidence, frame, crop), and each improvement is reported once as a plate record.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..plates.reader import VEHICLE_CLASSES, PlateReader


@dataclass
class TrackPlate:
    text: str
    confidence: float
    frame: int
    class_name: str
    crop: np.ndarray | None = field(default=None, repr=False)


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
    ):
        self.reader = reader or PlateReader(pattern, device=device)
        self.ids = {k for k, v in names.items() if v in classes}
        self.names, self.tries_max, self.queue, self.min_width, self.grow = names, tries, queue, min_width, grow
        self.crops_dir = Path(crops_dir) if crops_dir else None
        if self.crops_dir is not None:
            self.crops_dir.mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="plates")
        self.tries: dict[int, int] = {}
        self.read_area: dict[int, float] = {}
        self.pending: set[int] = set()
        self.best: dict[int, TrackPlate] = {}
        self.read_ms: list[float] = []
        self.skipped_busy = 0
        self._new: list[dict] = []
        self._lock = threading.Lock()

    def offer(self, index: int, image: np.ndarray, d) -> None:
        """Queue the reads this frame's tracked vehicles are worth (never waits)."""
        if d.tracker_id is None or not len(d):
            return
        for (x1, y1, x2, y2), cls, tid in zip(d.xyxy, d.class_id, d.tracker_id):
            tid, cls = int(tid), int(cls)
            if tid < 0 or cls not in self.ids or x2 - x1 < self.min_width:
                continue
            area = float((x2 - x1) * (y2 - y1))
            with self._lock:
                if self.tries.get(tid, 0) >= self.tries_max or tid in self.pending:
                    continue
                if area <= self.read_area.get(tid, 0.0) * self.grow:
                    continue
                if len(self.pending) >= self.queue:
                    self.skipped_busy += 1
                    continue
                self.pending.add(tid)
                self.tries[tid] = self.tries.get(tid, 0) + 1
                self.read_area[tid] = area
            h, w = image.shape[:2]
            crop = image[max(int(y1), 0) : min(int(y2), h), max(int(x1), 0) : min(int(x2), w)].copy()
            self.pool.submit(self._read, tid, index, self.names.get(cls, str(cls)), crop)

    def _read(self, tid: int, index: int, class_name: str, crop: np.ndarray) -> None:
        t = time.perf_counter()
        try:
            r = self.reader.read(crop)
        except Exception:  # one unreadable crop must not end the stream's reads
            r = None
        ms = (time.perf_counter() - t) * 1000
        with self._lock:
            self.pending.discard(tid)
            self.read_ms.append(ms)
            old = self.best.get(tid)
            if r is None or (old is not None and old.confidence >= r.confidence):
                return
            self.best[tid] = TrackPlate(r.text, r.confidence, index, class_name, crop)
            rec = {"event": "plate", "track_id": tid, "class_name": class_name, "plate": r.text}
            rec.update(confidence=round(r.confidence, 4), frame=index)
            self._new.append(rec)
        if self.crops_dir is not None:
            import cv2

            cv2.imwrite(str(self.crops_dir / f"track{tid}.jpg"), crop)

    def plate_of(self, tid: int) -> str | None:
        with self._lock:
            p = self.best.get(tid)
        return p.text if p else None

    def drain(self) -> list[dict]:
        """The plate records (improved best reads) since the last call."""
        with self._lock:
            new, self._new = self._new, []
        return new

    def finish(self, wait: bool = True) -> dict:
        """Wait for the queued reads (or drop them) and stop the pool; the stream's plate summary."""
        self.pool.shutdown(wait=wait, cancel_futures=not wait)
        with self._lock:
            ms = np.asarray(self.read_ms) if self.read_ms else np.zeros(1)
            return {
                "reads": len(self.read_ms),
                "tracks_tried": len(self.tries),
                "most_tries": max(self.tries.values(), default=0),
                "tracks_read": len(self.best),
                "skipped_busy": self.skipped_busy,
                "ms_per_read": {"mean": round(float(ms.mean()), 1), "p95": round(float(np.percentile(ms, 95)), 1)},
                "plates": {
                    str(t): {"text": p.text, "confidence": round(p.confidence, 4), "frame": p.frame}
                    | {"class": p.class_name}
                    for t, p in sorted(self.best.items())
                },
            }
