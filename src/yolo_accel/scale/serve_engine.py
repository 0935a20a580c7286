"""`serve --ray`: the body of one engine actor. Each runs a service video engine (one detector, the frames
of all its streams in shared batches, as `serve` runs on one machine) on a GPU of the cluster (or on
CPUs), and the server places each stream on the actor with the fewest.

Twice a second the server polls each actor for what happened: streams started, each running stream's
progress, stage times and health, its events up to its last finished frame (a frame is reported done
only after its events are flushed, so nothing handed over is lost or repeated at a resume), streams
ended, and the engine's figures. While someone watches a stream, the server also asks for its newest
annotated frame.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import socket
import tempfile
import threading
import time
from types import SimpleNamespace

from ..errors import message
from ..video.service import STARTUP_S
from .video import EventsTail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Stream:
    def __init__(self, folder: str, key):
        self.tail = EventsTail(os.path.join(folder, f"stream{key}.jsonl"))
        self.port = _free_port()
        self.next_frame: int | None = None
        self.jpeg: bytes | None = None
        self.seq = 0
        self.watch_until = 0.0
        self.reader: threading.Thread | None = None
        self.ended = False


class ServeEngineWorker:
    """The body of an engine actor (see the module's docstring). `options`: ServeSettings' engine fields
    (batch, max_wait_ms, workers, max_streams, nvdec, reconnect_retries, reconnect_backoff_s,
    reconnect_max_s)."""

    def __init__(self, detector_kwargs: dict, options: dict):
        from ..video.service import start_service

        self.folder = tempfile.mkdtemp(prefix="yolo-accel-serve-")
        self.replies: queue.Queue = queue.Queue()
        self.host = start_service(detector_kwargs, SimpleNamespace(**options), self.replies)
        self.engine = self.host.engine
        self.detector = self.engine.detector
        self.streams: dict = {}
        self._lock = threading.Lock()
        self._runner = threading.Thread(target=self.engine.run, name="engine", daemon=True)
        self._runner.start()
        threading.Thread(target=self.host.send_stats, name="stats", daemon=True).start()
        if not self.engine.wait_started(STARTUP_S):
            why = message(self.engine.failure) if self.engine.failure is not None else "timed out"
            raise RuntimeError(f"the engine did not start: {why}")

    def where(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def names(self) -> dict[int, str]:
        return dict(self.detector.names)

    def add(self, key, job) -> None:
        """Start stream `key` (a video.service.StreamJob; its events and live video stay here)."""
        st = _Stream(self.folder, key)
        job.settings = dataclasses.replace(job.settings, events=st.tail.path, serve_mjpeg=st.port, plate_crops=None)
        with self._lock:
            self.streams[key] = st
        threading.Thread(target=self.host.add, args=(key, job), name=f"add-{key}", daemon=True).start()

    def stop(self, key) -> None:
        self.host.stop(key)

    def poll(self) -> dict:
        """What happened since the last poll: {"live": {key: Live}, "events": {key:
        [events of frames up to its last finished one]}, "done": {key: end}, "engine": figures or None}."""
        out: dict = {"live": {}, "events": {}, "done": {}, "engine": None}
        while True:
            try:
                msg = self.replies.get_nowait()
            except queue.Empty:
                break
            kind = msg[0]
            if kind == "stats":
                out["live"].update(msg[1])
            elif kind == "engine":
                out["engine"] = msg[1]
            elif kind == "done":
                out["done"][msg[1]] = msg[2]
        with self._lock:
            streams = dict(self.streams)
        for key, st in streams.items():
            live = out["live"].get(key)
            if live is not None and live.next_frame is not None:
                st.next_frame = live.next_frame
            # read after the reply that says how far the stream got: its events up to there are in the file
            upto = float("inf") if key in out["done"] else (st.next_frame - 1 if st.next_frame is not None else -1)
            events = st.tail.take(upto)
            if events:
                out["events"][key] = events
            if key in out["done"]:
                st.ended = True
                with self._lock:
                    self.streams.pop(key, None)
        return out

    def jpeg(self, key, seen: int) -> tuple[int, bytes | None]:
        """Stream `key`'s newest annotated frame if newer than `seen`; asking keeps it drawn for 3 s."""
        st = self.streams.get(key)
        if st is None:
            return seen, None
        st.watch_until = time.monotonic() + 3.0
        if st.reader is None or not st.reader.is_alive():
            st.reader = threading.Thread(target=self._read_frames, args=(st,), name="mjpeg-reader", daemon=True)
            st.reader.start()
        return (st.seq, st.jpeg) if st.seq != seen else (seen, None)

    @staticmethod
    def _read_frames(st: _Stream) -> None:
        """A viewer of the stream's loopback MJPEG server while the server watches (the engine draws a
        stream's frames only while it has a viewer)."""
        import http.client

        from ..video.sinks import read_mjpeg_part

        while time.monotonic() < st.watch_until and not st.ended:
            conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=5)
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                while time.monotonic() < st.watch_until:
                    jpeg = read_mjpeg_part(resp)
                    if jpeg is None:
                        break
                    st.jpeg, st.seq = jpeg, st.seq + 1
            except OSError:
                time.sleep(0.2)  # its MJPEG server starts with the stream's first frames
            finally:
                conn.close()

    def shutdown(self) -> None:
        """Stop every stream (each drains and finishes its files) and the engine."""
        self.engine.stop("terminated")
        self._runner.join(timeout=60)
        self.host.closed.set()
