"""Everything one stream does after detection: track, count, write events, annotate and write frames.

A `StreamProcessor` holds a stream's state (tracker, counters, open files) and takes that stream's
frames in order, one call each. The engine runs processors in worker processes (or in a thread),
and the sequential reference path calls one directly: both give the same events for the same
detections, because this is the only code that turns detections into tracks, counts and events.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._deps import require
from .counting import Counter, parse_line, parse_zone
from .stats import StageTimes
from .tracking import make_tracker


@dataclass
class StreamSettings:
    """What one stream does after detection (the `video` options that are not the Detector's)."""

    tracker: str = "bytetrack"
    lines: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    output: str | None = None  # annotated MP4
    save_frames: str | None = None  # annotated JPEGs in this folder
    events: str | None = None  # one JSON line per crossing
    serve_mjpeg: int | None = None  # port
    mjpeg_fps: float | None = None  # at most this many MJPEG frames a second (None: every frame)
    hud: bool = True  # the panel with FPS and counts on annotated frames
    hud_fps: bool = True  # FPS in that panel (off: frames that depend only on the video, not on the machine)
    encoder: str = "auto"  # MP4 encoder: auto (NVENC on a GPU run when it starts), nvenc, cpu
    encoder_gpu: int | None = None  # the GPU of the run (None: a CPU run, so auto means the CPU)
    ocr: bool = False  # read the plates of tracked vehicles
    ocr_tries: int = 5  # reads per track at most
    plate_pattern: str | None = None  # only plates matching this regular expression (after normalising)
    ocr_device: str = "cpu"  # cpu, or cuda where onnxruntime-gpu is installed
    plate_crops: str | None = None  # folder for each track's best-read crop (track<ID>.jpg)
    plates_catch_up: bool = False  # a file: crops skipped while the reader was busy are read later (the engine sets it)
    # A resumed stream replays some frames before its resume point so that its tracks and counters are
    # where the uninterrupted run's were: those frames count nothing (their events are stored already).
    events_from: int = 0  # frames before this index are tracked, their crossings not recorded
    track_id_offset: int = 0  # added to every track id: a resumed run's tracks never reuse the earlier ids
    # A stream of a shared engine whose detector finds every class: this stream keeps only these class ids
    # and, of them, the `max_det` most confident (what a detector of its own with these settings keeps:
    # NMS is per class, so the other classes' boxes never suppress these)
    classes: tuple[int, ...] | None = None
    max_det: int | None = None
    seen_at: bool = False  # each crossing gets `seen_at`: the Unix time its frame was decoded (latency figures)

    @property
    def annotates(self) -> bool:
        return bool(self.output or self.save_frames or self.serve_mjpeg is not None)

    @property
    def needs_pixels(self) -> bool:
        """Whether the worker gets each frame's pixels (to draw them, or to crop vehicles for OCR)."""
        return self.annotates or self.ocr


class Annotator:
    """Boxes, labels, traces, lines, zones and a HUD panel (FPS, counts) with supervision."""

    def __init__(self, names: dict[int, str], counter: Counter, hud: bool = True, hud_fps: bool = True):
        sv = require("supervision")
        self.sv, self.names, self.counter, self.hud, self.hud_fps = sv, names, counter, hud, hud_fps
        self.box = sv.BoxAnnotator(thickness=2)
        self.label = sv.LabelAnnotator(text_scale=0.5, text_padding=3, smart_position=True)
        self.trace = sv.TraceAnnotator(trace_length=30)
        self.line = sv.LineZoneAnnotator(thickness=2, text_scale=0.6)

    def draw(self, img: np.ndarray, d, fps: float) -> np.ndarray:
        sv = self.sv
        ids = d.tracker_id if d.tracker_id is not None else [None] * len(d)
        labels = [
            (f"#{int(t)} " if t is not None and t >= 0 else "") + f"{self.names.get(int(c), c)} {p:.2f}"
            for c, p, t in zip(d.class_id, d.confidence, ids)
        ]
        img = self.box.annotate(img, d)
        img = self.label.annotate(img, d, labels)
        if d.tracker_id is not None and len(d):
            img = self.trace.annotate(img, d[d.tracker_id >= 0])
        for _, zone in self.counter.lines:
            img = self.line.annotate(img, zone)
        for spec, _ in self.counter.zones:
            img = sv.draw_polygon(img, spec.polygon, sv.Color.YELLOW, thickness=2)
        if self.hud:
            texts = ([f"FPS {fps:.1f}"] if self.hud_fps else []) + [
                f"{c} {n}: in {v['in']} out {v['out']}"
                for c, per in self.counter.as_dict().items()
                for n, v in per.items()
            ]
            draw_panel(img, texts)
        return img


def draw_panel(img: np.ndarray, texts: list[str]) -> None:
    """Lines of text on a dark, half-transparent panel in the top-left corner (readable on any background)."""
    import cv2

    if not texts:
        return
    font, scale, thick, step = cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1, 22
    width = max(cv2.getTextSize(t, font, scale, thick)[0][0] for t in texts) + 20
    height = step * len(texts) + 12
    h, w = img.shape[:2]
    x1, y1 = min(width, w), min(height, h)
    roi = img[:y1, :x1]
    roi[:] = (roi.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken to 40 %
    for i, t in enumerate(texts):
        cv2.putText(img, t, (10, 22 + i * step), font, scale, (255, 255, 255), thick, cv2.LINE_AA)


class StreamProcessor:
    """One stream's tracker, counters, events file and output sinks; `process` takes its frames in order."""

    def __init__(
        self, settings: StreamSettings, names: dict[int, str], fps: float, size: tuple[int, int], plate_reads=None
    ):
        """`plate_reads`: the stream's end of the engine's plate reader process (else reads in a thread)."""
        self.s, self.names, self.fps, self.size = settings, names, fps, size
        self.tracker = make_tracker(settings.tracker, fps)
        self.counter = Counter(
            [parse_line(t, i + 1) for i, t in enumerate(settings.lines)],
            [parse_zone(t, i + 1) for i, t in enumerate(settings.zones)],
            names,
        )
        self.stages = StageTimes()
        self.latency = StageTimes()  # one "frame" entry: decode start to the end of this stream's work
        self.frames = self.detections = 0
        self.track_ids: set[int] = set()
        self.error: str | None = None
        self.notes: list[str] = []  # e.g. why the MP4 is encoded on the CPU
        self._t_first: float | None = None
        self._events = None
        self._writer = self._mjpeg = None
        self._frames_dir = None
        self.annotator = Annotator(names, self.counter, settings.hud, settings.hud_fps) if settings.annotates else None
        if settings.events:
            Path(settings.events).parent.mkdir(parents=True, exist_ok=True)
            self._events = open(settings.events, "w", encoding="utf-8")  # noqa: SIM115 (closed in finish)
        if settings.save_frames:
            self._frames_dir = Path(settings.save_frames)
            self._frames_dir.mkdir(parents=True, exist_ok=True)
        self.plates = None
        if settings.ocr:
            from .plates import PlateStage

            self.plates = PlateStage(
                names,
                settings.ocr_tries,
                settings.plate_pattern,
                settings.ocr_device,
                crops_dir=settings.plate_crops,
                reads=plate_reads,
                catch_up=settings.plates_catch_up,
            )
        if settings.serve_mjpeg is not None:
            from .sinks import MjpegServer

            self._mjpeg = MjpegServer(settings.serve_mjpeg, max_fps=settings.mjpeg_fps)

    def process(self, index: int, time_s: float, t0: float, packed: np.ndarray, image: np.ndarray | None = None):
        """One frame: (K, 6) detections (`Detections.to_array`) and, where the stream annotates, its BGR pixels.

        Returns the tracked supervision Detections and the frame's events.
        """
        sv = require("supervision")
        if self._t_first is None:
            self._t_first = t0
        ta = time.perf_counter()
        if self.s.classes is not None or self.s.max_det is not None:
            packed = self._keep(packed)
        d = sv.Detections(
            xyxy=packed[:, :4].astype(np.float32),
            confidence=packed[:, 4].astype(np.float32),
            class_id=packed[:, 5].astype(int),
        )
        if self.tracker is not None:
            d = self.tracker.update(d)
            if self.s.track_id_offset and d.tracker_id is not None:
                d.tracker_id = np.where(d.tracker_id >= 0, d.tracker_id + self.s.track_id_offset, d.tracker_id)
        tb = time.perf_counter()
        events = self.counter.update(index, time_s, d, record=index >= self.s.events_from)
        tc = time.perf_counter()
        if self.s.seen_at and events:
            seen = round(time.time() - (tc - t0), 3)  # t0: this frame's decode start, on this machine's clock
            for ev in events:
                ev["seen_at"] = seen
        self.stages.add("track", (tb - ta) * 1000)
        self.stages.add("count", (tc - tb) * 1000)
        self.detections += len(d)
        if d.tracker_id is not None:
            self.track_ids.update(int(t) for t in d.tracker_id if t >= 0)
        if self.plates is not None:
            if image is not None:
                self.plates.offer(index, image, d)
            for ev in events:
                ev["plate"] = self.plates.plate_of(ev["track_id"])
            events_and_plates = events + self.plates.drain()
        else:
            events_and_plates = events
        if self._events is not None and events_and_plates:
            self._events.write("".join(json.dumps(ev) + "\n" for ev in events_and_plates))
        if self.annotator is not None and image is not None and self._wants_pixels():
            elapsed = tc - self._t_first
            img = self.annotator.draw(image.copy(), d, (self.frames + 1) / elapsed if elapsed > 0 else 0.0)
            td = time.perf_counter()
            self.stages.add("annotate", (td - tc) * 1000)
            self._write(index, img)
            self.stages.add("encode", (time.perf_counter() - td) * 1000)
        self.frames += 1
        self.latency.add("frame", (time.perf_counter() - t0) * 1000)
        return d, events

    def _keep(self, packed: np.ndarray) -> np.ndarray:
        """This stream's classes, then its `max_det` most confident boxes (stable: ties keep their order)."""
        if self.s.classes is not None:
            packed = packed[np.isin(packed[:, 5].astype(int), self.s.classes)]
        if self.s.max_det is not None and len(packed) > self.s.max_det:
            packed = packed[np.argsort(-packed[:, 4], kind="stable")[: self.s.max_det]]
        return packed

    @property
    def watched(self) -> bool:
        """Whether someone watches this stream's MJPEG frames now (its engine sends pixels only then)."""
        return self._mjpeg is not None and self._mjpeg.viewers > 0

    def _wants_pixels(self) -> bool:
        """Whether this frame is drawn: always for files, for an MJPEG stream only when it will be sent (someone
        watches, and its frame-rate cap allows it)."""
        return bool(self.s.output or self._frames_dir is not None) or (
            self._mjpeg is not None and self._mjpeg.wants_frame()
        )

    def _write(self, index: int, img: np.ndarray) -> None:
        if self.s.output:
            if self._writer is None:
                from .sinks import open_video_writer

                h, w = img.shape[:2]
                self._writer, note = open_video_writer(
                    Path(self.s.output), self.fps, (w, h), self.s.encoder, self.s.encoder_gpu
                )
                if note:
                    self.notes.append(note)
            self._writer.write(img)
        if self._frames_dir is not None:
            import cv2

            if not cv2.imwrite(str(self._frames_dir / f"frame_{index:06d}.jpg"), img):
                raise OSError(f"cannot write {self._frames_dir / f'frame_{index:06d}.jpg'}")
        if self._mjpeg is not None and self._mjpeg.wants_frame():
            self._mjpeg.publish(img)

    def flush(self) -> None:
        if self._events is not None:
            self._events.flush()

    def finish(self) -> dict:
        """Close files and servers; this stream's part of the summary."""
        out = {"video": self.s.output, "video_frames": 0, "video_backend": None}
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                out.update(video_frames=self._writer.frames, video_backend=self._writer.backend)
        elif self.s.output and self.error:
            out["video"] = None  # nothing was written
        plates = None
        if self.plates is not None:
            plates = self.plates.finish(wait=self.error is None)
            late = self.plates.drain()  # reads that finished after the last frame
            if self._events is not None and late:
                self._events.write("".join(json.dumps(ev) + "\n" for ev in late))
        if self._events is not None:
            self._events.close()
        if self._mjpeg is not None:
            with contextlib.suppress(Exception):
                self._mjpeg.close()
        lat = self.latency.stages.get("frame")
        return {
            "frames": self.frames,
            "detections": self.detections,
            "tracks": len(self.track_ids),
            "counts": self.counter.as_dict(),
            "latency_ms": {"mean": lat.mean if lat else 0.0, "p95": lat.percentile(95) if lat else 0.0},
            "stages": self.stages,
            "output": {
                **out,
                "frames_dir": self.s.save_frames,
                "events": self.s.events,
                "mjpeg_port": self._mjpeg.port if self._mjpeg else None,
                "notes": self.notes,
            },
            "error": self.error,
            "plates": plates,
        }

    def abort(self, error: str) -> None:
        """The stream failed here: remember why, stop writing its video (the partial file is removed)."""
        self.error = error
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.discard()
            self._writer = None
