"""Where annotated frames go: an MP4 file (NVENC, PyAV H.264 or OpenCV), JPEG frames, an MJPEG HTTP stream."""

from __future__ import annotations

import os
import threading
import time
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np


class _TemporaryFileWriter:
    """Frames go to `self.tmp` beside the target; `close()` finishes the encoder and moves the file into
    place, `discard()` finishes it and removes the file: a failed run leaves no half-written video."""

    tmp: Path
    path: Path

    def _finish_encoder(self) -> None:
        raise NotImplementedError

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


class Mp4Writer(_TemporaryFileWriter):
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


ENCODERS = ("auto", "nvenc", "cpu")


class NvencMp4Writer(_TemporaryFileWriter):
    """H.264 on the GPU's video encoder (NVENC, through PyNvVideoCodec), muxed into MP4 by its FFmpeg muxer.

    The annotated frame is a host BGR image (drawing happens in the stream's worker process); the
    worker only converts it to I420 (one OpenCV call) and the encoder does the rest, which takes the
    CPU's H.264 encoding (the slowest step of an annotated stream) off the host. Same temporary-file
    contract as Mp4Writer.
    """

    def __init__(self, path: Path, fps: float, size: tuple[int, int], gpu_id: int = 0):
        from .._deps import require

        nvc = require("PyNvVideoCodec")
        w, h = size
        if w % 2 or h % 2:
            raise ValueError(f"NVENC takes even frame sizes only (got {w}x{h})")
        self.path, self.fps, self.size, self.frames = Path(path), fps, size, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        rate = Fraction(fps).limit_denominator(1001)
        fps_int = max(1, round(fps))
        self._nvc = nvc
        # ~8 Mbit/s at 1080p, scaled by area: annotated traffic video stays sharp at a modest size
        bitrate = max(1_000_000, int(8_000_000 * w * h / (1920 * 1080)))
        self._enc = nvc.CreateEncoder(
            w,
            h,
            "YUV420",
            True,
            codec="h264",
            preset="P4",
            rc="vbr",
            bitrate=bitrate,
            fps=fps_int,
            gop=2 * fps_int,
            gpu_id=gpu_id,
        )
        self._mux = nvc.FFmpegMuxer(
            file_path=str(self.tmp),
            media_format=nvc.GetMediaFormat(str(self.tmp)),
            codec="h264",
            width=w,
            height=h,
            fps_num=rate.numerator,
            fps_den=rate.denominator,
            timebase_num=1,
            timebase_den=90000,
            extradata=self._enc.GetSequenceParams(),
        )
        self._mux.SetUniformPtsIncrement(90000 * rate.denominator // rate.numerator)
        self.backend = "nvenc-h264"

    def _mux_packets(self, packets) -> None:
        for p in packets:
            self._mux.MuxVideoPacket(bytes(p["data"]), p["picture_type"], p["timestamp"])

    def write(self, image: np.ndarray) -> None:
        import cv2

        pic = self._nvc.NV_ENC_PIC_PARAMS()
        pic.inputTimeStamp = self.frames
        yuv = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)  # planar Y, U, V: the encoder's "YUV420"
        self._mux_packets(self._enc.Encode(yuv.reshape(-1), pic))
        self.frames += 1

    def _finish_encoder(self) -> None:
        try:
            self._mux_packets(self._enc.EndEncode())
        finally:
            self._mux.Finalize()


def nvenc_problem(gpu_id: int = 0, timeout_s: float = 60.0) -> str | None:
    """None when NVENC starts on this GPU, else why not, in a few words.

    The probe (a small encoder) runs in a child process: on a GPU without video encoders,
    PyNvVideoCodec's failed encoder leaves the calling process's CUDA state broken (seen on an H200:
    later torch calls failed with "invalid resource handle" and the process aborted at exit).
    """
    import subprocess
    import sys

    code = "import sys; from yolo_accel.video.sinks import _probe_nvenc; _probe_nvenc(int(sys.argv[1]))"
    try:
        child = subprocess.run(
            [sys.executable, "-c", code, str(gpu_id)], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return f"the NVENC probe took over {timeout_s:.0f} s"
    if child.returncode == 0:
        return None
    lines = [x for x in child.stderr.strip().splitlines() if x.strip()]
    return lines[-1] if lines else f"the NVENC probe exited with code {child.returncode}"


def _probe_nvenc(gpu_id: int) -> None:
    """In a child process: start a small encoder, or print why not on stderr and exit 1."""
    import sys
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as d:
            NvencMp4Writer(Path(d) / "probe.mp4", 25.0, (256, 144), gpu_id).discard()
    except Exception as e:
        print(_nvenc_reason(e), file=sys.stderr)
        sys.exit(1)


def _nvenc_reason(e: Exception) -> str:
    text = str(e)
    if "returned error 2" in text:  # NV_ENC_ERR_NO_ENCODE_DEVICE
        return "this GPU has no video encoder (NVENC)"
    return text.splitlines()[0][:160] if text.strip() else type(e).__name__


def open_video_writer(path: Path, fps: float, size: tuple[int, int], encoder: str = "auto", gpu_id: int | None = None):
    """The MP4 writer for `encoder`: "nvenc" (the GPU's encoder; an error where it cannot start), "cpu"
    (PyAV's libx264, else OpenCV), or "auto": NVENC when the run is on a GPU and a probe (in a child
    process) starts it there, else the CPU. Returns (writer, note): the note says why auto fell back."""
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; use one of {', '.join(ENCODERS)}")
    if encoder == "nvenc":
        return NvencMp4Writer(path, fps, size, gpu_id or 0), None
    if encoder == "auto" and gpu_id is not None:
        problem = nvenc_problem(gpu_id)
        if problem is None:
            return NvencMp4Writer(path, fps, size, gpu_id), None
        return Mp4Writer(path, fps, size), f"NVENC unavailable ({problem}): encoding on the CPU"
    return Mp4Writer(path, fps, size), None


class MjpegServer:
    """Serves the latest annotated frame as multipart/x-mixed-replace JPEG on http://HOST:PORT/."""

    def __init__(self, port: int, host: str = "127.0.0.1", quality: int = 80, max_fps: float | None = None):
        self._latest: bytes | None = None
        self._interval = 1.0 / max_fps if max_fps else 0.0
        self._published_at = -1e9
        self._cond = threading.Condition()
        self.quality = quality
        self.viewers = 0  # connected clients: frames nobody watches are not drawn nor encoded
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the terminal for the progress bar
                pass

            def do_GET(self):
                with server._cond:
                    server.viewers += 1
                try:
                    self._frames()
                finally:
                    with server._cond:
                        server.viewers -= 1

            def _frames(self):
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

    def wants_frame(self) -> bool:
        """Whether the next frame would be sent: someone watches, and the frame-rate cap allows it."""
        return self.viewers > 0 and time.perf_counter() - self._published_at >= self._interval

    def publish(self, image: np.ndarray) -> None:
        import cv2

        self._published_at = time.perf_counter()
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._cond:
                self._latest = buf.tobytes()
                self._cond.notify_all()

    def publish_jpeg(self, jpeg: bytes) -> None:
        """An already encoded frame (one relayed from another machine)."""
        self._published_at = time.perf_counter()
        with self._cond:
            self._latest = jpeg
            self._cond.notify_all()

    def close(self) -> None:
        self.closed = True
        with self._cond:
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()


def read_mjpeg_part(resp) -> bytes | None:
    """The next JPEG of a multipart response (headers with Content-Length, then the bytes), or None at its end."""
    length = None
    while True:
        line = resp.readline()
        if not line:
            return None
        line = line.strip()
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
        elif not line and length is not None:
            data = resp.read(length)
            return data if len(data) == length else None
