"""Frame sources: a video file, a folder of images, an RTSP/HTTP stream (reconnecting), a webcam."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError


class SourceError(DataError):
    """The source failed while frames were being read (truncated file, stream gone for good)."""


@dataclass
class Frame:
    index: int
    time_s: float  # media time (file: index / fps; live: seconds since start)
    image: np.ndarray  # BGR uint8 HWC (NVDEC: a torch tensor on the GPU; see host_image)


def host_image(image) -> np.ndarray:
    """The frame as a host BGR array (a copy from the GPU for NVDEC frames)."""
    return image if isinstance(image, np.ndarray) else image.cpu().numpy()


class FrameSource:
    """Iterates Frames; `live` sources may drop frames when the consumer falls behind."""

    kind = "file"
    live = False
    fps: float = 0.0
    size: tuple[int, int] = (0, 0)  # (width, height)
    frame_count: int | None = None
    description = ""

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the capture."""


def _check_complete(path: Path, index: int, frame_count: int | None) -> None:
    """A file's decoder stopped at frame `index`: short of the container's frame count is an error."""
    if frame_count is not None and index < frame_count:
        raise SourceError(f"{path}: the video ends early at frame {index} of {frame_count} (truncated or corrupt)")


class VideoFileSource(FrameSource):
    """A video file through OpenCV; reading stopping before the container's frame count is an error."""

    kind = "file"

    def __init__(self, path: Path, stride: int = 1, max_frames: int | None = None, start: int = 0):
        import cv2

        self.path, self.stride, self.max_frames, self.start = path, max(1, stride), max_frames, max(0, start)
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise DataError(f"cannot open video {path} (truncated, corrupt or not a video)")
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS)) or 25.0
        self.size = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:  # no count in the container: a file without one frame is refused here, not written as an empty MP4
            ok, _ = self.cap.read()
            self.cap.release()
            if not ok:
                raise DataError(f"{path}: the video has no frames")
            self.cap = cv2.VideoCapture(str(path))  # opened again: seeking back is not exact in every container
        self.frame_count = n if n > 0 else None
        self.description = f"{path.name}: {self.size[0]}x{self.size[1]} at {self.fps:g} fps, {n} frames"

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        delivered = 0
        while index < self.start:  # decoded, not converted: exact where seeking lands on a keyframe
            if not self.cap.grab():
                _check_complete(self.path, index, self.frame_count)
                return
            index += 1
        while self.max_frames is None or delivered < self.max_frames:
            ok, img = self.cap.read()
            if not ok:
                _check_complete(self.path, index, self.frame_count)
                return
            if index % self.stride == 0:
                yield Frame(index, index / self.fps, img)
                delivered += 1
            index += 1

    def close(self) -> None:
        self.cap.release()


class NvdecSource(FrameSource):
    """A video file decoded by the GPU's NVDEC through PyNvVideoCodec; frames stay in GPU memory.

    Each frame is a BGR uint8 HWC torch tensor on the GPU, which the GPU pipeline takes without an
    upload; only stages that need pixels on the host (annotation, writing) copy it back.
    """

    kind = "file"
    on_device = True  # frames are device tensors

    def __init__(
        self, path: Path, device: str = "cuda", stride: int = 1, max_frames: int | None = None, batch: int = 8
    ):
        from .._deps import require

        nvc = require("PyNvVideoCodec")
        self._torch = require("torch")
        from ..device import parse_device

        dev = parse_device(device)
        if not dev.is_cuda:
            raise DataError("--nvdec decodes on the GPU: use it with --device cuda")
        self.path, self.stride, self.max_frames, self.batch = path, max(1, stride), max_frames, max(1, batch)
        self._capsule = True
        try:
            self._dec = nvc.ThreadedDecoder(
                str(path),
                buffer_size=max(16, 2 * self.batch),
                gpu_id=dev.index,
                use_device_memory=True,
                output_color_type=nvc.OutputColorType.RGB,
            )
            meta = self._dec.get_stream_metadata()
        except Exception as e:  # PyNvVideoCodec raises plain exceptions for bad files and missing NVDEC
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"NVDEC cannot open {path}: {why}") from e
        self.fps = float(meta.average_fps) or 25.0
        self.size = (int(meta.width), int(meta.height))
        self.frame_count = int(meta.num_frames) or None
        self.description = (
            f"{path.name}: {self.size[0]}x{self.size[1]} at {self.fps:g} fps, {self.frame_count} frames (NVDEC)"
        )

    def __iter__(self) -> Iterator[Frame]:
        index = delivered = 0
        while self.max_frames is None or delivered < self.max_frames:
            frames = self._dec.get_batch_frames(self.batch)
            if not frames:
                _check_complete(self.path, index, self.frame_count)
                return
            for f in frames:
                if index % self.stride == 0 and (self.max_frames is None or delivered < self.max_frames):
                    # RGB -> BGR as the rest of the tool expects; the copy also frees the decoder's buffer
                    yield Frame(index, index / self.fps, self._tensor(f).flip(-1))
                    delivered += 1
                index += 1

    def _tensor(self, f):
        """The decoded frame as a torch tensor, ordered after the decoder's work on this thread's stream.

        torch.from_dlpack(frame) asks for the current stream through a device-string lookup per
        call, Python work that ran for a large share of the interpreter lock with sixteen decoders;
        this thread stays on the legacy default stream (DLPack's stream number 1), so that is asked
        for directly and the capsule handed to torch.
        """
        if self._capsule:
            try:
                return self._torch.from_dlpack(f.__dlpack__(stream=1))
            except TypeError:  # a PyNvVideoCodec without the stream argument
                self._capsule = False
        return self._torch.from_dlpack(f)

    def rewind(self) -> None:
        """Start again from the first frame with the same decoder (`--loop`).

        Ending a ThreadedDecoder and making a new one for every pass killed a soak run on the H200
        within minutes (heap corruption inside PyNvVideoCodec); its own reconfigure call reuses the
        decoder instead.
        """
        self._dec.reconfigure_decoder(str(self.path), 0)

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):
            self._dec.end()


class ImageFolderSource(FrameSource):
    """Images of a folder, sorted by name, as frames at a nominal frame rate."""

    kind = "folder"

    def __init__(self, folder: Path, fps: float = 25.0, stride: int = 1, max_frames: int | None = None):
        from ..images import expand_source, read_image

        self.files = expand_source(folder)[:: max(1, stride)]
        if max_frames is not None:
            self.files = self.files[:max_frames]
        first = read_image(self.files[0])
        self.fps, self.size, self.frame_count = fps, (first.shape[1], first.shape[0]), len(self.files)
        self.description = f"{folder}: {len(self.files)} images"

    def __iter__(self) -> Iterator[Frame]:
        from ..images import read_image

        for i, f in enumerate(self.files):
            yield Frame(i, i / self.fps, read_image(f))


class StreamSource(FrameSource):
    """An RTSP/HTTP stream or a webcam; reconnects with exponential back-off when the stream drops."""

    kind = "stream"
    live = True

    def __init__(
        self,
        url: str | int,
        retries: int = 5,
        backoff_s: float = 1.0,
        max_frames: int | None = None,
        stride: int = 1,
        max_backoff_s: float = 30.0,
        timeout_s: float = 10.0,
    ):
        """`retries` attempts to (re)open, waiting `backoff_s`, then twice as long each time up to
        `max_backoff_s`; a connection that sends nothing for `timeout_s` counts as dropped."""
        self.url, self.retries, self.backoff_s, self.max_backoff_s = url, retries, backoff_s, max_backoff_s
        self.timeout_ms = int(timeout_s * 1000)
        self.max_frames, self.stride = max_frames, max(1, stride)
        self.reconnects = 0
        self.connected = False
        self.cap = self._open(first=True)
        import cv2

        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS)) or 25.0
        self.size = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.description = f"{url}: {self.size[0]}x{self.size[1]} (live)"

    def _open(self, first: bool = False):
        import cv2

        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            if isinstance(self.url, int):
                cap = cv2.VideoCapture(self.url)
            else:  # FFmpeg's own timeouts are 30 s and more: a dead camera would hold the stream that long
                if str(self.url).startswith("rtsp"):
                    # RTSP over TCP (as Frigate's default): a server that goes away is seen at once, and no
                    # frame is torn by lost UDP packets; OPENCV_FFMPEG_CAPTURE_OPTIONS set by the user wins
                    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
                ms = self.timeout_ms
                timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
                cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, timeouts)
            if cap.isOpened():
                self.connected = True
                return cap
            cap.release()
            if attempt < self.retries:
                warnings.warn(
                    f"cannot open {self.url}; retrying in {delay:.1f} s ({attempt + 1}/{self.retries})", stacklevel=2
                )
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
        what = "cannot open" if first else "lost and could not reopen"
        raise SourceError(f"{what} {self.url} after {self.retries} retries")

    def __iter__(self) -> Iterator[Frame]:
        t0, index, delivered = time.perf_counter(), 0, 0
        while self.max_frames is None or delivered < self.max_frames:
            ok, img = self.cap.read()
            if not ok:
                warnings.warn(f"{self.url}: stream dropped; reconnecting", stacklevel=2)
                self.connected = False
                self.cap.release()
                self.cap = self._open()
                self.reconnects += 1
                continue
            if index % self.stride == 0:
                yield Frame(index, time.perf_counter() - t0, img)
                delivered += 1
            index += 1

    def close(self) -> None:
        self.cap.release()


class ResumedSource(FrameSource):
    """Another source's frames from index `start` on (a stopped stream resumed where it stopped)."""

    def __init__(self, inner: FrameSource, start: int, max_frames: int | None = None):
        self.inner, self.start, self.max_frames = inner, start, max_frames
        self.kind, self.live, self.fps, self.size = inner.kind, inner.live, inner.fps, inner.size
        self.on_device = getattr(inner, "on_device", False)
        self.frame_count = getattr(inner, "frame_count", None)
        self.description = f"{inner.description}, from frame {start}"

    def __iter__(self) -> Iterator[Frame]:
        delivered = 0
        for f in self.inner:
            if self.max_frames is not None and delivered >= self.max_frames:
                return
            if f.index >= self.start:
                delivered += 1
                yield f

    def close(self) -> None:
        self.inner.close()


class LoopingSource(FrameSource):
    """A file or folder played again from the start each time it ends (soak tests, demos).

    Frame indices and times keep counting up across passes, so events stay in order; `max_frames`
    counts frames over all passes.
    """

    def __init__(self, open_once, max_frames: int | None = None, start: int = 0):
        self._open = open_once
        self._current = open_once()
        self.max_frames, self.start = max_frames, start
        first = self._current
        self.kind, self.live, self.fps, self.size = first.kind, False, first.fps, first.size
        self.on_device = getattr(first, "on_device", False)
        self.frame_count = None
        self.passes = 0
        self.description = f"{first.description}, looped"

    def __iter__(self) -> Iterator[Frame]:
        delivered = 0
        offset_index, offset_time = 0, 0.0
        n = self._current.frame_count
        if self.start and n:  # whole passes before `start` are skipped without decoding them
            skipped = self.start // n
            offset_index, offset_time = skipped * n, skipped * n / (self.fps or 25.0)
            self.passes = skipped
        while True:
            last = None
            for f in self._current:
                if self.max_frames is not None and delivered >= self.max_frames:
                    return
                last = f
                if f.index + offset_index < self.start:
                    continue
                delivered += 1
                yield Frame(f.index + offset_index, f.time_s + offset_time, f.image)
            self.passes += 1
            if last is None:
                return  # an empty pass: nothing to loop
            offset_index += last.index + 1
            offset_time += last.time_s + 1 / (self.fps or 25.0)
            if hasattr(self._current, "rewind"):
                self._current.rewind()
            else:
                self._current.close()
                self._current = self._open()

    def close(self) -> None:
        self._current.close()


class RealtimeSource(FrameSource):
    """A file or folder delivered at its own frame rate, as a camera would deliver it: each frame waits
    until its time on the clock (the first frame at once). A consumer that falls behind is not waited
    for (frames are late, none dropped)."""

    def __init__(self, inner: FrameSource):
        self.inner = inner

    # what the engine reads of a source: the inner one's (FrameSource's class defaults would hide them)
    kind = property(lambda self: self.inner.kind)
    live = property(lambda self: self.inner.live)
    fps = property(lambda self: self.inner.fps)
    size = property(lambda self: self.inner.size)
    frame_count = property(lambda self: self.inner.frame_count)
    description = property(lambda self: f"{self.inner.description} (at its frame rate)")
    passes = property(lambda self: getattr(self.inner, "passes", 1))

    def __iter__(self) -> Iterator[Frame]:
        import time

        start = first = None
        for frame in self.inner:
            if start is None:
                start, first = time.monotonic(), frame.time_s
            wait = (frame.time_s - first) - (time.monotonic() - start)
            if wait > 0:
                time.sleep(wait)
            yield frame

    def close(self) -> None:
        self.inner.close()


def open_source(
    spec: str,
    stride: int = 1,
    max_frames: int | None = None,
    retries: int = 5,
    backoff_s: float = 1.0,
    nvdec_device: str | None = None,
    loop: bool = False,
    start_frame: int = 0,
    realtime: bool = False,
    max_backoff_s: float = 30.0,
) -> FrameSource:
    """A file, a folder, a URL (rtsp://, http(s)://) or a webcam index ('0').

    With `nvdec_device` ('cuda:N') a video file is decoded by NVDEC into GPU memory. With `loop` a
    file or folder starts again when it ends (live sources refuse it). `start_frame` resumes a file
    or folder at that frame index (frames before it are decoded, not delivered; `max_frames` then
    counts the frames delivered from there). `realtime` delivers a file's frames at its frame rate.
    """
    live = spec.isdigit() or "://" in spec
    if realtime:
        if live:
            raise DataError(f"--realtime paces files and folders; {spec} is a live source, it has its own pace")
        return RealtimeSource(
            open_source(spec, stride, max_frames, retries, backoff_s, nvdec_device, loop, start_frame)
        )
    if start_frame and live:
        raise DataError(f"{spec} is a live source: it cannot start at a frame")
    if nvdec_device and live:
        raise DataError("--nvdec decodes video files; streams and webcams use the CPU decoder")
    if live:
        if loop:
            raise DataError(f"--loop replays files and folders; {spec} is a live source")
        url = int(spec) if spec.isdigit() else spec
        return StreamSource(url, retries, backoff_s, max_frames, stride, max_backoff_s=max_backoff_s)
    # a looping source counts and skips by itself; otherwise the source counts from `resume` on
    resume = 0 if loop else start_frame
    whole = None if (loop or resume) else max_frames  # what a source that cannot skip reads of its own
    p = Path(spec).expanduser()
    if p.is_dir():
        opener = lambda: ImageFolderSource(p, stride=stride, max_frames=whole)  # noqa: E731
    else:
        if not p.is_file():
            raise DataError(f"video source not found: {p}")
        if p.stat().st_size == 0:
            raise DataError(f"video is empty (0 bytes): {p}")
        if nvdec_device:
            opener = lambda: NvdecSource(p, nvdec_device, stride, whole)  # noqa: E731
        else:  # OpenCV skips to `resume` itself (grab without converting)
            opener = lambda: VideoFileSource(p, stride, None if loop else max_frames, start=resume)  # noqa: E731
    if loop:
        return LoopingSource(opener, max_frames, start_frame)
    src = opener()
    return ResumedSource(src, resume, max_frames) if resume and not isinstance(src, VideoFileSource) else src
