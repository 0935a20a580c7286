"""A service engine's bookkeeping, for whoever runs one for others (serve's engine process, serve's Ray
engine actors): streams named by the caller's keys, their sources opened here (a thread per stream: a
camera may take retries), their progress, stage times and health, and their ends, all as messages put
on `replies` (a multiprocessing queue, or a plain one that a Ray actor's poll drains).

Messages: ("stats", {key: Live}) twice a second,
("engine", figures) twice a second, ("done", key, {"error", "frames", "fps", "next_frame"}).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field

from ..errors import message

BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)  # the stage histograms' upper edges
# The shared detector keeps every class and this many boxes an image; each stream then keeps its own
# classes and its own --max-det (StreamSettings.classes, max_det): what a detector of its own would keep.
SHARED_MAX_DET = 300
STATS_EVERY_S = 0.5
# the engine's start: its workers, and with --cuda-graph or --compile a capture or compilation per batch size
STARTUP_S = 1800.0


@dataclass
class StreamJob:
    """What the engine process needs to run one of the app's streams."""

    source: str
    settings: object  # video.processor.StreamSettings
    loop: bool = False
    open_at: int = 0  # the source's first frame (a resumed stream's warm-up start)
    realtime: bool = False
    classes: str | None = None  # the stream's classes ("car,bus" or ids), of the shared detector's


@dataclass
class Live:
    """A running stream's figures, as the engine process last sent them."""

    next_frame: int | None = None  # the index after the last frame whose events are written (None: none yet)
    stages: dict = field(default_factory=dict)  # {stage: (count, total ms, cumulative counts per BUCKETS_MS)}
    dropped: int = 0
    health: dict = field(default_factory=dict)  # VideoEngine.health


def stage_histograms(stages) -> dict:
    """{stage: (count, total ms, cumulative bucket counts)} of a StageTimes (small enough to send often)."""
    out = {}
    for name, h in stages.stages.items():
        if h.count:
            out[name] = (int(h.count), float(h.total), [int(b) for b in h.below(BUCKETS_MS)])
    return out


def nvdec_device(choice: str, detector) -> str | None:
    """The device NVDEC decodes files on ('cuda:N'), or None: `off`; `auto` where the detector takes
    device frames and PyNvVideoCodec is installed; `on` insists (one line saying why it cannot)."""
    from ..errors import SettingsError

    if choice == "off":
        return None
    dev = detector.backend.device
    usable = dev.is_cuda and detector.gpu_ops
    if choice == "on" and not usable:
        raise SettingsError(
            "--nvdec on: decoding on the GPU needs --device cuda and a backend that takes device frames"
        )
    if not usable:
        return None
    try:
        import PyNvVideoCodec  # noqa: F401
    except ImportError:
        if choice == "on":
            raise SettingsError(
                "--nvdec on: PyNvVideoCodec is not installed (pip install 'yolo-accel[nvdec]')"
            ) from None
        return None
    return str(dev)


def start_service(detector_kwargs: dict, s, replies, plates_device: str | None = None) -> ServiceHost:
    """The detector (every class, SHARED_MAX_DET boxes an image), a service VideoEngine on it with `s`'s engine
    fields (batch, max_wait_ms, workers, max_streams, nvdec) and the ServiceHost that keeps its books;
    `host.engine.run()` starts it."""
    from ..detector import Detector
    from .engine import EngineSettings, VideoEngine

    det = Detector(**detector_kwargs, max_det=SHARED_MAX_DET, rect=False)
    try:
        host = ServiceHost(s, replies, nvdec_device(s.nvdec, det))
    except BaseException:
        det.close()
        raise
    es = EngineSettings(
        batch=s.batch or (8 if det.backend.device.is_cuda else 1),
        max_wait_ms=s.max_wait_ms,
        workers=s.workers,
        max_streams=s.max_streams,
        plates_device=plates_device,
    )
    host.engine = VideoEngine(det, [], [], es, service=True, on_stream_done=host.stream_done)
    return host


class ServiceHost:
    """The caller's stream keys and the engine's stream ids; `s`: what opens sources (reconnect_retries,
    reconnect_backoff_s, reconnect_max_s); `decoder`: NVDEC's device for files (None: the CPU)."""

    def __init__(self, s, replies, decoder: str | None):
        self.s, self.replies, self.decoder = s, replies, decoder
        self.engine = None
        self.lock = threading.Lock()
        self.sid_of: dict = {}  # key -> engine stream id
        self.key_of: dict[int, object] = {}
        self.adding: set = set()  # keys whose source is being opened
        self.cancelled: set = set()  # of those, the ones stopped meanwhile
        self.early: dict[int, dict] = {}  # summaries of streams that ended inside add_stream
        self.closed = threading.Event()

    def say_ready(self) -> None:
        if self.engine.wait_started(STARTUP_S):
            self.replies.put(("ready", None, dict(self.engine.detector.names)))
        else:
            self.replies.put(("ready", "the engine's workers did not start"))

    def take_commands(self, commands) -> None:
        while not self.closed.is_set():
            try:
                cmd = commands.get(timeout=0.5)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            if cmd[0] == "add":
                threading.Thread(target=self.add, args=cmd[1:], name=f"add-{cmd[1]}", daemon=True).start()
            elif cmd[0] == "stop":
                self.stop(cmd[1])
            elif cmd[0] == "shutdown":
                self.engine.stop("terminated")

    def stop(self, key) -> None:
        """Stop stream `key` (one whose source is still opening ends as soon as it has opened)."""
        with self.lock:
            sid = self.sid_of.get(key)
            if sid is None and key in self.adding:
                self.cancelled.add(key)
        if sid is not None:
            self.engine.stop_stream(sid)

    def add(self, key, job: StreamJob) -> None:
        """Open the job's source and add it to the engine (in a thread of its own: a camera may take retries);
        a stop that comes meanwhile ends it as soon as it has opened."""
        with self.lock:
            self.adding.add(key)
        try:
            self._add(key, job)
        finally:
            with self.lock:
                self.adding.discard(key)
                self.cancelled.discard(key)  # a stream started again under this key starts afresh

    def _add(self, key, job: StreamJob) -> None:
        import dataclasses

        from ..names import parse_classes
        from ..video.sources import open_source

        s = self.s
        # no decoder opens before the engine's warm-up has captured its CUDA graphs (CudaGraphs.freeze)
        if not self.engine.wait_started(STARTUP_S):
            self.replies.put(("done", key, {"error": "the engine did not start"}))
            return
        try:
            if self.decoder is not None:
                import torch

                # this thread's current CUDA context is the detector's: NVDEC's decoder and its frames live there
                torch.cuda.set_device(self.decoder)
            if job.classes:
                ids = parse_classes(job.classes, dict(self.engine.detector.names))
                job.settings = dataclasses.replace(job.settings, classes=tuple(int(i) for i in ids))
            live = "://" in job.source or job.source.isdigit()
            src = open_source(
                job.source,
                retries=s.reconnect_retries,
                backoff_s=s.reconnect_backoff_s,
                max_backoff_s=s.reconnect_max_s,
                nvdec_device=None if live else self.decoder,
                loop=job.loop,
                start_frame=job.open_at,
                realtime=job.realtime and not live,
            )
        except Exception as e:  # a file that is gone, a camera that never answered
            self.replies.put(("done", key, {"error": message(e)}))
            return
        with self.lock:
            cancelled = key in self.cancelled
        if cancelled:
            src.close()
            self.replies.put(("done", key, {}))
            return
        try:
            sid = self.engine.add_stream(src, job.settings)
        except Exception as e:  # the engine is stopping
            src.close()
            self.replies.put(("done", key, {"error": message(e)}))
            return
        with self.lock:
            self.sid_of[key], self.key_of[sid] = sid, key
            early = self.early.pop(sid, None)
            stop = key in self.cancelled
        if early is not None:
            self._send_done(sid, key, early)
            return
        if stop:
            self.engine.stop_stream(sid)

    def stream_done(self, sid: int, summary: dict) -> None:
        with self.lock:
            key = self.key_of.get(sid)
            if key is None:  # it ended inside add_stream: `add` sends it
                self.early[sid] = summary
                return
        self._send_done(sid, key, summary)

    def _send_done(self, sid: int, key, summary: dict) -> None:
        live = self.live(sid)
        self.replies.put(("stats", {key: live}))
        end = {"error": summary["error"], "frames": summary["frames"], "fps": summary["fps"]}
        end["next_frame"] = live.next_frame
        self.replies.put(("done", key, end))
        with self.lock:
            self.sid_of.pop(key, None)
            self.key_of.pop(sid, None)

    def live(self, sid: int) -> Live:
        engine = self.engine
        last = engine.last_done.get(sid)
        stages, dropped = engine.live_stats(sid)
        return Live(None if last is None else last + 1, stage_histograms(stages), dropped, engine.health(sid))

    def send_stats(self) -> None:
        while not self.closed.wait(STATS_EVERY_S):
            with self.lock:
                running = dict(self.key_of)
            out = {}
            for sid, key in running.items():
                with contextlib.suppress(Exception):  # a stream ending meanwhile
                    out[key] = self.live(sid)
            if out:
                self.replies.put(("stats", out))
            self.replies.put(("engine", self.engine_figures()))

    def engine_figures(self) -> dict:
        """The engine's batching and busy shares since it started (what `video`'s summary reports per run)."""
        e = self.engine
        up = time.perf_counter() - getattr(e, "t_start", time.perf_counter())
        return {
            "uptime_s": round(up, 1),
            "streams": len(self.key_of),
            "batches": e.batches,
            "frames": e.batched_frames,
            "mean_batch": round(e.batched_frames / e.batches, 2) if e.batches else 0.0,
            "launch_pct": round(100 * e.launch_busy_s / up, 1) if up > 0 else 0.0,
            "finish_pct": round(100 * e.finish_busy_s / up, 1) if up > 0 else 0.0,
            "workers": e.n_workers,
            "nvdec": self.decoder is not None,
            "runtime": e.detector.describe(),
        }
