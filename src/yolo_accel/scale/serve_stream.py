"""One stream of `serve --ray` on a Ray cluster: the actor that runs it where the cluster has room.

The actor runs the stream as `serve` runs it in its own process (its detector, the video engine with
tracking and counting in a thread, its events file, its live video on the actor's loopback) and the
server asks it, twice a second, for the frames done, the events up to the last finished frame (so a
resume after a lost actor neither loses nor repeats one), the stage timings, and while someone
watches, the newest annotated frame.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time

from ..errors import message
from .video import EventsTail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamWorker:
    """The body of a stream's actor (see the module's docstring)."""

    def __init__(
        self,
        detector_kwargs: dict,
        max_det: int,
        row: dict,
        start_frame: int,
        preview_fps: float,
        stats_factory,
        track_id_offset: int = 0,
        warmup_frames: int = 0,
    ):
        self.folder = tempfile.mkdtemp(prefix="yolo-accel-serve-")
        self.tail = EventsTail(os.path.join(self.folder, "events.jsonl"))
        self.port = _free_port()
        self.start_frame = start_frame
        self.track_id_offset = track_id_offset
        # a resumed stream replays this many frames before its resume point, tracked but not counted
        self.warmup = min(start_frame, warmup_frames)
        self.engine = None
        self.result: dict | None = None
        self.error: str | None = None
        self.stats = stats_factory()
        self._jpeg, self._seq, self._watch_until = None, 0, 0.0
        self._reader: threading.Thread | None = None
        self._thread = threading.Thread(
            target=self._body, args=(detector_kwargs, max_det, row, preview_fps), name="stream", daemon=True
        )
        self._thread.start()

    def where(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def _body(self, detector_kwargs: dict, max_det: int, row: dict, preview_fps: float) -> None:
        try:
            from ..detector import Detector
            from ..video.engine import EngineSettings, VideoEngine
            from ..video.processor import StreamSettings
            from ..video.sources import open_source

            with Detector(**detector_kwargs, max_det=max_det, classes=row["classes"] or None, rect=False) as det:
                source = open_source(row["source"], loop=bool(row["loop"]), start_frame=self.start_frame - self.warmup)
                settings = StreamSettings(
                    lines=row["lines"],
                    zones=row["zones"],
                    events=self.tail.path,
                    serve_mjpeg=self.port,
                    mjpeg_fps=preview_fps or None,
                    events_from=self.start_frame,
                    track_id_offset=self.track_id_offset,
                )
                batch = 8 if det.backend.device.is_cuda else 1
                self.engine = VideoEngine(det, [source], [settings], EngineSettings(batch=batch, workers=0))
                result = self.engine.run()
            stream = result["streams"][0]
            self.result = {"error": stream["error"], "frames": stream["frames"], "fps": stream["fps"]}
        except Exception as e:  # a source that cannot be opened, a model that cannot load
            self.error = message(e)

    def poll(self) -> dict:
        """Frames done (the next frame index), the events up to them, the stage statistics; `end` once over."""
        finished = self.result is not None or self.error is not None  # read first: then every event is in
        engine = self.engine
        last = engine.last_done.get(0) if engine is not None else None
        upto = float("inf") if finished else (last if last is not None else -1)
        if engine is not None:
            self.stats.write(*engine.live_stats(0))
        reply = {
            # the warm-up's frames come before the resume point: they are not the stream's progress
            "next_frame": max(last + 1, self.start_frame) if last is not None else self.start_frame,
            "events": self.tail.take(upto),
            "stats": self.stats.read(),
        }
        if finished:
            reply["end"] = self.result or {"error": self.error}
        return reply

    def jpeg(self, seen: int) -> tuple[int, bytes | None]:
        """The newest annotated frame if newer than `seen`; asking keeps the stream drawing for 3 s."""
        self._watch_until = time.monotonic() + 3.0
        if self._reader is None or not self._reader.is_alive():
            self._reader = threading.Thread(target=self._read_frames, name="mjpeg-reader", daemon=True)
            self._reader.start()
        return (self._seq, self._jpeg) if self._seq != seen else (seen, None)

    def _read_frames(self) -> None:
        """A viewer of this stream's own loopback MJPEG server while the server watches (frames nobody
        watches are not drawn)."""
        import http.client

        from ..video.sinks import read_mjpeg_part

        while time.monotonic() < self._watch_until and self.result is None and self.error is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                while time.monotonic() < self._watch_until:
                    jpeg = read_mjpeg_part(resp)
                    if jpeg is None:
                        break
                    self._jpeg, self._seq = jpeg, self._seq + 1
            except OSError:
                time.sleep(0.2)  # its MJPEG server starts with the first frames
            finally:
                conn.close()

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop("stopped")
