"""Runs the app's streams: one video engine per running stream, each in a process of its own.

A stream's process has its own detector and engine, so detection never competes with the web
server for the interpreter lock, and a stream that crashes takes only itself down. It writes its
crossing events to a JSON-lines file (as `video --events` does) that a tailer thread of the server
commits to the database as they appear (the engine flushes them after every batch), counts its
frames and its stage-time histograms in shared memory, serves its annotated frames on a loopback
MJPEG port that the app relays to the page, and stops cleanly on SIGTERM (the engine drains and
finishes its files). A stopped file stream resumes at the frame where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import queue
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import message
from ..video.stats import STAGES
from .store import Store

# A resumed file stream starts decoding this many frames before its resume point, tracking but not
# counting them, so that a vehicle about to cross a line has its track (and its side of the line) again.
RESUME_WARMUP_FRAMES = 75
# A camera (URL) stream whose frames stop for this long is shown as "reconnecting" until they come again:
# its source is reopening a dropped connection, and the page should not show a frozen "running".
STALL_S = 5.0
BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)  # the stage histograms' upper edges
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

    def detector_kwargs(self) -> dict:
        """Detector(**kwargs) for a stream: the bundle's configuration, or the options given."""
        if self.deploy:
            from ..deploy import load_deploy

            return load_deploy(self.deploy).detector_kwargs()
        return {
            "model": self.model,
            "backend": self.backend,
            "device": self.device,
            "half": self.half,
            "imgsz": self.imgsz,
            "conf": self.conf,
            "iou": self.iou,
        }

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
    counter: object = None  # multiprocessing.Value: the next frame index, counted by the stream's process
    stats: LiveStats | None = None
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
            want = "reconnecting" if live and now - self._moved[1] > STALL_S else "running"
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

    def __init__(self, store: Store, settings: ServeSettings, on_events=None, on_frames=None):
        self.store, self.s = store, settings
        self.on_events = on_events or (lambda sid, n: None)  # metrics hooks
        self.on_frames = on_frames or (lambda sid, n: None)
        self.runs: dict[int, Run] = {}
        self._lock = threading.Lock()
        (Path(settings.data_dir) / "events").mkdir(parents=True, exist_ok=True)

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

    def _run(self, run: Run) -> None:
        """In a thread of the server: start the stream's process, commit its events, record its end."""
        if self.s.ray:
            self._run_on_ray(run)
            return
        ctx = mp.get_context("spawn")
        row = self.store.stream(run.sid)
        run.counter = ctx.Value("q", run.start_frame)
        run.stats = LiveStats(ctx)
        results = ctx.Queue()
        last, refreshed_at, live = run.start_frame, time.perf_counter(), row["kind"] != "file"
        run.process = ctx.Process(
            target=stream_main,
            args=(
                self.s,
                row,
                str(run.events_path),
                run.mjpeg_port,
                run.counter,
                run.stats,
                run.start_frame,
                results,
                run.track_id_offset,
            ),
            name=f"yolo-accel-stream{run.sid}",
            # not daemonic: a daemonic process may not start the plate reader process; it still ends
            # with the server (stop_all on shutdown, its watchdog if the server is killed)
            daemon=False,
        )
        tail = threading.Thread(target=self._tail, args=(run,), name=f"events{run.sid}", daemon=True)
        try:
            run.process.start()
            if run.stop_requested:  # stopped while it was starting
                run.process.terminate()
            tail.start()
            run.refresh()
            while run.process.is_alive():
                run.process.join(timeout=0.5)
                n = run.frames
                if status := run.status_now(live):
                    self.store.update_stream(run.sid, status=status)
                if n > last:
                    self.on_frames(run.sid, n - last)
                    last = n
                if time.perf_counter() - refreshed_at > 2.0:
                    refreshed_at = time.perf_counter()
                    run.refresh()
            try:
                end = results.get(timeout=5)
            except queue.Empty:  # killed before it could report (SIGTERM while loading the model, or a crash)
                code = run.process.exitcode
                end = {} if run.stop_requested else {"error": f"the stream's process exited with code {code}"}
            fields = self._end_fields(run, end)
        except Exception as e:  # the process could not start
            fields = {"status": "failed", "error": message(e), "frames": run.frames, "fps": run.fps}
        finally:
            run.ended.set()
            if tail.is_alive():
                tail.join(timeout=10)
        self._record_end(run, fields, last)

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


def stream_main(
    s: ServeSettings,
    row: dict,
    events_path: str,
    mjpeg_port: int,
    counter,
    stats: LiveStats,
    start_frame: int,
    results,
    track_id_offset: int = 0,
) -> None:
    """One stream, in its own process: its detector, its engine, its events file and MJPEG server.
    Puts {"error", "frames", "fps"} on `results` when it ends; SIGTERM ends it cleanly, and so does the
    server's death (even by SIGKILL): a stream never runs on without the server that stores its events.
    A resumed run (`start_frame` > 0) replays the frames before it uncounted; its track ids start above
    `track_id_offset`."""
    import os
    import signal

    server = os.getppid()

    def watch_server() -> None:
        while os.getppid() == server:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_server, name="watch-server", daemon=True).start()
    try:
        from ..detector import Detector
        from ..video.engine import EngineSettings, VideoEngine
        from ..video.processor import StreamSettings
        from ..video.sources import open_source

        with Detector(
            **s.detector_kwargs(),
            max_det=s.max_det,
            classes=row["classes"] or None,
            rect=False,
        ) as det:
            # a resumed run replays the frames just before its resume point, uncounted (see RESUME_WARMUP_FRAMES)
            warmup = min(start_frame, RESUME_WARMUP_FRAMES)
            source = open_source(row["source"], loop=bool(row["loop"]), start_frame=start_frame - warmup)
            settings = StreamSettings(
                lines=row["lines"],
                zones=row["zones"],
                events=events_path,
                serve_mjpeg=mjpeg_port,
                mjpeg_fps=s.preview_fps or None,
                ocr=s.ocr,
                plate_pattern=s.plate_pattern,
                plate_crops=str(plates_dir(s.data_dir, row["id"])) if s.ocr else None,
                events_from=start_frame,
                track_id_offset=track_id_offset,
            )
            replayed = [warmup]  # frames of the warm-up not yet done: they are not the stream's progress

            def progress(n: int) -> None:
                skip = min(n, replayed[0])
                replayed[0] -= skip
                with counter.get_lock():
                    counter.value += n - skip

            batch = 8 if det.backend.device.is_cuda else 1
            es = EngineSettings(batch=batch, workers=0)
            engine = VideoEngine(det, [source], [settings], es, progress=progress)
            done = threading.Event()

            def publish_stats() -> None:
                while not done.wait(1.0):
                    stats.write(*engine.live_stats(0))

            threading.Thread(target=publish_stats, name="stats", daemon=True).start()
            try:
                result = engine.run()
            finally:
                done.set()
            stats.write(*engine.live_stats(0))
        stream = result["streams"][0]
        results.put({"error": stream["error"], "frames": stream["frames"], "fps": stream["fps"]})
    except Exception as e:  # a source that cannot be opened, a model that cannot load
        results.put({"error": message(e)})
