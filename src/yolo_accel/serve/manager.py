"""Runs the app's streams: one video engine per running stream, each in a process of its own.

A stream's process has its own detector and engine, so detection never competes with the web
server for the interpreter lock, and a stream that crashes takes only itself down. It writes its
crossing events to a JSON-lines file (as `video --events` does) that a tailer thread of the server
commits to the database as they appear (the engine flushes them after every batch), counts its
frames in shared memory, serves its annotated frames on a loopback MJPEG port that the app relays
to the page, and stops cleanly on SIGTERM (the engine drains and finishes its files).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import message
from .store import Store


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
    max_upload_mb: int = 2048

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
    started: float = field(default_factory=time.perf_counter)
    counter: object = None  # multiprocessing.Value: frames done, counted by the stream's process
    process: object = None
    stop_requested: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def frames(self) -> int:
        return int(self.counter.value) if self.counter is not None else 0

    @property
    def fps(self) -> float:
        wall = time.perf_counter() - self.started
        return self.frames / wall if wall > 0 else 0.0


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
            if row["status"] in ("starting", "running"):
                self.store.update_stream(row["id"], status="interrupted")

    def running(self, sid: int) -> Run | None:
        with self._lock:
            run = self.runs.get(sid)
        return run if run is not None and not run.done.is_set() else None

    def start(self, sid: int) -> None:
        """Run the stream from its beginning; its earlier events are dropped (a restart counts anew)."""
        if self.running(sid):
            return
        self.store.clear_events(sid)
        run = Run(sid, _free_port(), Path(self.s.data_dir) / "events" / f"stream{sid}.jsonl")
        run.events_path.unlink(missing_ok=True)  # the last run's lines are in the database already
        self.store.update_stream(sid, status="starting", error=None, frames=0, fps=0.0)
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
        ctx = mp.get_context("spawn")
        row = self.store.stream(run.sid)
        run.counter = ctx.Value("q", 0)
        results = ctx.Queue()
        last = 0
        run.process = ctx.Process(
            target=stream_main,
            args=(self.s, row, str(run.events_path), run.mjpeg_port, run.counter, results),
            name=f"yolo-accel-stream{run.sid}",
            daemon=True,
        )
        tail = threading.Thread(target=self._tail, args=(run,), name=f"events{run.sid}", daemon=True)
        try:
            run.process.start()
            if run.stop_requested:  # stopped while it was starting
                run.process.terminate()
            tail.start()
            self.store.update_stream(run.sid, status="running")
            while run.process.is_alive():
                run.process.join(timeout=0.5)
                n = run.frames
                if n > last:
                    self.on_frames(run.sid, n - last)
                    last = n
            try:
                end = results.get(timeout=5)
            except queue.Empty:  # killed before it could report (SIGTERM while loading the model, or a crash)
                code = run.process.exitcode
                end = {} if run.stop_requested else {"error": f"the stream's process exited with code {code}"}
            if end.get("error"):
                status = "failed"
            else:
                status = "stopped" if run.stop_requested else "finished"
            fields = {"status": status, "error": end.get("error"), "frames": end.get("frames", run.frames)}
            fields["fps"] = end.get("fps", run.fps)
        except Exception as e:  # the process could not start
            fields = {"status": "failed", "error": message(e), "frames": run.frames, "fps": run.fps}
        finally:
            run.done.set()
            if tail.is_alive():
                tail.join(timeout=10)
        if run.frames > last:
            self.on_frames(run.sid, run.frames - last)
        self.store.update_stream(run.sid, **fields)

    def _tail(self, run: Run) -> None:
        """Commit the events file's complete lines as they appear, until the run is over."""
        offset, buf = 0, ""
        while True:
            finished = run.done.is_set()
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
            time.sleep(0.2)


def stream_main(s: ServeSettings, row: dict, events_path: str, mjpeg_port: int, counter, results) -> None:
    """One stream, in its own process: its detector, its engine, its events file and MJPEG server.
    Puts {"error", "frames", "fps"} on `results` when it ends; SIGTERM ends it cleanly, and so does the
    server's death (even by SIGKILL): a stream never runs on without the server that stores its events."""
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
            s.model,
            backend=s.backend,
            device=s.device,
            half=s.half,
            imgsz=s.imgsz,
            conf=s.conf,
            iou=s.iou,
            max_det=s.max_det,
            classes=row["classes"] or None,
            rect=False,
        ) as det:
            source = open_source(row["source"], loop=bool(row["loop"]))
            settings = StreamSettings(
                lines=row["lines"], zones=row["zones"], events=events_path, serve_mjpeg=mjpeg_port
            )

            def progress(n: int) -> None:
                with counter.get_lock():
                    counter.value += n

            batch = 8 if det.backend.device.is_cuda else 1
            es = EngineSettings(batch=batch, workers=0)
            result = VideoEngine(det, [source], [settings], es, progress=progress).run()
        stream = result["streams"][0]
        results.put({"error": stream["error"], "frames": stream["frames"], "fps": stream["fps"]})
    except Exception as e:  # a source that cannot be opened, a model that cannot load
        results.put({"error": message(e)})
