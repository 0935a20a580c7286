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

import contextlib
import json
import multiprocessing as mp
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import message
from ..video.stats import STAGES
from .engine_host import BUCKETS_MS, EngineClient, Live, StreamJob
from .store import Store

# A resumed file stream starts decoding this many frames before its resume point, tracking but not
# counting them, so that a vehicle about to cross a line has its track (and its side of the line) again.
RESUME_WARMUP_FRAMES = 75
# A camera (URL) stream whose frames stop for this long is shown as "reconnecting" until they come again:
# its source is reopening a dropped connection, and the page should not show a frozen "running".
STALL_S = 5.0
_PER_STAGE = 2 + len(BUCKETS_MS)  # count, total ms, cumulative buckets


class LiveStats:
    """A stream's stage-time histograms and dropped frames, written by its process, read by the server."""

    def __init__(self, ctx):
        self.array = ctx.Array("d", len(STAGES) * _PER_STAGE + 1)

    def write(self, stages, dropped: int) -> None:
        values = []
        for name in STAGES:
            h = stages.stages.get(name)
            values += [h.count, h.total, *h.below(BUCKETS_MS)] if h is not None else [0.0] * _PER_STAGE
        with self.array.get_lock():
            self.array[:] = [*values, float(dropped)]

    def read(self) -> tuple[dict[str, tuple[int, float, list[int]]], int]:
        """{stage: (count, total ms, cumulative bucket counts)} for the stages seen, and the dropped frames."""
        with self.array.get_lock():
            a = list(self.array)
        out = {}
        for i, name in enumerate(STAGES):
            count, total, *buckets = a[i * _PER_STAGE : (i + 1) * _PER_STAGE]
            if count:
                out[name] = (int(count), total, [int(b) for b in buckets])
        return out, int(a[-1])


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
    ray_gpu_share: float = 0.125  # of a GPU per stream on the cluster (--device cuda)
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
    counter: object = None  # .value: the next frame index whose events are not all written yet
    stats: object = None  # .read(): (stage histograms, dropped frames)
    health: dict = field(default_factory=dict)  # the source's: connected, reconnects, since_frame_s, dropped
    end: dict | None = None  # what the engine reported at the stream's end
    reported: threading.Event = field(default_factory=threading.Event)  # the engine reported its end
    recent_ms: dict[str, float] = field(default_factory=dict)  # stage means over the last seconds
    recent_fps: float | None = None  # over the last seconds (the model's loading left out)
    _last: tuple = ()  # (time, frames, stage histograms) at the last refresh
    process: object = None
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
        return int(self.counter.value) if self.counter is not None else self.start_frame

    @property
    def fps(self) -> float:
        if self.recent_fps is not None:
            return self.recent_fps
        wall = time.perf_counter() - self.started
        return (self.frames - self.start_frame) / wall if wall > 0 else 0.0

    def refresh(self) -> None:
        """FPS and mean ms per stage over the time since the last refresh (every few seconds)."""
        now, frames = time.perf_counter(), self.frames
        stages = self.stats.read()[0] if self.stats is not None else {}
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
        self.engine = engine or EngineClient(settings)
        self.engine.bind(self._engine_started, self._engine_live, self._engine_done)

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
        if run.process is not None and run.process.is_alive():
            run.process.terminate()  # SIGTERM: the engine drains and finishes its files
        run.done.wait(wait_s)

    def stop_all(self) -> None:
        for sid in list(self.runs):
            self.stop(sid)
        self.engine.close()

    def _run(self, run: Run) -> None:
        """In a thread of the server: hand the stream to the engine, commit its events, record its end."""
        if self.s.ray:
            self._run_on_ray(run)
            return
        from ..video.processor import StreamSettings

        row = self.store.stream(run.sid)
        run.counter, run.stats = _Value(run.start_frame), _Snapshot()
        run.process = _EngineHandle(self.engine, run)
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
        )
        job = StreamJob(
            row["source"],
            settings,
            loop=bool(row["loop"]),
            open_at=run.start_frame - warmup,
            realtime=bool(row.get("realtime")),
            classes=row["classes"],
        )
        tail = threading.Thread(target=self._tail, args=(run,), name=f"events{run.sid}", daemon=True)
        try:
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
                if time.perf_counter() - refreshed_at > 2.0:
                    refreshed_at = time.perf_counter()
                    run.refresh()
            fields = self._end_fields(run, run.end or {})
        except Exception as e:  # the engine process could not start
            fields = {"status": "failed", "error": message(e), "frames": run.frames, "fps": run.fps}
        finally:
            run.ended.set()
            if tail.is_alive():
                tail.join(timeout=10)
        self._record_end(run, fields, last)

    # the engine client's callbacks (its reader thread)
    def _engine_started(self, sid: int, description: str) -> None:
        pass  # the stream shows "running" once its frames flow

    def _engine_live(self, sid: int, live: Live) -> None:
        run = self.runs.get(sid)
        if run is None or run.reported.is_set():
            return
        run.stats.value = (live.stages, live.dropped)
        run.health = live.health
        if live.next_frame is not None:
            run.counter.value = max(run.start_frame, live.next_frame)

    def _engine_done(self, sid: int, end: dict) -> None:
        run = self.runs.get(sid)
        if run is None:
            return
        if end.get("next_frame") is not None:
            run.counter.value = max(run.start_frame, end["next_frame"])
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

    def _run_on_ray(self, run: Run) -> None:
        """The stream as an actor on the Ray cluster: its events are stored up to its last finished frame,
        its frames relayed to a loopback MJPEG server here while someone watches."""
        from ..device import parse_device
        from ..scale.cluster import connect
        from ..scale.serve_stream import StreamWorker
        from ..video.sinks import MjpegServer

        row = self.store.stream(run.sid)
        run.counter, run.stats = _Value(run.start_frame), _Snapshot()
        last, saved_at, refreshed_at = run.start_frame, time.perf_counter(), time.perf_counter()
        local = actor = None
        try:
            ray = connect(self.s.ray)
            kwargs = self.s.detector_kwargs()
            gpu = parse_device(kwargs["device"]).is_cuda
            if gpu:
                kwargs["device"] = "cuda"  # Ray shows the actor its GPU as cuda:0
            options = {"num_gpus": self.s.ray_gpu_share, "num_cpus": 1} if gpu else {"num_cpus": 1}
            local = MjpegServer(run.mjpeg_port)
            actor = ray.remote(**options)(StreamWorker).remote(
                kwargs,
                self.s.max_det,
                row,
                run.start_frame,
                self.s.preview_fps,
                _stats_factory,
                track_id_offset=run.track_id_offset,
                warmup_frames=RESUME_WARMUP_FRAMES,
            )
            run.process = _ActorHandle(actor, run)
            if run.stop_requested:
                run.process.terminate()
            threading.Thread(target=self._relay_frames, args=(run, actor, local), daemon=True).start()
            end, live = None, row["kind"] != "file"
            while end is None:
                try:
                    reply = ray.get(actor.poll.remote(), timeout=120)
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
                    end = {"error": f"the stream's Ray actor was lost ({message(e)})"}
                    break
                run.stats.value = reply["stats"]
                if reply["events"]:
                    self.on_events(run.sid, self.store.add_events(run.sid, reply["events"]))
                run.counter.value = reply["next_frame"]  # after its events are stored: a resume point
                if status := run.status_now(live):
                    self.store.update_stream(run.sid, status=status)
                if run.frames > last:
                    self.on_frames(run.sid, run.frames - last)
                    last = run.frames
                now = time.perf_counter()
                if now - refreshed_at > 2.0:
                    refreshed_at = now
                    run.refresh()
                if now - saved_at > 2.0:
                    saved_at = now
                    self.store.update_stream(run.sid, frames=run.frames, fps=run.fps)
                end = reply.get("end")
                if end is None:
                    time.sleep(0.5)
            fields = self._end_fields(run, end)
        except Exception as e:  # no cluster, or the actor could not be placed
            fields = {"status": "failed", "error": message(e), "frames": run.frames, "fps": run.fps}
        finally:
            run.ended.set()
            if actor is not None:
                with contextlib.suppress(Exception):
                    ray.kill(actor)
            if local is not None:
                local.close()
        self._record_end(run, fields, last)

    def _relay_frames(self, run: Run, actor, local) -> None:
        """While the loopback MJPEG server here has viewers, fetch the actor's newest frames for it."""
        import ray

        seen, pause = 0, 1.0 / (self.s.preview_fps or 25.0)
        while not run.ended.is_set():
            if local.viewers == 0:
                time.sleep(0.2)
                continue
            try:
                seen, jpeg = ray.get(actor.jpeg.remote(seen), timeout=10)
            except Exception:  # the actor is gone: the run's loop records that
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
        offset, buf, saved_at = 0, "", time.perf_counter()
        while True:
            finished = run.ended.is_set()
            frames = run.frames
            if run.events_path.is_file():
                with open(run.events_path, encoding="utf-8") as f:
                    f.seek(offset)
                    chunk = f.read()
                    offset = f.tell()
                buf += chunk
                *lines, buf = buf.split("\n")
                events = [json.loads(x) for x in lines if x.strip()]
                if events:
                    self.on_events(run.sid, self.store.add_events(run.sid, events))
            if finished:
                return
            if time.perf_counter() - saved_at > 2.0:
                saved_at = time.perf_counter()
                self.store.update_stream(run.sid, frames=frames, fps=run.fps)
            time.sleep(0.2)


class _Value:
    """What `Run.counter` is for a stream on Ray: the next frame index, set by the server's poll."""

    def __init__(self, value: int):
        self.value = value


class _Snapshot:
    """What `Run.stats` is for a stream on Ray: the stage statistics of the actor's last reply."""

    value: tuple = ({}, 0)

    def read(self) -> tuple:
        return self.value


class _EngineHandle:
    """What `Run.process` is for a stream on the app's engine (stop() terminates it)."""

    def __init__(self, engine: EngineClient, run: Run):
        self.engine, self.run = engine, run

    def is_alive(self) -> bool:
        return not self.run.ended.is_set()

    def terminate(self) -> None:
        self.engine.stop(self.run.sid)


class _ActorHandle:
    """What `Run.process` is for a stream on Ray (stop() terminates it)."""

    def __init__(self, actor, run: Run):
        self.actor, self.run = actor, run

    def is_alive(self) -> bool:
        return not self.run.ended.is_set()

    def terminate(self) -> None:
        with contextlib.suppress(Exception):
            self.actor.stop.remote()


def _stats_factory() -> LiveStats:
    return LiveStats(mp.get_context("spawn"))


def plates_dir(data_dir, sid: int) -> Path:
    """Where a stream's best-read vehicle crops go (track<ID>.jpg)."""
    return Path(data_dir) / "plates" / f"stream{sid}"
