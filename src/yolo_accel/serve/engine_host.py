"""The app's video engine: one long-lived process running the batched multi-stream engine
(`VideoEngine(service=True)`, the engine under `video`) that every stream of the app is added to.

    server (web app, database)                      engine process
    EngineClient ── ("add", key, StreamJob) ───>    opens the source (a thread per stream: a camera may
                 ── ("stop", key) ─────────────>    take retries), then add_stream / stop_stream
                 <── ("ready", error) ──────────    the detector is loaded, the engine's workers are up
                 <── ("started", key, text) ────    the stream runs
                 <── ("stats", {key: Live}) ────    twice a second: last frame done, stages, health
                 <── ("engine", {...}) ─────────    twice a second: batches, frames, busy shares
                 <── ("done", key, end) ────────    it ended: {"error", "frames", "fps", "next_frame"}

One detector, one CUDA context and one set of CUDA graphs serve every stream, batched across
streams, as in `video`. Each stream's events go to its events file (written and flushed by the
engine's worker processes before they report a frame done), and a frame is reported done only
after that, so a frame counted as done has its events in the file (see StreamManager._tail).

The process ends with the server, even one killed by SIGKILL (it watches its parent), draining its
streams as a SIGTERM does.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import message

BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)  # the stage histograms' upper edges
# The shared detector keeps every class and this many boxes an image; each stream then keeps its own
# classes and its own --max-det (StreamSettings.classes, max_det): what a detector of its own would keep.
SHARED_MAX_DET = 300
STATS_EVERY_S = 0.5


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


class EngineClient:
    """The server's side: starts the engine process, sends it streams, hands its replies to callbacks.

    `on_started(key, description)`, `on_live(key, Live)` and `on_done(key, end)` (set by `bind`) run in
    the client's reader thread. If the engine process dies, every stream on it is done with that error;
    the next `add` starts a new process.
    """

    def __init__(self, settings):
        self.s = settings
        self.on_started: Callable = lambda key, text: None
        self.on_live: Callable = lambda key, live: None
        self.on_done: Callable = lambda key, end: None
        self._lock = threading.Lock()
        self._proc = None
        self._commands = self._replies = None
        self._keys: set = set()  # streams sent and not yet done
        self._ready = threading.Event()
        self._error: str | None = None
        self.names: dict[int, str] | None = None  # the model's classes, once the engine is ready
        self.figures: dict = {}  # the engine's own, twice a second (see _Host.engine_figures)

    def bind(self, on_started: Callable, on_live: Callable, on_done: Callable) -> None:
        self.on_started, self.on_live, self.on_done = on_started, on_live, on_done

    def start(self, timeout_s: float = 600.0) -> dict[int, str]:
        """Start the engine process now and wait until its model is loaded; the model's class names. A model
        that cannot load (or a device that is not there) raises YoloAccelError with the engine's line."""
        from ..errors import YoloAccelError

        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._start()
            proc = self._proc
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.2):
            if not proc.is_alive() or time.monotonic() > deadline:
                break
        if not self._ready.is_set():
            self._ready.wait(2.0)  # the reader thread's last word on a process that just exited
        if self._error is not None or not self._ready.is_set():
            raise YoloAccelError(self._error or "the engine process did not start")
        return dict(self.names or {})

    @property
    def pids(self) -> list[int]:
        """The engine process and its workers (for the app's process metrics)."""
        return [self._proc.pid] if self._proc is not None and self._proc.is_alive() else []

    def add(self, key, job: StreamJob, timeout_s: float = 300.0) -> None:
        """Run `job` as stream `key`; returns once the engine process has taken it (the model is loaded).
        A failure to start the engine ends the stream with that error (`on_done`)."""
        from ..errors import YoloAccelError

        with self._lock:
            self._keys.add(key)
        try:
            self.start(timeout_s)
        except YoloAccelError as e:
            self._finish(key, {"error": str(e)})
            return
        with self._lock:
            commands = self._commands
        commands.put(("add", key, job))

    def stop(self, key) -> None:
        with self._lock:
            if self._commands is not None and key in self._keys:
                self._commands.put(("stop", key))

    def close(self, wait_s: float = 60.0) -> None:
        """Stop every stream (each drains and finishes its files) and the engine process."""
        with self._lock:
            proc, commands = self._proc, self._commands
        if proc is None:
            return
        if proc.is_alive():
            commands.put(("shutdown",))
            proc.join(wait_s)
        if proc.is_alive():
            proc.terminate()
            proc.join(10)

    # -- inside -----------------------------------------------------------------------------------
    def _start(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # the engine holds CUDA; the server must not fork it
        self._commands, self._replies = ctx.Queue(), ctx.Queue()
        self._ready, self._error = threading.Event(), None
        # not daemonic: a daemonic process may not start the engine's worker processes; it still ends with
        # the server (close() on shutdown, its watchdog if the server is killed)
        self._proc = ctx.Process(
            target=host_main, args=(self.s, self._commands, self._replies), name="yolo-accel-engine", daemon=False
        )
        self._proc.start()
        threading.Thread(
            target=self._read, args=(self._proc, self._replies), name="engine-replies", daemon=True
        ).start()

    def _finish(self, key, end: dict) -> None:
        with self._lock:
            if key not in self._keys:
                return
            self._keys.discard(key)
        self.on_done(key, end)

    def _read(self, proc, replies) -> None:
        """Hand the engine process's replies to the callbacks until it has exited and said all."""
        while True:
            try:
                msg = replies.get(timeout=0.5)
            except queue.Empty:
                if proc.is_alive():
                    continue
                break
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "ready":
                self._error = msg[1]
                if len(msg) > 2:
                    self.names = msg[2]
                self._ready.set()
            elif kind == "started":
                self.on_started(msg[1], msg[2])
            elif kind == "engine":
                self.figures = msg[1]
            elif kind == "stats":
                for key, live in msg[1].items():
                    if key in self._keys:
                        self.on_live(key, live)
            elif kind == "done":
                self._finish(msg[1], msg[2])
            elif kind == "exit":
                break
        proc.join(10)
        code = proc.exitcode
        with self._lock:
            left = list(self._keys) if self._proc is proc else []
            if self._proc is proc and not self._ready.is_set():
                self._error = self._error or f"the engine process exited with code {code}"
                self._ready.set()
        for key in left:  # streams the engine never reported the end of: it died
            self._finish(key, {"error": f"the engine process exited with code {code}"})


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


def host_main(s, commands, replies) -> None:
    """The engine process: load the detector, start the service engine, take streams until told to stop
    (or until the server is gone)."""
    server = os.getppid()

    def watch_server() -> None:
        while os.getppid() == server:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)  # the engine's handler drains every stream

    threading.Thread(target=watch_server, name="watch-server", daemon=True).start()
    try:
        from ..detector import Detector
        from ..video.engine import EngineSettings, VideoEngine

        kwargs = s.detector_kwargs()
        det = Detector(**kwargs, max_det=SHARED_MAX_DET, rect=False)
        decoder = nvdec_device(s.nvdec, det)
        es = EngineSettings(
            batch=s.batch or (8 if det.backend.device.is_cuda else 1),
            max_wait_ms=s.max_wait_ms,
            workers=s.workers,
            max_streams=s.max_streams,
            plates_device="cpu" if s.ocr else None,  # ONNX Runtime's CUDA provider read slower (BENCHMARKS.md)
        )
        host = _Host(s, replies, decoder)
        engine = VideoEngine(det, [], [], es, service=True, on_stream_done=host.stream_done)
        host.engine = engine
    except Exception as e:  # a model that cannot load, a device that is not there
        replies.put(("ready", message(e)))
        return
    threading.Thread(target=host.take_commands, args=(commands,), name="commands", daemon=True).start()
    threading.Thread(target=host.send_stats, name="stats", daemon=True).start()
    threading.Thread(target=host.say_ready, name="ready", daemon=True).start()
    try:
        engine.run()
    except Exception as e:  # the detector failed: every stream has ended with that error by now
        replies.put(("ready", message(e)))
    finally:
        host.closed.set()
        det.close()
        replies.put(("exit",))
        replies.close()
        replies.join_thread()


class _Host:
    """The engine process's bookkeeping: the server's stream keys and the engine's stream ids."""

    def __init__(self, s, replies, decoder: str | None):
        self.s, self.replies, self.decoder = s, replies, decoder
        self.engine = None
        self.lock = threading.Lock()
        self.sid_of: dict = {}  # key -> engine stream id
        self.key_of: dict[int, object] = {}
        self.cancelled: set = set()  # stopped before their source opened
        self.early: dict[int, dict] = {}  # summaries of streams that ended inside add_stream
        self.closed = threading.Event()

    def say_ready(self) -> None:
        if self.engine.wait_started(300):
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
                with self.lock:
                    sid = self.sid_of.get(cmd[1])
                    if sid is None:
                        self.cancelled.add(cmd[1])
                if sid is not None:
                    self.engine.stop_stream(sid)
            elif cmd[0] == "shutdown":
                self.engine.stop("terminated")

    def add(self, key, job: StreamJob) -> None:
        import dataclasses

        from ..names import parse_classes
        from ..video.sources import open_source

        s = self.s
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
        self.replies.put(("started", key, src.description))
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
        self.replies.put(("stats", {key: self.live(sid)}))
        end = {"error": summary["error"], "frames": summary["frames"], "fps": summary["fps"]}
        end["next_frame"] = self.live(sid).next_frame
        self.replies.put(("done", key, end))
        with self.lock:
            self.sid_of.pop(key, None)
            self.key_of.pop(sid, None)
            self.cancelled.discard(key)

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
