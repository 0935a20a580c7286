"""The video engine: many streams, one batched detector, tracking and output in worker processes.

    decode thread per stream ──> FrameBoard ──> detect loop (one thread) ──> worker processes
    (OpenCV, or NVDEC: frames     (bounded,      one detect_batch per batch     (per stream: track,
     stay on the GPU)              per stream)    across streams; GPU pre,       count, events,
                                                  infer, post; (K, 6) arrays)    annotate, write)

Work is done per batch, not per frame: frames of every stream are gathered into one batch
(`batch` per stream, closed after `max_wait_ms`), and the detector makes one call per batch per
stage. Only the small detection arrays leave the detect loop; pixels go to a worker only for
streams that write annotated output, through shared-memory slots. Tracking, counting and writing
run in worker processes, so the detect loop never waits on them and no stage takes another's
interpreter lock.

A stream that fails (its source breaks, its output cannot be written) ends with its error in its
summary; the other streams go on. `stop()` (Ctrl-C, SIGTERM, `--duration`) stops reading, lets
what was read drain through every stage, and finishes every file.

With `service=True` the engine runs until `stop()` and takes streams while it runs: `add_stream`
starts one beside the others (which neither pause nor lose a frame), `stop_stream` ends one as
`stop()` ends them all, and each stream's summary goes to `on_stream_done` as it ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import YoloAccelError, message
from .board import FrameBoard
from .processor import StreamProcessor, StreamSettings
from .sources import FrameSource, host_image
from .stats import MemoryMonitor, StageTimes
from .worker import SlotSpec, process_main, serve

INTERRUPTED = ("interrupted", "terminated")


@dataclass
class EngineSettings:
    """How the engine runs (the same answers whatever these are)."""

    batch: int = 8  # frames per stream per detector batch
    max_wait_ms: float = 2.0  # a batch closes after this wait for more frames
    workers: int | None = None  # worker processes; None: one per stream, at most 8 and cores - 2; 0: a thread here
    queue_frames: int | None = None  # decoded frames waiting per stream (default 2 x batch, at least 4)
    slots: int = 6  # shared-memory frames per annotating stream
    duration_s: float | None = None  # stop after this long (a planned end, not an interruption)
    memory_interval_s: float = 1.0  # memory and utilisation samples
    max_streams: int = 64  # a service engine: the most streams open at once (sizes its workers' slot queues)
    max_batch: int = 128  # frames in one detector batch at most (a batch takes up to `batch` of each stream)
    warmup_size: tuple[int, int] = (1280, 720)  # a service engine's warm-up frames (it has no stream yet)
    plates_device: str | None = None  # a service engine: start the plate reader now (streams added later read plates)

    def worker_count(self, n_streams: int) -> int:
        if self.workers is not None:
            return max(0, min(self.workers, n_streams))
        return max(1, min(n_streams, 8, (os.cpu_count() or 2) - 2))


@dataclass
class _Item:
    sid: int
    index: int
    time_s: float
    t0: float  # perf_counter when decoding of this frame started (monotonic: comparable across processes)
    image: object  # what the detector takes: host array or device tensor
    slot: int | None = None  # shared-memory slot holding the pixels for annotation
    pixels: np.ndarray | None = None  # the pixels themselves (in-process workers, odd-sized frames)


@dataclass
class _Stream:
    sid: int
    source: FrameSource | None
    settings: StreamSettings
    error: str | None = None
    source_error: str | None = None
    worker: int = 0
    stages: StageTimes = field(default_factory=StageTimes)
    plate_pixels_at: float = -1.0  # when a frame's pixels last went to the worker for plates
    preview_at: float = -1.0  # when a frame's pixels last went to the worker for its MJPEG viewers
    watched: bool = False  # someone watches the stream's MJPEG frames (its worker says when that changes)
    last_frame_at: float | None = None  # when its source last gave a frame
    worker_stages: StageTimes | None = None  # its worker's stage times so far (about once a second)
    decode_s: float = 0.0
    dropped_no_slot: int = 0
    part: dict | None = None
    t_end: float | None = None
    stopped: bool = False  # no more frames wanted (failed downstream)
    stop_reading: bool = False  # `stop_stream`: read no more; what was read still goes through every stage
    t_begin: float | None = None  # when a stream added to a running engine started (else the run's start)
    slot_key: int | None = None  # its free-slot queue in the workers' pool
    ready: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    shm: object = None
    slot_spec: SlotSpec | None = None
    free: object = None  # queue of free slot numbers


class VideoEngine:
    """Runs streams through one detector. `run()` returns the summary; `stop()` may be called from any thread.

    `sources` holds an open FrameSource per stream, or the exception that opening it raised (that
    stream is then reported as failed and the others run). `on_frame(sid, index, tracked
    sv.Detections)` sees every frame; it needs `workers=0` (tracking in this process).
    """

    def __init__(
        self,
        detector,
        sources: list[FrameSource | BaseException],
        settings: list[StreamSettings],
        engine: EngineSettings | None = None,
        progress: Callable[[int], None] | None = None,
        on_frame: Callable | None = None,
        service: bool = False,
        on_stream_done: Callable[[int, dict], None] | None = None,
    ):
        if len(sources) != len(settings):
            raise ValueError("one StreamSettings per source")
        self.detector = detector
        self.es = engine or EngineSettings()
        self.progress = progress
        self.on_frame = on_frame
        self.streams = [
            _Stream(i, s if isinstance(s, FrameSource) else None, st)
            for i, (s, st) in enumerate(zip(sources, settings))
        ]
        for st, s in zip(self.streams, sources):
            if not isinstance(s, FrameSource):
                st.error = st.source_error = message(s)
        # a service runs until `stop()` and takes streams while it runs (`add_stream`, `stop_stream`)
        self.service = service
        self.on_stream_done = on_stream_done
        n_workers = self.es.worker_count(self.es.max_streams if service else len(sources))
        if on_frame is not None and n_workers:
            raise ValueError("on_frame needs workers=0 (tracking in this process)")
        self.n_workers = n_workers
        self._stop = threading.Event()
        self._hurry = threading.Event()  # a second Ctrl-C: frames still waiting for the detector are dropped
        self._interrupts = 0
        self.stop_reason: str | None = None
        self._fatal: BaseException | None = None
        self.batches = self.batched_frames = self.largest_batch = 0
        self.launch_busy_s = self.finish_busy_s = 0.0
        self._lock = threading.Lock()
        self._collect_done = threading.Event()
        self._inline_processors: dict = {}  # workers=0: the in-process worker's StreamProcessors
        self._plate_reader = None  # the plate reader process, when a stream reads plates
        self.board: FrameBoard | None = None  # made by run()
        # per stream: the last frame index whose tracking, counting and events are done (events flushed)
        self.last_done: dict[int, int] = {}
        self._add_lock = threading.RLock()  # also taken by stop(), which a signal handler of this thread may call
        self._running = threading.Event()  # workers started, detect loop running: streams can be added
        self._ended = threading.Event()  # run() has returned or raised (a failed start-up included)
        self.failure: BaseException | None = None  # what run() raised, if it did
        self._decode_threads: list[threading.Thread] = []
        self._slot_pool: dict = {}  # a service's free-slot queues by key, one per open annotating stream
        self._dead_workers: set[int] = set()
        self._workers_stopping = False
        self._free_keys: list[int] = []

    def live_stats(self, sid: int) -> tuple[StageTimes, int]:
        """While it runs: stream `sid`'s stage times so far and its dropped frames. The tracking, counting,
        annotation and encoding stages are included with `workers=0` only (elsewhere they live in the
        worker processes until the summary)."""
        st = self.streams[sid]
        stages = StageTimes()
        stages.merge(st.stages)
        p = self._inline_processors.get(sid)
        if st.part and st.part.get("stages") is not None:  # ended: its worker's final figures
            stages.merge(st.part["stages"])
        elif p is not None:
            stages.merge(p.stages)
        elif st.worker_stages is not None:
            stages.merge(st.worker_stages)
        return stages, self._dropped(st)

    def _dropped(self, st: _Stream) -> int:
        """A live stream's frames dropped so far: by its full queue, or for want of a free slot."""
        return (self.board.dropped[st.sid] if self.board is not None else 0) + st.dropped_no_slot

    def health(self, sid: int) -> dict:
        """Stream `sid`'s source now: connected (a live source that is not reopening its connection),
        reconnects so far, seconds since its last frame (None before the first) and frames dropped."""
        st = self.streams[sid]
        src = st.source
        last = st.last_frame_at
        return {
            "connected": bool(getattr(src, "connected", src is not None)) and st.part is None,
            "reconnects": int(getattr(src, "reconnects", 0)),
            "since_frame_s": None if last is None else round(time.perf_counter() - last, 2),
            "dropped": self._dropped(st),
        }

    # -- control --------------------------------------------------------------------------------
    def stop(self, reason: str = "interrupted") -> None:
        """Stop reading every source; what was read still goes through every stage, files are finished."""
        with self._add_lock:  # no stream is half-added when a service closes
            if self.stop_reason is None:
                self.stop_reason = reason
            self._stop.set()
            if self.service and self.board is not None:
                self.board.close()

    def add_stream(self, source: FrameSource, settings: StreamSettings, timeout_s: float = 120.0) -> int:
        """A service engine (`service=True`, `run()` running in another thread): start a stream now, beside
        the others, which neither pause nor lose a frame. Returns its stream id; its summary comes to
        `on_stream_done` (and `wait_stream`) when it ends. A stream whose worker cannot open it ends at once
        with that error."""
        if not self.service:
            raise RuntimeError("add_stream needs VideoEngine(..., service=True)")
        if not self.wait_started(timeout_s):
            raise RuntimeError("the engine did not start")
        if settings.ocr and self._plate_reader is None:
            raise YoloAccelError("plates in a service engine: start it with a stream that reads plates")
        with self._add_lock:
            if self._stop.is_set():
                raise YoloAccelError("the engine is stopping: no stream can be added")
            if self._procs and len(self._dead_workers) >= len(self._procs):
                raise YoloAccelError("every worker process of the engine has exited: restart it")
            st = _Stream(len(self.streams), source, settings, t_begin=time.perf_counter())
            sid = self.board.add_stream()
            assert sid == st.sid
            load = [0] * max(1, self.n_workers)
            for other in self.streams:
                if other.source is not None and other.part is None:
                    load[other.worker] += 1
            for w in self._dead_workers:
                load[w] = 1 << 30
            st.worker = load.index(min(load))
            # shared-memory slots for a stream that writes every frame; a preview's or the plates' few frames
            # a second travel in their messages (sixty cameras' slots would hold gigabytes of shared memory)
            if (settings.output or settings.save_frames) and self._procs and self._free_keys:
                self._make_slots(st, None, key=self._free_keys.pop())
            self.streams.append(st)
            names = dict(self.detector.names)
            opened = _worker_settings(settings, source)
            self._send(st.worker, ("open", sid, opened, names, source.fps, tuple(source.size), st.slot_spec))
        if not st.ready.wait(timeout_s) and st.part is None:
            self._abandon(st, "its worker did not open it")
        if st.part is None and not st.stopped:
            t = threading.Thread(target=self._decode, args=(st,), name=f"decode{sid}", daemon=True)
            self._decode_threads.append(t)
            t.start()
        return sid

    def wait_started(self, timeout_s: float | None = None) -> bool:
        """Whether `run()` has started the workers and the detect loop (streams can be added) within `timeout_s`;
        False at once when `run()` ended without (its start-up failed: `failure` holds what it raised)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._running.wait(0.1):
            if self._ended.is_set() or (deadline is not None and time.monotonic() > deadline):
                return self._running.is_set()
        return True

    def stop_stream(self, sid: int) -> None:
        """Stop reading stream `sid`; what it read still goes through every stage and its files are finished
        (its summary then comes as for a stream that ended). A source that is waiting (a camera being
        reconnected) is not waited for: the stream ends now, its reader leaves when the source returns."""
        self.streams[sid].stop_reading = True
        if self.board is not None:
            self.board.end(sid)

    def wait_stream(self, sid: int, timeout_s: float | None = None) -> dict | None:
        """Stream `sid`'s summary once it has ended (None if it has not within `timeout_s`)."""
        st = self.streams[sid]
        return self._stream_summary(st) if st.done.wait(timeout_s) else None

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> dict:
        es = self.es
        live = [st for st in self.streams if st.source is not None]
        cap = es.queue_frames or max(4, 2 * es.batch)
        self.board = FrameBoard(len(self.streams), cap, on_drop=self._release_dropped)
        if self.service:
            self.board.keep_open()
        for st in self.streams:
            if st.source is None:
                self.board.end(st.sid)
        self._procs, self._inboxes = [], []
        try:
            return self._run(live)
        except BaseException as e:
            self.failure = e  # before _ended: a caller of wait_started can say why
            raise
        finally:  # also after Ctrl-C during start-up: no worker, segment or decoder left behind
            self._ended.set()
            self._collect_done.set()
            self._stop.set()
            for p in self._procs:
                if p.is_alive():
                    p.terminate()
                    p.join(timeout=5)
            if self._plate_reader is not None:
                self._plate_reader.stop()
            for st in self.streams:
                if st.source is not None:
                    with contextlib.suppress(Exception):
                        st.source.close()
                if st.shm is not None:
                    with contextlib.suppress(Exception):
                        st.shm.close()
                        st.shm.unlink()

    def _run(self, live: list[_Stream]) -> dict:
        es = self.es
        self._start_workers(live)
        monitor = MemoryMonitor(es.memory_interval_s, self._gpu_index())
        monitor.watch([p.pid for p in self._procs])
        self.warmup_s = self._warmup(live)
        monitor.start()
        self.t_start = time.perf_counter()
        self._decode_threads = [
            threading.Thread(target=self._decode, args=(st,), name=f"decode{st.sid}", daemon=True)
            for st in live
            if not st.stopped
        ]
        detect = threading.Thread(target=self._detect_loop, name="detect", daemon=True)
        collect = threading.Thread(target=self._collect, name="collect", daemon=True)
        for t in (*self._decode_threads, detect, collect):
            t.start()
        self._running.set()
        with self._signals():  # to the end: a Ctrl-C while the files and the summary are finished is no traceback
            self._wait(detect)
            with self._add_lock:  # the detect loop has ended: so has every stream, none is being added
                streams = list(self.streams)
            for st in streams:  # every stream's end has been sent: wait for its summary
                self._wait_done(st)
            self.wall_s = time.perf_counter() - self.t_start
            memory = monitor.stop()  # before the workers go: a sample without them is no part of the run
            self._stop_workers()
            self._stop.set()
            for t in self._decode_threads:
                t.join(timeout=5)
            self._collect_done.set()
            collect.join(timeout=5)
            if self._fatal is not None and not isinstance(self._fatal, YoloAccelError):
                raise self._fatal
            return self._summary(memory)

    def _wait(self, thread: threading.Thread) -> None:
        """Join `thread`; stops at the end of --duration (Ctrl-C is `_interrupt`, or a KeyboardInterrupt where
        SIGINT was not ours to handle)."""
        t_deadline = None if self.es.duration_s is None else self.t_start + self.es.duration_s
        while thread.is_alive():
            try:
                thread.join(timeout=0.1)
                if t_deadline is not None and time.perf_counter() >= t_deadline:
                    self.stop("duration")
            except KeyboardInterrupt:
                self.stop("interrupted")

    def _interrupt(self, *_) -> None:
        """Ctrl-C: the first stops reading (what was read is still detected, tracked and written); a
        second drops the frames still waiting for the detector, so the run ends at once. Either way the
        video is finished and the summary, marked interrupted, is written."""
        self._interrupts += 1
        if self._interrupts > 1:
            self._hurry.set()
        self.stop("interrupted")

    @contextlib.contextmanager
    def _signals(self):
        """SIGINT and SIGTERM stop the run cleanly (only the main thread can install handlers). A SIGINT
        the parent told this process to ignore (a background job) stays ignored."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old_term = signal.signal(signal.SIGTERM, lambda *_: self.stop("terminated"))
        old_int = signal.getsignal(signal.SIGINT)
        if old_int is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, self._interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGINT, old_int)

    def _max_batch(self, n_streams: int) -> int:
        """Frames in one batch at most with `n_streams` open: `batch` of each, at most `max_batch` (a service:
        of at most `max_streams` streams, the most its warm-up prepared for), at most what the backend takes."""
        if self.service:
            n_streams = min(n_streams, self.es.max_streams)
        limit = min(self.es.max_batch, self.detector.backend.max_batch_size or self.es.max_batch)
        return max(1, min(limit, self.es.batch * max(1, n_streams)))

    def _warmup(self, live: list[_Stream]) -> float:
        """Run the detector once per batch shape it will see, before the clock starts: on the GPU pipeline
        every power-of-two batch size up to the largest batch (CUDA graphs are captured and --compile
        compiles per shape, ONNX Runtime's cuDNN searches: seconds that are not the streams'), elsewhere
        one batch of one frame. Frames of the first stream's size, on the device where its decoder puts
        them. Then CUDA graphs are frozen: a capture while NVDEC decoders open or rewind fails
        (CudaGraphs.freeze). A service engine (no stream yet) warms up only when it has graphs or
        --compile to prepare, on `warmup_size` device frames for up to `max_streams` streams.
        """
        live = [st for st in live if not st.stopped]
        backend = self.detector.backend
        ladder = getattr(self.detector, "gpu_ops", False)
        freezable = ladder and hasattr(backend, "freeze_graphs") and backend.prefers_fixed_shape
        if self.service:
            if not freezable:
                return 0.0
            size, on_device, n_streams = self.es.warmup_size, True, self.es.max_streams
        elif live and min(live[0].source.size) > 0:
            size, on_device, n_streams = live[0].source.size, getattr(live[0].source, "on_device", False), len(live)
        else:
            return 0.0
        t0 = time.perf_counter()
        w, h = size
        max_total = self._max_batch(n_streams)
        sizes = [1]
        if ladder:
            while sizes[-1] < max_total:
                sizes.append(min(2 * sizes[-1], max_total))
        if on_device:
            import torch

            frame = torch.zeros((h, w, 3), dtype=torch.uint8, device=str(backend.device))
        else:
            frame = np.zeros((h, w, 3), np.uint8)
        for n in reversed(sizes):  # the largest first: the smaller graphs fit in the pool it leaves (CudaGraphs)
            self.detector.detect_batch([frame] * n)
        del frame
        if freezable:
            backend.freeze_graphs()
        if ladder:
            import torch

            # the eager runs before each capture cached the largest batch's activations outside the
            # graphs' pool: gigabytes at batch 128 that no later call needs
            torch.cuda.empty_cache()
        return time.perf_counter() - t0

    def _gpu_index(self) -> int | None:
        dev = getattr(getattr(self.detector, "backend", None), "device", None)
        return dev.index if getattr(dev, "is_cuda", False) else None

    # -- workers --------------------------------------------------------------------------------
    def _start_workers(self, live: list[_Stream]) -> None:
        for k, st in enumerate(live):  # streams dealt round-robin over the workers
            st.worker = k % max(1, self.n_workers)
        ocr = [st for st in live if st.settings.ocr]
        plates_device = ocr[0].settings.ocr_device if ocr else (self.es.plates_device if self.service else None)
        if plates_device:  # one plate reader process for every stream that reads plates (see video/plates.py)
            import multiprocessing as mp

            from .plates import ReaderProcess

            self._plate_reader = ReaderProcess(mp.get_context("spawn"), self.n_workers, plates_device)
        link = (lambda w: self._plate_reader.link(w)) if self._plate_reader is not None else (lambda w: None)
        if self.n_workers == 0:
            self._inboxes = [queue.Queue(maxsize=64)]
            self._outbox = queue.Queue()
            t = threading.Thread(
                target=serve,
                args=(self._inboxes[0], self._outbox, self.on_frame),
                kwargs={"opened": self._inline_processors, "plates_link": link(0)},
                name="worker",
                daemon=True,
            )
            t.start()
            self._threads = [t]
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # the parent holds CUDA: forking it is not safe
            # one queue from each worker, merged here by a thread each: a worker killed while it writes
            # can keep its queue's lock (or leave half a message) for good, which in a queue shared by
            # all workers would stop every other worker's messages too
            self._outbox = queue.Queue()
            outboxes = [ctx.Queue() for _ in range(self.n_workers)]
            for w, q in enumerate(outboxes):
                threading.Thread(target=self._forward, args=(q,), name=f"from-worker{w}", daemon=True).start()
            self._inboxes = [ctx.Queue(maxsize=64) for _ in range(self.n_workers)]
            free: list[dict] = [{} for _ in range(self.n_workers)]
            for st in live:
                if st.settings.needs_pixels:
                    self._make_slots(st, ctx)
                    if st.free is not None:
                        free[st.worker][st.sid] = st.free
            if self.service:
                # queues cannot travel in messages: each worker is given, at its start, the free-slot queues
                # of every stream that may be added later (keys above the first streams' ids)
                first = len(self.streams)
                self._slot_pool = {first + k: ctx.Queue() for k in range(self.es.max_streams)}
                self._free_keys = sorted(self._slot_pool, reverse=True)
                for w in range(self.n_workers):
                    free[w].update(self._slot_pool)
            for w in range(self.n_workers):
                args = (self._inboxes[w], outboxes[w], os.getpid(), free[w], link(w))
                p = ctx.Process(target=process_main, args=args, name=f"yolo-accel-worker{w}")
                p.daemon = True
                p.start()
                self._procs.append(p)
        names = dict(self.detector.names)
        for st in live:
            src = st.source
            opened = _worker_settings(st.settings, src)
            self._inboxes[st.worker].put(("open", st.sid, opened, names, src.fps, tuple(src.size), st.slot_spec))
        if self.service:  # the trackers' and counters' imports happen now, not when the first stream comes
            warm = StreamSettings(lines=["0,0,1,1"], zones=["0,0,1,0,1,1"])
            for inbox in self._inboxes:
                inbox.put(("warm", warm, names, 25.0, (64, 64)))
        warming = len(self._inboxes) if self.service else 0
        waiting = {st.sid for st in live}
        deadline = time.perf_counter() + 120
        while waiting or warming:
            try:
                msg = self._outbox.get(timeout=0.5)
            except queue.Empty:
                if time.perf_counter() > deadline or (self._procs and not all(p.is_alive() for p in self._procs)):
                    for sid in waiting:
                        self._abandon(self.streams[sid], "its worker process did not start")
                    break
                continue
            if msg[0] == "warm":
                warming -= 1
            elif msg[0] == "ready":
                waiting.discard(msg[1])
                if msg[2]:
                    self._abandon(self.streams[msg[1]], msg[2])

    def _forward(self, q) -> None:
        """One worker's messages into the engine's outbox, until the engine is done with its workers."""
        while not self._collect_done.is_set():
            try:
                msg = q.get(timeout=0.5)
            except queue.Empty:
                continue
            except Exception:  # a worker killed in the middle of a message: nothing more comes from it
                return
            self._outbox.put(msg)

    def _make_slots(self, st: _Stream, ctx, key: int | None = None) -> None:
        """Shared-memory frames for an annotating stream; `key`: a free-slot queue of the service's pool
        (else a new queue, handed to the worker when it starts)."""
        from multiprocessing import shared_memory

        w, h = st.source.size
        if w <= 0 or h <= 0:
            if key is not None:
                self._free_keys.append(key)
            return  # unknown size: pixels travel in the messages
        shape = (int(h), int(w), 3)
        nbytes = int(np.prod(shape))
        st.shm = shared_memory.SharedMemory(create=True, size=nbytes * self.es.slots)
        if key is None:
            st.free = ctx.Queue()
        else:
            st.free, st.slot_key = self._slot_pool[key], key
            while True:  # whatever the queue's last stream left in it
                try:
                    st.free.get_nowait()
                except queue.Empty:
                    break
        for i in range(self.es.slots):
            st.free.put(i)
        st.slot_spec = SlotSpec(st.shm.name, self.es.slots, shape, key)

    def _send(self, w: int, msg) -> bool:
        """Put a message in worker `w`'s inbox, waiting for room; False when that worker has died."""
        inbox = self._inboxes[w]
        while True:
            try:
                inbox.put(msg, timeout=0.5)
                return True
            except queue.Full:
                if self._procs and not self._procs[w].is_alive():
                    self._worker_died(w)
                    return False

    def _check_workers(self) -> None:
        """A worker process that died while the engine runs (killed, out of memory): its streams fail with
        one line, the others go on, and a service gives new streams to the workers left."""
        if self._workers_stopping or not self._procs:
            return
        for w, p in enumerate(self._procs):
            if w not in self._dead_workers and not p.is_alive():
                self._dead_workers.add(w)
                self._worker_died(w)

    def _worker_died(self, w: int) -> None:
        code = self._procs[w].exitcode
        for st in self.streams:
            if st.source is not None and st.worker == w and st.part is None:
                self._abandon(st, f"its worker process exited (code {code})")

    def _abandon(self, st: _Stream, error: str) -> None:
        """A stream no worker will report on: failed, its summary part empty, its decoding ended."""
        self._fail(st, error)
        st.part, st.t_end = {}, time.perf_counter()
        self.board.end(st.sid)
        if self._running.is_set():
            self._stream_ended(st)

    def _fail(self, st: _Stream, error: str) -> None:
        with self._lock:
            if st.error is None:
                st.error = error
            st.stopped = True
        for item in self.board.discard(st.sid):
            self._release(st, item)

    def _collect(self) -> None:
        """Read the workers' messages (progress, failures, summaries) until the workers are stopped."""
        while True:
            try:
                msg = self._outbox.get(timeout=0.2)
            except queue.Empty:
                if self._collect_done.is_set():
                    return
                self._check_workers()
                continue
            kind = msg[0]
            if kind == "progress":
                self.last_done.update(msg[2])
                if self.progress:
                    self.progress(msg[1])
            elif kind == "failed":
                self._fail(self.streams[msg[1]], msg[2])
            elif kind == "watched":
                self.streams[msg[1]].watched = msg[2]
            elif kind == "stages":
                for sid, stages in msg[1].items():
                    self.streams[sid].worker_stages = stages
            elif kind == "ready":  # a stream added to a running service
                st = self.streams[msg[1]]
                if msg[2]:
                    self._abandon(st, msg[2])
                st.ready.set()
            elif kind == "done":
                st = self.streams[msg[1]]
                st.part, st.t_end = msg[2], time.perf_counter()
                self._stream_ended(st)

    def _stream_ended(self, st: _Stream) -> None:
        """A stream's summary part has come (or it was abandoned): its slots go back, its end is told."""
        if st.done.is_set():
            return
        if self.service and st.source is not None and not getattr(st.source, "on_device", False):
            # a long-lived engine closes each stream's decoder once the stream is done. Not an NVDEC one: ending
            # a PyNvVideoCodec decoder while others decode corrupts its heap (seen on an H200); those are
            # closed when the engine stops
            with contextlib.suppress(Exception):
                st.source.close()
        if st.slot_key is not None:
            with self._add_lock:
                self._free_keys.append(st.slot_key)
            st.slot_key = None
        st.done.set()
        if self.on_stream_done is not None:
            try:
                self.on_stream_done(st.sid, self._stream_summary(st))
            except Exception as e:  # the caller's hook must not end the engine
                self._fatal = self._fatal or e

    def _active(self) -> list[_Stream]:
        return [st for st in self.streams if st.source is not None]

    def _wait_done(self, st: _Stream) -> None:
        if st.source is None:
            return
        while st.part is None:
            try:
                time.sleep(0.02)
            except KeyboardInterrupt:  # already draining: the summaries are moments away
                self.stop("interrupted")
            if self._procs and not self._procs[st.worker].is_alive():
                self._worker_died(st.worker)

    def _stop_workers(self) -> None:
        self._workers_stopping = True
        for w in range(len(self._inboxes)):
            if not self._procs or self._procs[w].is_alive():
                with contextlib.suppress(Exception):
                    self._inboxes[w].put(("stop",), timeout=5)
        for p in self._procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        for t in getattr(self, "_threads", []):
            t.join(timeout=30)

    # -- decode ---------------------------------------------------------------------------------
    def _wants_pixels(self, st: _Stream) -> bool:
        """A frame's pixels go to its worker to be written (every frame of an MP4 or frames folder), to be
        shown (an MJPEG stream: only while someone watches, at twice its frame-rate cap at most), or for
        plates: at most 10 frames a second, and for a live source only while the plate reader is idle (it
        reads a few crops a second; the rest would be copied for nothing)."""
        s = st.settings
        if s.output or s.save_frames:
            return True
        now = time.perf_counter()
        if s.serve_mjpeg is not None and st.watched and (not s.mjpeg_fps or now - st.preview_at >= 0.5 / s.mjpeg_fps):
            st.preview_at = now
            return True
        if not s.ocr or self._plate_reader is None or (st.source.live and not self._plate_reader.idle()):
            return False
        if now - st.plate_pixels_at < 0.1:
            return False
        st.plate_pixels_at = now
        return True

    def _decode(self, st: _Stream) -> None:
        src = st.source
        it = iter(src)
        board = self.board
        try:
            while not self._stop.is_set() and not st.stopped and not st.stop_reading:
                t0 = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    break
                except Exception as e:  # the source ended badly: the frames read so far are still processed
                    st.source_error = message(e)
                    with self._lock:
                        st.error = st.error or st.source_error
                    break
                st.last_frame_at = time.perf_counter()
                dt = st.last_frame_at - t0
                st.decode_s += dt
                st.stages.add("decode", dt * 1000)
                item = _Item(st.sid, frame.index, frame.time_s, t0, frame.image)
                written = bool(st.settings.output or st.settings.save_frames)
                # a file's frames wait for a free slot when every frame is written or read for plates; a
                # preview never holds a frame back
                wait = not src.live and (written or st.settings.ocr)
                # a frame whose pixels are only to be shown or read goes on without them when no slot is free
                if self._wants_pixels(st) and not self._attach_pixels(st, item, not wait) and written:
                    if not src.live:
                        break  # stopped while waiting for a free slot
                    st.dropped_no_slot += 1
                    continue
                if not board.put(st.sid, item, src.live, self._stop):
                    self._release(st, item)
                    break
        finally:
            board.end(st.sid)

    def _attach_pixels(self, st: _Stream, item: _Item, no_wait: bool) -> bool:
        """Give a frame its pixels for the worker; False if no slot was free (`no_wait`: none at once)."""
        image = item.image
        spec = st.slot_spec
        if spec is None or tuple(image.shape) != spec.shape:
            item.pixels = host_image(image)
            return True
        while True:
            try:
                slot = st.free.get(timeout=0.2) if not no_wait else st.free.get_nowait()
                break
            except queue.Empty:
                if no_wait or self._stop.is_set() or st.stopped:
                    return False
        view = np.ndarray(spec.shape, np.uint8, buffer=st.shm.buf, offset=slot * spec.nbytes)
        if isinstance(image, np.ndarray):
            np.copyto(view, image)
        else:  # an NVDEC frame on the GPU: one copy down into the slot
            import torch

            torch.from_numpy(view).copy_(image)
        item.slot = slot
        return True

    def _release(self, st: _Stream, item) -> None:
        if getattr(item, "slot", None) is not None and st.free is not None:
            st.free.put(item.slot)
            item.slot = None

    def _release_dropped(self, item: _Item) -> None:
        """A live stream's dropped frame gives its slot back (called by the board)."""
        if item.slot is not None:
            self._release(self.streams[item.sid], item)

    # -- detect ---------------------------------------------------------------------------------
    def _detect_loop(self) -> None:
        """Two threads: this one launches batches (on the GPU: letterbox, network and candidate selection
        are queued without waiting), the finisher waits for each, runs NMS on the host and sends the
        detections to the workers. The host's work on one batch overlaps the device's on the next."""
        jobs: queue.Queue = queue.Queue(maxsize=2)
        finisher = threading.Thread(target=self._finish_loop, args=(jobs,), name="finish", daemon=True)
        finisher.start()
        try:
            with self._detect_stream():
                self._launch_batches(jobs)
        finally:
            jobs.put(None)
            finisher.join()

    @contextlib.contextmanager
    def _detect_stream(self):
        """On CUDA, detection runs on a stream of its own. Decoders (NVDEC's kernels, our BGR copies)
        work on the legacy default stream, which waits for, and is waited for by, every blocking
        stream: sharing it would make each decoder wait for whole detector batches."""
        self._stream = None
        if self._gpu_index() is None or not getattr(self.detector, "gpu_ops", False):
            yield
            return
        import torch

        self._stream = torch.cuda.Stream(device=f"cuda:{self._gpu_index()}")
        with torch.cuda.stream(self._stream):
            yield

    def _launch_batches(self, jobs: queue.Queue) -> None:
        es = self.es
        per_stream, wait_s = es.batch, es.max_wait_ms / 1000
        n_live = max(1, len(self._active()))
        try:
            while True:
                if self.service:  # its streams come and go: a batch holds up to `batch` frames of each open one
                    n_live = max(1, sum(st.part is None for st in self.streams))
                got = self.board.take(self._max_batch(n_live), per_stream, wait_s)
                if got is None:
                    break
                batch, finished = got
                ok = batch and self._fatal is None and not self._hurry.is_set()
                jobs.put((self._launch(batch) if ok else self._drop(batch), finished))
        except BaseException as e:  # the detector failed: stop everything, finish what can be finished
            self._failed_detector(e)
            while (got := self.board.take(1 << 30, 1 << 30, 0)) is not None:
                jobs.put((self._drop(got[0]), got[1]))

    def _failed_detector(self, e: BaseException) -> None:
        self._fatal = e
        self.stop("error")
        for st in self._active():
            with self._lock:
                st.error = st.error or message(e)
            st.stopped = True

    def _drop(self, batch: list[tuple[int, _Item]]) -> None:
        for sid, it in batch:
            self._release(self.streams[sid], it)

    def _launch(self, batch: list[tuple[int, _Item]]):
        streams = self.streams
        keep = [(sid, it) for sid, it in batch if not streams[sid].stopped]
        self._drop([(sid, it) for sid, it in batch if streams[sid].stopped])
        if not keep:
            return None
        t = time.perf_counter()
        images = [it.image for _, it in keep]
        if not getattr(self.detector, "gpu_ops", False):
            result = self.detector.detect_batch(images)  # the CPU path: done here
        else:
            if self._stream is not None and not isinstance(images[0], np.ndarray):
                import torch

                # frames made on the decoders' stream: wait for it, and tell the allocator that this
                # stream reads them (their memory must not be reused before it is done)
                self._stream.wait_stream(torch.cuda.default_stream(self._stream.device))
                for im in images:
                    im.record_stream(self._stream)
            t0 = time.perf_counter_ns()
            result = self.detector.launch(self.detector.upload(images), t0, keep_raw=True)
        self.launch_busy_s += time.perf_counter() - t
        return keep, result

    def _finish_loop(self, jobs: queue.Queue) -> None:
        while (item := jobs.get()) is not None:
            job, finished = item
            if job is not None:
                try:
                    self._complete(*job)
                except BaseException as e:
                    self._failed_detector(e)
                    self._drop(job[0])
            for sid in finished:
                st = self.streams[sid]
                if st.part is None:
                    self._send(st.worker, ("end", sid))

    def _complete(self, keep: list[tuple[int, _Item]], result) -> None:
        if self._fatal is not None:
            self._drop(keep)
            return
        t = time.perf_counter()
        if isinstance(result, tuple):  # the CPU path: Detections, finished in the launching thread
            dets, per = result
            dets = [d.to_array() for d in dets]
        else:
            dets, per = self.detector.finish(result, arrays=True)
        self.batches += 1
        self.batched_frames += len(keep)
        self.largest_batch = max(self.largest_batch, len(keep))
        streams = self.streams
        messages: dict[int, list] = {}
        for (sid, it), d in zip(keep, dets):
            st = streams[sid]
            for stage, ms in per.items():
                st.stages.add(stage, ms)
            messages.setdefault(st.worker, []).append((sid, it.index, it.time_s, it.t0, d, it.slot, it.pixels))
            it.image = None  # the device frame can go
        for w, m in messages.items():
            self._send(w, ("frames", m))
        self.finish_busy_s += time.perf_counter() - t

    # -- summary --------------------------------------------------------------------------------
    def _summary(self, memory: dict) -> dict:
        results = [self._stream_summary(st) for st in self.streams]
        frames = sum(r["frames"] for r in results)
        wall = self.wall_s
        busy = {
            "launch_pct": round(100 * self.launch_busy_s / wall, 1) if wall else 0.0,
            "finish_pct": round(100 * self.finish_busy_s / wall, 1) if wall else 0.0,
            "decode_pct_max": round(100 * max((st.decode_s for st in self.streams), default=0.0) / wall, 1)
            if wall
            else 0.0,
            "worker_pct_max": self._worker_busy_pct(wall),
        }
        errors = [r["error"] for r in results if r["error"]]
        return {
            "streams": results,
            "frames": frames,
            "fps": frames / wall if wall > 0 else 0.0,
            "wall_s": wall,
            "batcher": {
                "batches": self.batches,
                "frames": self.batched_frames,
                "mean_batch": round(self.batched_frames / self.batches, 2) if self.batches else 0.0,
                "max_batch": self._max_batch(len(self._active())),
                "largest_batch": self.largest_batch,
                "max_wait_ms": self.es.max_wait_ms,
            },
            "workers": self.n_workers,
            "warmup_s": round(self.warmup_s, 3),
            "busy": busy,
            "memory": memory,
            "error": errors[0] if errors else None,
            "interrupted": self.stop_reason in INTERRUPTED,
            "stopped_by": self.stop_reason,
        }

    def _worker_busy_pct(self, wall: float) -> float:
        per_worker: dict[int, float] = {}
        for st in self._active():
            stages = (st.part or {}).get("stages")
            if stages is not None:
                per_worker[st.worker] = (
                    per_worker.get(st.worker, 0.0) + sum(h.total for h in stages.stages.values()) / 1000
                )
        return round(100 * max(per_worker.values(), default=0.0) / wall, 1) if wall else 0.0

    def _stream_summary(self, st: _Stream) -> dict:
        part = st.part or {}
        src = st.source
        stages = StageTimes()
        stages.merge(st.stages)
        if part.get("stages") is not None:
            stages.merge(part["stages"])
        frames = part.get("frames", 0)
        wall = (st.t_end or time.perf_counter()) - (st.t_begin or self.t_start)
        error = st.error or part.get("error")
        return {
            "source": src.description if src is not None else "",
            "frames": frames,
            "source_frames": src.frame_count if src is not None else None,
            "dropped_frames": self._dropped(st),
            "detections": part.get("detections", 0),
            "tracks": part.get("tracks", 0),
            "counts": part.get("counts", {}),
            "fps": frames / wall if wall > 0 else 0.0,
            "latency_ms": part.get("latency_ms", {"mean": 0.0, "p95": 0.0}),
            "stages": stages.table(),
            "wall_s": wall,
            "interrupted": self.stop_reason in INTERRUPTED,
            "source_error": st.source_error,
            "output": part.get(
                "output",
                {"video": None, "video_frames": 0, "video_backend": None, "frames_dir": None, "events": None},
            ),
            "plates": part.get("plates"),
            "error": error,
        }


def _worker_settings(settings: StreamSettings, source: FrameSource) -> StreamSettings:
    """A stream's settings as its worker gets them: a file's plate reads catch up on what a busy reader
    skipped (nothing is lost by reading a file's crops later; a camera's would come too late)."""
    if settings.ocr and not source.live and not settings.plates_catch_up:
        return dataclasses.replace(settings, plates_catch_up=True)
    return settings


def single_stream_summary(result: dict) -> dict:
    """The summary of a one-stream run: the stream's own summary with the engine's figures beside it."""
    (stream,) = result["streams"]
    return {
        **stream,
        **{k: result[k] for k in ("batcher", "workers", "warmup_s", "busy", "memory", "stopped_by")},
        "fps": result["fps"],
        "wall_s": result["wall_s"],
    }


def stream_path(path: str | None, i: int, n: int) -> str | None:
    """Per-stream output names when several streams run: out.mp4 -> out-0.mp4, out-1.mp4, ..."""
    if path is None or n == 1:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{i}{p.suffix}"))


def per_stream_settings(s: StreamSettings, n: int) -> list[StreamSettings]:
    """One StreamSettings per stream: outputs get per-stream names, MJPEG serves one stream."""
    return [
        dataclasses.replace(
            s,
            output=stream_path(s.output, i, n),
            events=stream_path(s.events, i, n),
            save_frames=str(Path(s.save_frames) / f"stream{i}") if (s.save_frames and n > 1) else s.save_frames,
            plate_crops=str(Path(s.plate_crops) / f"stream{i}") if (s.plate_crops and n > 1) else s.plate_crops,
        )
        for i in range(n)
    ]


def run_sequential(source: FrameSource, detector, settings: StreamSettings, on_frame: Callable | None = None) -> dict:
    """The reference path: one frame at a time, detect, track, count and write, in this thread.

    The engine must give exactly these events for the same stream and settings (tests hold it to that).
    """
    p = StreamProcessor(settings, dict(detector.names), source.fps, tuple(source.size))
    stages = StageTimes()
    t_start = time.perf_counter()
    it = iter(source)
    error = None
    try:
        while True:
            t0 = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                break
            except YoloAccelError as e:
                error = str(e)
                break
            stages.add("decode", (time.perf_counter() - t0) * 1000)
            dets, per = detector.detect_batch([frame.image])
            for k, v in per.items():
                stages.add(k, v)
            image = host_image(frame.image) if settings.needs_pixels else None
            tracked, _ = p.process(frame.index, frame.time_s, t0, dets[0].to_array(), image)
            if on_frame is not None:
                on_frame(frame.index, tracked)
    finally:
        part = p.finish()
        source.close()
    wall = time.perf_counter() - t_start
    stages.merge(part["stages"])
    return {
        "source": source.description,
        "frames": part["frames"],
        "detections": part["detections"],
        "tracks": part["tracks"],
        "counts": part["counts"],
        "fps": part["frames"] / wall if wall > 0 else 0.0,
        "latency_ms": part["latency_ms"],
        "stages": stages.table(),
        "wall_s": wall,
        "output": part["output"],
        "plates": part["plates"],
        "error": error,
    }
