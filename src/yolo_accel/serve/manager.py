"""Runs the app's streams, all of them on one long-lived batched video engine in a process of its own
(serve/engine_host.py), or with --ray as actors on a Ray cluster.

The engine process holds the detector, so detection never competes with the web server for the
interpreter lock; streams are added to it and stopped without disturbing the others. Each stream's
crossing events go to a JSON-lines file (as `video --events` writes them) that a tailer thread of
the server commits to the database as they appear (the engine flushes them after every batch); the
engine process reports each stream's progress, stage-time histograms and source health twice a
second, and serves its annotated frames on a loopback MJPEG port (drawn only while someone watches)
that the app relays to the page. A stopped file stream resumes at the frame where it stopped.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import message
from .engine_host import BUCKETS_MS, EngineClient, Live, StreamJob
from .store import Store

# A resumed file stream starts decoding this many frames before its resume point, tracking but not
# counting them, so that a vehicle about to cross a line has its track (and its side of the line) again.
RESUME_WARMUP_FRAMES = 75
# A camera (URL) stream whose frames stop for this long is shown as "reconnecting" until they come again:
# its source is reopening a dropped connection, and the page should not show a frozen "running".
STALL_S = 5.0
# how often a stream's events file is read for new crossings: half of it is, on average, the wait from a
# crossing written to the crossing stored (and sent to the page)
TAIL_EVERY_S = 0.05
_PER_STAGE = 2 + len(BUCKETS_MS)  # count, total ms, cumulative buckets


@dataclass
class ServeSettings:
    """`yolo-accel serve` options (the model's and the server's)."""

    model: str
    data_dir: Path
    device: str = "cpu"
    backend: str | None = None
    half: bool = False
    imgsz: int | None = None
    conf: float = 0.25
    iou: float = 0.5  # as `video`: vehicles in traffic overlap more than objects in photos
    max_det: int = 30
    db_url: str | None = None  # default: SQLite in data_dir
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    allow_hosts: tuple[str, ...] = ()  # host names besides loopback's and --host that requests may name
    allow_origins: tuple[str, ...] = ()  # pages on other origins that may call the API (https://ops.example)
    max_upload_mb: int = 2048
    upload_timeout_s: float = 30.0  # an upload that sends nothing for this long is dropped
    preview_fps: float = 15.0  # the live video's frame rate at most (frames nobody sees are not drawn)
    ocr: bool = False  # read vehicles' plates (the events get their text, the page their crops)
    plate_pattern: str | None = None
    deploy: str | None = None  # a bundle from `optimize`: its artifact and configuration for every stream
    ray: str | None = None  # run the streams as actors on this Ray cluster ("local", "auto", HOST:PORT)
    ray_gpu_share: float = 1.0  # of a GPU per engine actor on the cluster (--device cuda; 1: one engine per GPU)
    # the engine (as `video`'s options)
    cuda_graph: bool = False
    compile: bool = False
    nvdec: str = "auto"  # auto (on CUDA where PyNvVideoCodec is installed), on, off
    batch: int | None = None  # frames per stream in a detector batch (default 8 on CUDA, 1 on the CPU)
    max_wait_ms: float = 2.0
    workers: int | None = None  # tracking and counting processes (default: one per core but two, at most 8)
    max_streams: int = 64  # streams running at once at most
    # live cameras: a dropped connection is reopened up to `reconnect_retries` times, waiting
    # `reconnect_backoff_s`, then twice as long each time up to `reconnect_max_s`
    reconnect_retries: int = 10
    reconnect_backoff_s: float = 1.0
    reconnect_max_s: float = 5.0

    def detector_kwargs(self) -> dict:
        """Detector(**kwargs) for a stream: the bundle's configuration, or the options given."""
        if self.deploy:
            from ..deploy import load_deploy

            return load_deploy(self.deploy).detector_kwargs()
        kwargs = {
            "model": self.model,
            "backend": self.backend,
            "device": self.device,
            "half": self.half,
            "imgsz": self.imgsz,
            "conf": self.conf,
            "iou": self.iou,
        }
        if self.cuda_graph or self.compile:
            from ..backends.pytorch import TorchOptions

            kwargs["torch_options"] = TorchOptions(cuda_graph=self.cuda_graph, compile=self.compile)
        return kwargs

    @property
    def database(self) -> str:
        return self.db_url or f"sqlite:///{(Path(self.data_dir) / 'yolo-accel.db').resolve()}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Run:
    """One running stream."""

    sid: int
    mjpeg_port: int
    events_path: Path
    start_frame: int = 0  # where this run began in its source (a resumed stream's stopping point)
    track_id_offset: int = 0  # a resumed run's track ids start above the stored events' ids
    started: float = field(default_factory=time.perf_counter)
    next_frame: int = 0  # the first frame whose events are not all written yet, as the engine last said
    stats: tuple = ({}, 0)  # (stage histograms, dropped frames), as the engine last said
    health: dict = field(default_factory=dict)  # the source's: connected, reconnects, since_frame_s, dropped
    end: dict | None = None  # what the engine reported at the stream's end
    reported: threading.Event = field(default_factory=threading.Event)  # the engine reported its end
    recent_ms: dict[str, float] = field(default_factory=dict)  # stage means over the last seconds
    recent_fps: float | None = None  # over the last seconds (the model's loading left out)
    _last: tuple = ()  # (time, frames, stage histograms) at the last refresh
    stop_requested: bool = False
    ended: threading.Event = field(default_factory=threading.Event)  # the process is gone
    done: threading.Event = field(default_factory=threading.Event)  # and its end is stored
    thread: threading.Thread | None = None
    shown: str = "starting"  # the status last stored
    _moved: tuple = ()  # (frames, time) when the frame count last changed

    def status_now(self, live: bool) -> str | None:
        """The status to store, when it changed: "running" once frames flow (loading the model, opening
        and retrying a camera is "starting"); a live source whose frames stop for STALL_S is
        "reconnecting" until they flow again."""
        now, n = time.perf_counter(), self.frames
        if not self._moved or n != self._moved[0]:
            self._moved = (n, now)
        want = self.shown
        if n > self.start_frame:
            dropped = live and (self.health.get("connected") is False or now - self._moved[1] > STALL_S)
            want = "reconnecting" if dropped else "running"
        if want == self.shown:
            return None
        self.shown = want
        return want

    @property
    def frames(self) -> int:
        """Frames of the source done (a resumed run counts on from where it started)."""
        return max(self.start_frame, self.next_frame)  # the warm-up's frames are before the start

    @property
    def fps(self) -> float:
        if self.recent_fps is not None:
            return self.recent_fps
        wall = time.perf_counter() - self.started
        return (self.frames - self.start_frame) / wall if wall > 0 else 0.0

    def refresh(self) -> None:
        """FPS and mean ms per stage over the time since the last refresh (every few seconds)."""
        now, frames = time.perf_counter(), self.frames
        stages = self.stats[0]
        if self._last:
            t0, frames0, stages0 = self._last
            if frames0 > self.start_frame:  # frames flowed before this interval began
                self.recent_fps = (frames - frames0) / (now - t0)
            recent = {}
            for name, (count, total, _) in stages.items():
                c0, ms0 = stages0.get(name, (0, 0.0, None))[:2]
                if count > c0:
                    recent[name] = (total - ms0) / (count - c0)
            if recent:
                self.recent_ms = recent
        self._last = (now, frames, stages)


class StreamManager:
    """Starts, stops and watches the streams stored in `store`."""

    def __init__(
        self, store: Store, settings: ServeSettings, on_events=None, on_frames=None, engine: EngineClient | None = None
    ):
        """`engine`: the engine process's client, started already (else started with the first stream)."""
        self.store, self.s = store, settings
        self.on_events = on_events or (lambda sid, n: None)  # metrics hooks
        self.on_frames = on_frames or (lambda sid, n: None)
        self.runs: dict[int, Run] = {}
        self._lock = threading.Lock()
        (Path(settings.data_dir) / "events").mkdir(parents=True, exist_ok=True)
        if engine is None and settings.ray:
            from .ray_engines import RayEngines

            engine = RayEngines(settings)
        self.engine = engine or EngineClient(settings)
        self.engine.bind(self._engine_live, self._engine_done, self._engine_events)

    def mark_interrupted(self) -> None:
        """At start-up: streams the last server left running (it was killed) are stopped, resumable."""
        for row in self.store.streams():
            if row["status"] in ("starting", "running", "reconnecting"):
                self.store.update_stream(row["id"], status="interrupted")

    def running(self, sid: int) -> Run | None:
        with self._lock:
            run = self.runs.get(sid)
        return run if run is not None and not run.done.is_set() else None

    def resumable(self, row: dict) -> bool:
        """A file or folder stream that stopped part way (stopped, interrupted or failed)."""
        return row["kind"] == "file" and row["frames"] > 0 and row["status"] in ("stopped", "interrupted", "failed")

    def start(self, sid: int, resume: bool = False) -> None:
        """Run the stream from its beginning (its earlier events are dropped: a restart counts anew), or with
        `resume` from the frame where it stopped, keeping its events (those of frames after that point, if
        any were stored, are dropped: they come again). A resumed stream first tracks the
        RESUME_WARMUP_FRAMES before that point without counting them, so its tracks are where the
        uninterrupted run's were; its track ids go on above the stored ones."""
        if self.running(sid):
            return
        row = self.store.stream(sid)
        start_frame = row["frames"] if resume and self.resumable(row) else 0
        if start_frame:
            self.store.clear_events(sid, from_frame=start_frame)
        else:
            self.store.clear_events(sid)
            shutil.rmtree(plates_dir(self.s.data_dir, sid), ignore_errors=True)
        run = Run(sid, _free_port(), Path(self.s.data_dir) / "events" / f"stream{sid}.jsonl", start_frame)
        run.track_id_offset = self.store.max_track_id(sid) if start_frame else 0
        run.events_path.unlink(missing_ok=True)  # the last run's lines are in the database already
        self.store.update_stream(sid, status="starting", error=None, frames=start_frame, fps=0.0)
        run.thread = threading.Thread(target=self._run, args=(run,), name=f"stream{sid}", daemon=True)
        with self._lock:
            self.runs[sid] = run
        run.thread.start()

    def stop(self, sid: int, wait_s: float = 30.0) -> None:
        run = self.running(sid)
        if run is None:
            return
        run.stop_requested = True
        if not run.ended.is_set():
            self.engine.stop(sid)  # the engine drains the stream and finishes its files
        run.done.wait(wait_s)

    def stop_all(self) -> None:
        for sid in list(self.runs):
            self.stop(sid)
        self.engine.close()

    def _run(self, run: Run) -> None:
        """In a thread of the server: hand the stream to the engine, commit its events, record its end."""
        from ..video.processor import StreamSettings

        row = self.store.stream(run.sid)
        last, refreshed_at, live = run.start_frame, time.perf_counter(), row["kind"] != "file"
        # a resumed run replays the frames just before its resume point, uncounted (see RESUME_WARMUP_FRAMES)
        warmup = min(run.start_frame, RESUME_WARMUP_FRAMES)
        settings = StreamSettings(
            lines=row["lines"],
            zones=row["zones"],
            events=str(run.events_path),
            serve_mjpeg=run.mjpeg_port,
            mjpeg_fps=self.s.preview_fps or None,
            ocr=self.s.ocr,
            plate_pattern=self.s.plate_pattern,
            plate_crops=str(plates_dir(self.s.data_dir, run.sid)) if self.s.ocr else None,
            events_from=run.start_frame,
            track_id_offset=run.track_id_offset,
            max_det=self.s.max_det,
            seen_at=True,  # in the events file beside the database: how long a crossing took to be stored
        )
        job = StreamJob(
            row["source"],
            settings,
            loop=bool(row["loop"]),
            open_at=run.start_frame - warmup,
            realtime=bool(row.get("realtime")),
            classes=row["classes"],
        )
        # on this machine the engine's workers write the events file that a tailer here commits; on Ray
        # the events come with the actors' replies (_engine_events) and the preview through a relay
        tail = threading.Thread(target=self._tail, args=(run,), name=f"events{run.sid}", daemon=True)
        local = None
        saved_at = time.perf_counter()
        try:
            if self.s.ray:
                from ..video.sinks import MjpegServer

                local = MjpegServer(run.mjpeg_port)
                threading.Thread(target=self._relay_frames, args=(run, local), daemon=True).start()
            else:
                tail.start()
            self.engine.add(run.sid, job)
            if run.stop_requested:  # stopped while the engine was starting
                self.engine.stop(run.sid)
            run.refresh()
            while not run.reported.wait(0.5):
                n = run.frames
                if status := run.status_now(live):
                    self.store.update_stream(run.sid, status=status)
                if n > last:
                    self.on_frames(run.sid, n - last)
                    last = n
                now = time.perf_counter()
                if now - refreshed_at > 2.0:
                    refreshed_at = now
                    run.refresh()
                if self.s.ray and now - saved_at > 2.0:  # how far it got: every event before is stored
                    saved_at = now
                    self.store.update_stream(run.sid, frames=run.frames, fps=run.fps)
            fields = self._end_fields(run, run.end or {})
        except Exception as e:  # the engine could not start
            fields = {"status": "failed", "error": message(e), "frames": run.frames, "fps": run.fps}
        finally:
            run.ended.set()
            if tail.is_alive():
                tail.join(timeout=10)
            if local is not None:
                local.close()
        self._record_end(run, fields, last)

    # the engine client's callbacks (its reader thread)
    def _engine_live(self, sid: int, live: Live) -> None:
        run = self.runs.get(sid)
        if run is None or run.reported.is_set():
            return
        run.stats = (live.stages, live.dropped)
        run.health = live.health
        if live.next_frame is not None:
            run.next_frame = live.next_frame

    def _engine_events(self, sid: int, events: list[dict]) -> None:
        """A stream on Ray: its events up to its last finished frame (stored before that frame is counted)."""
        if self.runs.get(sid) is not None and events:
            self.on_events(sid, self.store.add_events(sid, events))

    def _engine_done(self, sid: int, end: dict) -> None:
        run = self.runs.get(sid)
        if run is None:
            return
        if end.get("next_frame") is not None:
            run.next_frame = end["next_frame"]
        run.end = end
        run.reported.set()

    @staticmethod
    def _end_fields(run: Run, end: dict) -> dict:
        """The stream's row at its end, from what its process (or actor) reported."""
        status = "failed" if end.get("error") else ("stopped" if run.stop_requested else "finished")
        return {"status": status, "error": end.get("error"), "frames": run.frames, "fps": end.get("fps", run.fps)}

    def _record_end(self, run: Run, fields: dict, last: int) -> None:
        try:
            if run.frames > last:
                self.on_frames(run.sid, run.frames - last)
            self.store.update_stream(run.sid, **fields)
        finally:
            run.done.set()

    def _relay_frames(self, run: Run, local) -> None:
        """A stream on Ray: while the loopback MJPEG server here has viewers, fetch its newest frames for it."""
        seen, pause = 0, 1.0 / (self.s.preview_fps or 25.0)
        while not run.ended.is_set():
            if local.viewers == 0:
                time.sleep(0.2)
                continue
            try:
                seen, jpeg = self.engine.jpeg(run.sid, seen)
            except Exception:  # the actor is gone: the run's end is recorded by the engine's client
                time.sleep(0.5)
                continue
            if jpeg is not None:
                local.publish_jpeg(jpeg)
            time.sleep(pause)

    def _tail(self, run: Run) -> None:
        """Commit the events file's complete lines as they appear, until the run is over; every 2 s, store
        how far the stream got. That point is read before the file: the stream's process writes a frame's
        events before it counts the frame, so every event before the stored point is committed by then
        (a resume after a crash neither loses nor repeats one)."""
        buf, saved_at, f = "", time.perf_counter(), None
        try:
            while True:
                finished = run.ended.is_set()
                frames = run.frames
                if f is None and run.events_path.is_file():
                    f = open(run.events_path, encoding="utf-8")  # noqa: SIM115 - closed below
                if f is not None:
                    buf += f.read()
                    *lines, buf = buf.split("\n")
                    events = [json.loads(x) for x in lines if x.strip()]
                    if events:
                        self.on_events(run.sid, self.store.add_events(run.sid, events))
                if finished:
                    return
                if time.perf_counter() - saved_at > 2.0:
                    saved_at = time.perf_counter()
                    self.store.update_stream(run.sid, frames=frames, fps=run.fps)
                time.sleep(TAIL_EVERY_S)
        finally:
            if f is not None:
                f.close()


def plates_dir(data_dir, sid: int) -> Path:
    """Where a stream's best-read vehicle crops go (track<ID>.jpg)."""
    return Path(data_dir) / "plates" / f"stream{sid}"
