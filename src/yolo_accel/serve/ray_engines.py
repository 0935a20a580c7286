"""`serve --ray`: the app's streams on engine actors of a Ray cluster, one per GPU (or one on CPUs), each
a service video engine (scale/serve_engine.py). The same interface as EngineClient, so the manager
runs a stream the same way wherever its engine is; the difference is that events come back with the
actors' replies (`on_events`) instead of through a local file.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from ..errors import YoloAccelError, message

ENGINE_FIELDS = (
    "batch",
    "max_wait_ms",
    "workers",
    "max_streams",
    "nvdec",
    "reconnect_retries",
    "reconnect_backoff_s",
    "reconnect_max_s",
)
POLL_S = 0.5


class RayEngines:
    """Engine actors on the cluster at `settings.ray`; a stream goes to the one with the fewest streams.
    An actor that is lost ends its streams with that error (file streams can be resumed); the next
    stream goes to the others, or to a new actor when none is left."""

    def __init__(self, settings):
        self.s = settings
        self.on_live: Callable = lambda key, live: None
        self.on_done: Callable = lambda key, end: None
        self.on_events: Callable = lambda key, events: None
        self._lock = threading.Lock()
        self._actors: list = []  # live actors
        self._keys: dict = {}  # key -> the actor it runs on
        self.names: dict[int, str] | None = None
        self.figures: dict = {}
        self._closed = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        return []  # nothing of the engines runs in this process

    def bind(self, on_live: Callable, on_done: Callable, on_events: Callable) -> None:
        self.on_live, self.on_done, self.on_events = on_live, on_done, on_events

    def start(self, timeout_s: float = 600.0) -> dict[int, str]:
        """Place the engine actors and wait until their models are loaded; the model's class names."""
        with self._lock:
            if self._actors:
                return dict(self.names or {})
            from ..device import parse_device
            from ..scale.cluster import connect, failure_line, gpu_count
            from ..scale.serve_engine import ServeEngineWorker

            ray = connect(self.s.ray)
            kwargs = self.s.detector_kwargs()
            gpu = parse_device(kwargs["device"]).is_cuda
            if gpu:
                kwargs["device"] = "cuda"  # Ray shows each actor its GPU as cuda:0
                share = self.s.ray_gpu_share
                n = max(1, int(gpu_count(ray) / share)) if gpu_count(ray) else 1
                options = {"num_gpus": share, "num_cpus": 1}
            else:
                n, options = 1, {"num_cpus": 1}
            opts = {k: getattr(self.s, k) for k in ENGINE_FIELDS}
            actors = [ray.remote(**options)(ServeEngineWorker).remote(kwargs, opts) for _ in range(n)]
            try:
                self.names = ray.get(actors[0].names.remote(), timeout=timeout_s)
                ray.get([a.where.remote() for a in actors], timeout=timeout_s)
            except Exception as e:
                for a in actors:
                    with contextlib.suppress(Exception):
                        ray.kill(a)
                raise YoloAccelError(f"the engines did not start on Ray: {failure_line(e)}") from None
            self._actors = actors
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll, name="ray-engines", daemon=True)
                self._poller.start()
            return dict(self.names)

    def add(self, key, job, timeout_s: float = 600.0) -> None:
        try:
            self.start(timeout_s)
        except YoloAccelError as e:
            self.on_done(key, {"error": str(e)})
            return
        with self._lock:
            load = {id(a): 0 for a in self._actors}
            for a in self._keys.values():
                load[id(a)] = load.get(id(a), 0) + 1
            actor = min(self._actors, key=lambda a: load[id(a)])
            self._keys[key] = actor
        actor.add.remote(key, job)

    def stop(self, key) -> None:
        with self._lock:
            actor = self._keys.get(key)
        if actor is not None:
            actor.stop.remote(key)

    def jpeg(self, key, seen: int) -> tuple[int, bytes | None]:
        import ray

        with self._lock:
            actor = self._keys.get(key)
        if actor is None:
            return seen, None
        return ray.get(actor.jpeg.remote(key, seen), timeout=10)

    def close(self, wait_s: float = 60.0) -> None:
        import ray

        self._closed.set()
        with self._lock:
            actors, self._actors = self._actors, []
        for a in actors:
            with contextlib.suppress(Exception):
                ray.get(a.shutdown.remote(), timeout=wait_s)
        if self._poller is not None:
            self._poller.join(timeout=10)
        for a in actors:
            with contextlib.suppress(Exception):
                ray.kill(a)

    def _poll(self) -> None:
        import ray

        while not self._closed.wait(POLL_S):
            with self._lock:
                actors = list(self._actors)
            figures = []
            for actor in actors:
                try:
                    reply = ray.get(actor.poll.remote(), timeout=120)
                except Exception as e:  # the actor (or its node) is gone
                    self._lost(actor, message(e).splitlines()[0][:200])
                    continue
                for key, events in reply["events"].items():  # stored before the progress that covers them
                    self.on_events(key, events)
                for key, live in reply["live"].items():
                    self.on_live(key, live)
                for key, end in reply["done"].items():
                    with self._lock:
                        self._keys.pop(key, None)
                    self.on_done(key, end)
                if reply["engine"]:
                    figures.append(reply["engine"])
            if figures:
                self.figures = {"engines": figures, "streams": sum(f["streams"] for f in figures)}

    def _lost(self, actor, why: str) -> None:
        with self._lock:
            if actor in self._actors:
                self._actors.remove(actor)
            keys = [k for k, a in self._keys.items() if a is actor]
            for k in keys:
                self._keys.pop(k, None)
        for k in keys:
            self.on_done(k, {"error": f"the stream's engine on Ray was lost ({why})"})
        if not self._actors:
            time.sleep(1.0)  # the next add places new actors
