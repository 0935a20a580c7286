"""The app's video engine: one long-lived process running the batched multi-stream engine
(`VideoEngine(service=True)`, the engine under `video`) that every stream of the app is added to.

    server (web app, database)                      engine process
    EngineClient ── ("add", key, StreamJob) ───>    opens the source (a thread per stream: a camera may
                 ── ("stop", key) ─────────────>    take retries), then add_stream / stop_stream
                 <── ("ready", error) ──────────    the detector is loaded, the engine's workers are up
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

import os
import queue
import signal
import threading
import time
from collections.abc import Callable

from ..errors import message
from ..video.service import BUCKETS_MS, SHARED_MAX_DET, Live, StreamJob, start_service  # noqa: F401


class EngineClient:
    """The server's side: starts the engine process, sends it streams, hands its replies to callbacks.

    `on_live(key, Live)` and `on_done(key, end)` (set by `bind`) run in
    the client's reader thread. If the engine process dies, every stream on it is done with that error;
    the next `add` starts a new process.
    """

    def __init__(self, settings):
        self.s = settings
        self.on_live: Callable = lambda key, live: None
        self.on_done: Callable = lambda key, end: None
        self._lock = threading.Lock()
        self._proc = None
        self._commands = self._replies = None
        self._keys: dict = {}  # streams not yet done -> the engine process they were sent to (None: not yet)
        self._ready = threading.Event()
        self._error: str | None = None
        self.names: dict[int, str] | None = None  # the model's classes, once the engine is ready
        self.figures: dict = {}  # the engine's own, twice a second (see ServiceHost.engine_figures)

    def bind(self, on_live: Callable, on_done: Callable, on_events: Callable | None = None) -> None:
        """The callbacks; `on_events` is not called here (the events come through each stream's file)."""
        self.on_live, self.on_done = on_live, on_done

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
            self._keys[key] = None
        try:
            self.start(timeout_s)
        except YoloAccelError as e:
            self._finish(key, {"error": str(e)})
            return
        with self._lock:
            # the process it goes to: if that one dies, this stream ends with it, whatever was started since
            self._keys[key] = self._proc
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
            self._keys.pop(key, None)
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
            left = [k for k, p in self._keys.items() if p is proc]
            if self._proc is proc and not self._ready.is_set():
                self._error = self._error or f"the engine process exited with code {code}"
                self._ready.set()
        for key in left:  # streams the engine never reported the end of: it died
            self._finish(key, {"error": f"the engine process exited with code {code}"})


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
        # plates on the CPU: ONNX Runtime's CUDA provider read slower (BENCHMARKS.md)
        host = start_service(s.detector_kwargs(), s, replies, plates_device="cpu" if s.ocr else None)
        engine = host.engine
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
        engine.detector.close()
        replies.put(("exit",))
        replies.close()
        replies.join_thread()
