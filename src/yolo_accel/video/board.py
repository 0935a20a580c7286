"""Where decoded frames wait for the detector: one bounded queue per stream under one lock.

Decode threads `put` frames; the detect loop `take`s a batch across streams. A file stream's
producer waits when its queue is full (no frame is lost); a live stream's queue drops its oldest
frame instead (the newest is what a live view needs) and counts the drop.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class FrameBoard:
    def __init__(self, n_streams: int, capacity: int, on_drop: Callable[[object], None] | None = None):
        self.capacity = max(1, capacity)
        self._queues: list[deque] = [deque() for _ in range(n_streams)]
        self._ended = [False] * n_streams
        self._reported = [False] * n_streams
        self.dropped = [0] * n_streams
        # one lock; the detect loop waits on `_cond`, each stream's producer on its own `_room`
        # condition, so that a batch taken wakes only the producers that now have room (sixteen
        # decoders woken for every frame would spend the interpreter lock on waking up)
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._room = [threading.Condition(lock) for _ in range(n_streams)]
        self._on_drop = on_drop
        self._next = 0  # round-robin start, so that no stream is always first
        self._open = False  # `keep_open()`: streams may still be added, so no stream left is not the end
        self._lock = lock

    def keep_open(self) -> None:
        """Streams will be added while frames are taken (the engine as a service): `take` does not end
        when every stream so far has ended, only after `close()`."""
        with self._cond:
            self._open = True

    def close(self) -> None:
        """No stream will be added any more."""
        with self._cond:
            self._open = False
            self._cond.notify_all()

    def add_stream(self) -> int:
        """A new stream's queue; returns its index."""
        with self._cond:
            self._queues.append(deque())
            self._ended.append(False)
            self._reported.append(False)
            self.dropped.append(0)
            self._room.append(threading.Condition(self._lock))
            return len(self._queues) - 1

    def put(self, sid: int, item, live: bool, stop: threading.Event) -> bool:
        """Queue a frame; False when `stop` was set while waiting for room, or the stream was ended (the
        frame was not queued)."""
        with self._cond:
            q = self._queues[sid]
            if self._ended[sid]:
                return False
            if live:
                while len(q) >= self.capacity:
                    old = q.popleft()
                    self.dropped[sid] += 1
                    if self._on_drop:
                        self._on_drop(old)
            else:
                while len(q) >= self.capacity:
                    if stop.is_set() or self._ended[sid]:
                        return False
                    self._room[sid].wait(0.1)
            q.append(item)
            self._cond.notify()
            return True

    def end(self, sid: int) -> None:
        """No more frames will come for this stream."""
        with self._cond:
            self._ended[sid] = True
            self._cond.notify_all()

    def discard(self, sid: int) -> list:
        """Drop a stream's waiting frames (it failed or is being stopped); returns them."""
        with self._cond:
            items = list(self._queues[sid])
            self._queues[sid].clear()
            self._room[sid].notify()
            return items

    def _ready(self, per_stream: int) -> int:
        return sum(min(len(q), per_stream) for q in self._queues)

    def _finished(self) -> list[int]:
        return [i for i, q in enumerate(self._queues) if self._ended[i] and not q and not self._reported[i]]

    def take(self, max_total: int, per_stream: int, wait_s: float) -> tuple[list[tuple[int, object]], list[int]] | None:
        """A batch: up to `per_stream` frames of each stream, `max_total` in all, in stream order.

        Waits for a first frame, then up to `wait_s` for the batch to fill. Also returns the streams
        that have ended and whose every frame has now been taken (each reported once). None when
        every stream has ended and been reported.
        """
        with self._cond:
            while not self._ready(per_stream) and not self._finished():
                if all(self._reported) and not self._open:
                    return None
                self._cond.wait(0.05)
            deadline = time.perf_counter() + wait_s
            while self._ready(per_stream) < max_total:
                left = deadline - time.perf_counter()
                live = [i for i, q in enumerate(self._queues) if not self._ended[i]]
                if left <= 0 or not live:
                    break
                self._cond.wait(left)
            batch: list[tuple[int, object]] = []
            n = len(self._queues)
            last = self._next
            for k in range(n):
                sid = (self._next + k) % n
                q = self._queues[sid]
                take = min(per_stream, len(q), max_total - len(batch))
                for _ in range(take):
                    batch.append((sid, q.popleft()))
                if take:
                    self._room[sid].notify()
                    last = sid
            # the next batch starts after the last stream served: when `max_total` leaves streams out, the
            # ones left out come first next time (not one step along, which served the same ones again)
            self._next = (last + 1) % n
            finished = self._finished()
            for sid in finished:
                self._reported[sid] = True
            return batch, finished
