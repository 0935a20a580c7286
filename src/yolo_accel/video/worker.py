"""The engine's stream workers: processes (or one thread) that own streams' StreamProcessors.

The GPU loop sends each worker small messages: a batch's detections for its streams as (K, 6)
arrays, and for streams that annotate, the frame's pixels in a shared-memory slot (a slot number
travels, not the pixels). A worker never touches the GPU and never waits on the detector, and the
detect loop never waits on tracking: no stage holds another's interpreter lock.

Messages in:  ("open", sid, StreamSettings, names, fps, (w, h), slots or None)
              ("frames", [(sid, index, time_s, t0, dets (K, 6), slot or None, pixels or None), ...])
              ("end", sid)          the stream's last frame has been sent
              ("warm", StreamSettings, names, fps, (w, h))   build and drop a processor (a service's start)
              ("stop",)             finish every open stream and exit
Messages out: ("ready", sid, error or None), ("progress", n_frames, {sid: last frame index}), ("failed", sid, error),
              ("watched", sid, bool)    someone started or stopped watching the stream's MJPEG frames
              ("stages", {sid: StageTimes})   each open stream's stage times so far, about once a second
              ("done", sid, summary part), ("warm", pid), ("exit", pid)
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import time
from dataclasses import dataclass

import numpy as np

from ..errors import message
from ..errors import summary as error_line


@dataclass
class SlotSpec:
    """A stream's shared-memory frame slots: `count` frames of `shape` (H, W, 3) uint8.

    The numbers of free slots travel in a queue of their own, handed to the worker when it starts
    (a multiprocessing queue cannot travel inside a message).
    """

    name: str
    count: int
    shape: tuple[int, int, int]
    key: int | None = None  # its free-slot queue among those the worker was given (None: the stream's id)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))


class _Slots:
    """The worker's view of one stream's slots."""

    def __init__(self, spec: SlotSpec, free):
        from multiprocessing import shared_memory

        self.spec, self.free = spec, free
        # attaching registers the name with the resource tracker the engine's process shares with
        # its workers (a set: no second entry); the engine unlinks the segment and unregisters it
        self.shm = shared_memory.SharedMemory(name=spec.name)

    def view(self, slot: int) -> np.ndarray:
        s = self.spec
        return np.ndarray(s.shape, np.uint8, buffer=self.shm.buf, offset=slot * s.nbytes)

    def release(self, slot: int) -> None:
        self.free.put(slot)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.shm.close()


def serve(
    inbox,
    outbox,
    on_frame=None,
    parent_pid: int | None = None,
    free_slots: dict | None = None,
    opened: dict | None = None,
    plates_link: tuple | None = None,
) -> None:
    """The worker loop (a process's main, or the in-process thread's). `free_slots`: stream -> queue of free
    slots; `opened`: a dict that is given every stream's processor and keeps it after the stream ends (the
    in-process engine reads their stage times from it while it runs); `plates_link`: this worker's end of
    the engine's plate reader process (`ReaderProcess.link`)."""
    from .processor import StreamProcessor

    plate_reads = None
    if plates_link is not None:
        from .plates import WorkerReads

        plate_reads = WorkerReads(*plates_link)
    processors: dict[int, StreamProcessor] = {}
    slots: dict[int, _Slots] = {}
    watched: dict[int, bool] = {}
    stages_sent = time.perf_counter()
    try:
        while True:
            try:
                msg = inbox.get(timeout=1.0)
            except queue.Empty:
                if parent_pid is not None and os.getppid() != parent_pid:
                    return  # the engine's process is gone: nobody will read our results
                continue
            kind = msg[0]
            if kind == "frames":
                touched = set()
                last: dict[int, int] = {}
                for sid, index, time_s, t0, dets, slot, pixels in msg[1]:
                    last[sid] = index
                    p = processors.get(sid)
                    try:
                        if p is None or p.error:
                            continue
                        image = pixels if pixels is not None else (slots[sid].view(slot) if slot is not None else None)
                        tracked, _ = p.process(index, time_s, t0, dets, image)
                        touched.add(sid)
                        if on_frame is not None:
                            on_frame(sid, index, tracked)
                    except Exception as e:  # this stream fails; the worker's other streams go on
                        p.abort(error_line(e))
                        outbox.put(("failed", sid, p.error))
                    finally:
                        if slot is not None and sid in slots:
                            slots[sid].release(slot)
                for sid in touched:
                    with contextlib.suppress(Exception):
                        processors[sid].flush()
                # sent after the flush: every event of a frame up to `last` is in its events file by now
                outbox.put(("progress", len(msg[1]), last))
                for sid in touched:
                    now_watched = processors[sid].watched
                    if now_watched != watched.get(sid, False):
                        watched[sid] = now_watched
                        outbox.put(("watched", sid, now_watched))
                if time.perf_counter() - stages_sent > 1.0:
                    stages_sent = time.perf_counter()
                    outbox.put(("stages", {sid: p.stages for sid, p in processors.items()}))
            elif kind == "open":
                _, sid, settings, names, fps, size, slot_spec = msg
                try:
                    reads = plate_reads.for_stream(sid) if (plate_reads is not None and settings.ocr) else None
                    processors[sid] = StreamProcessor(settings, names, fps, size, plate_reads=reads)
                    if opened is not None:
                        opened[sid] = processors[sid]
                    if slot_spec is not None:
                        key = sid if slot_spec.key is None else slot_spec.key
                        slots[sid] = _Slots(slot_spec, (free_slots or {})[key])
                    outbox.put(("ready", sid, None))
                except Exception as e:
                    outbox.put(("ready", sid, message(e)))
            elif kind == "warm":  # a service engine's worker: load what a stream needs before the first comes
                _, settings, names, fps, size = msg
                with contextlib.suppress(Exception):
                    StreamProcessor(settings, names, fps, size).finish()
                outbox.put(("warm", os.getpid()))
            elif kind == "end":
                _finish(msg[1], processors, slots, outbox)
            elif kind == "stop":
                return
    finally:
        for sid in list(processors):
            _finish(sid, processors, slots, outbox)
        outbox.put(("exit", os.getpid()))


def _finish(sid: int, processors: dict, slots: dict, outbox) -> None:
    p = processors.pop(sid, None)
    if p is None:
        return
    try:
        part = p.finish()
    except Exception as e:  # closing the video failed (disk full, ...): the stream's error
        p.abort(p.error or error_line(e))
        part = p.finish()
    s = slots.pop(sid, None)
    if s is not None:
        s.close()
    outbox.put(("done", sid, part))


def process_main(inbox, outbox, parent_pid: int, free_slots: dict, plates_link: tuple | None = None) -> None:
    """Entry point of a worker process: Ctrl-C and SIGTERM are the engine's to handle (it drains the
    streams and then tells the workers to stop), so a worker finishes its files instead of dying."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(inbox, outbox, parent_pid=parent_pid, free_slots=free_slots, plates_link=plates_link)
