"""Where annotated frames go: an MP4 file (PyAV H.264, else OpenCV), JPEG frames, an MJPEG HTTP stream."""

from __future__ import annotations

import os
import threading
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np


class Mp4Writer:
    """H.264 through PyAV when it is installed (yuv420p, constant frame rate), else OpenCV's mp4v.

    Frames go to a temporary file beside the target, moved into place by `close()`; `discard()`
    removes it, so a failed run leaves no half-written video.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path, self.fps, self.size = Path(path), fps, size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.frames = 0
        try:
            import av

            self._container = av.open(str(self.tmp), mode="w", format="mp4")
            rate = Fraction(fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = size
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"preset": "veryfast", "crf": "23"}
            self._av = av
            self.backend = "pyav-libx264"
        except ImportError:  # PyAV missing
            self._opencv()
        except Exception as e:  # PyAV without libx264; a path it cannot write is an error either way
            if isinstance(e, OSError) or "ermission" in str(e):
                raise OSError(f"cannot write {self.path}: {e}") from e
            self._opencv()

    def _opencv(self) -> None:
        import cv2

        self._av = None
        self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
        if not self._writer.isOpened():
            raise OSError(f"cannot write {self.path}")
        self.backend = "opencv-mp4v"

    def write(self, image: np.ndarray) -> None:
        if self._av is not None:
            frame = self._av.VideoFrame.from_ndarray(image, format="bgr24")
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        else:
            self._writer.write(image)
        self.frames += 1

    def _finish_encoder(self) -> None:
        if self._av is not None:
            try:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            finally:
                self._container.close()
        else:
            self._writer.release()

    def close(self) -> None:
        try:
            self._finish_encoder()
            os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)

    def discard(self) -> None:
        try:
            self._finish_encoder()
        finally:
            self.tmp.unlink(missing_ok=True)


class MjpegServer:
    """Serves the latest annotated frame as multipart/x-mixed-replace JPEG on http://HOST:PORT/."""

    def __init__(self, port: int, host: str = "127.0.0.1", quality: int = 80):
        self._latest: bytes | None = None
        self._cond = threading.Condition()
        self.quality = quality
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the terminal for the progress bar
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                last = None
                try:
                    while not server.closed:
                        with server._cond:
                            server._cond.wait_for(
                                lambda last=last: server._latest is not last or server.closed, timeout=1.0
                            )
                            jpeg = server._latest
                        if jpeg is None or jpeg is last:
                            continue
                        last = jpeg
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(jpeg)).encode()
                            + b"\r\n\r\n"
                            + jpeg
                            + b"\r\n"
                        )
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.closed = False
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def publish(self, image: np.ndarray) -> None:
        import cv2

        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._cond:
                self._latest = buf.tobytes()
                self._cond.notify_all()

    def close(self) -> None:
        self.closed = True
        with self._cond:
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
