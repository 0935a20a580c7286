"""The video pipeline: decode -> detect (pre/infer/post) -> track + count -> annotate -> write, one thread
each, joined by bounded queues. File sources drop nothing; live sources keep the newest frame."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._deps import require
from ..errors import YoloAccelError
from .counting import Counter, parse_line, parse_zone
from .sources import FrameSource, host_image
from .tracking import make_tracker, to_supervision

STAGES = ("decode", "pre", "infer", "post", "track", "count", "annotate", "encode")
_END = object()


@dataclass
class VideoSettings:
    """Options of `yolo-accel video` that are not the Detector's."""

    tracker: str = "bytetrack"
    lines: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    output: str | None = None
    save_frames: str | None = None
    events: str | None = None
    serve_mjpeg: int | None = None
    batch: int = 1  # frames per inference batch (throughput mode when > 1)
    queue_size: int = 8


@dataclass
class _Item:
    frame: object  # sources.Frame
    t0: float  # perf_counter when decoding of this frame started
    dets: object = None  # ours, then supervision's
    image: np.ndarray | None = None  # annotated
    future: object = None  # throughput mode: the batcher's Future of `dets`


class _Stages:
    """Per-stage, per-frame timings (ms), thread-safe enough: each stage appends from one thread."""

    def __init__(self):
        self.ms: dict[str, list[float]] = defaultdict(list)

    def table(self) -> list[dict]:
        means = {s: float(np.mean(self.ms[s])) for s in STAGES if self.ms.get(s)}
        total = sum(means.values()) or 1.0
        return [
            {"stage": s, "mean_ms": means[s], "p95_ms": float(np.percentile(self.ms[s], 95)), "share": means[s] / total}
            for s in STAGES
            if s in means
        ]


def run_video(
    source: FrameSource, detector, s: VideoSettings, progress=None, on_frame=None, stop: threading.Event | None = None
) -> dict:
    """Process `source`; returns the summary. `on_frame(frame_index, tracked sv.Detections)` sees every frame."""
    sv = require("supervision")
    stop = stop or threading.Event()
    stages = _Stages()
    errors: list[BaseException] = []
    names = detector.names
    tracker = make_tracker(s.tracker, source.fps)
    counter = Counter(
        [parse_line(t, i + 1) for i, t in enumerate(s.lines)],
        [parse_zone(t, i + 1) for i, t in enumerate(s.zones)],
        names,
    )
    annotate = bool(s.output or s.save_frames or s.serve_mjpeg is not None)
    q_dec, q_det, q_trk, q_ann = (queue.Queue(maxsize=s.queue_size) for _ in range(4))
    dropped = [0]
    for path in (s.events, s.output):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    events_file = open(s.events, "w", encoding="utf-8") if s.events else None  # noqa: SIM115 (closed below)
    track_ids: set[int] = set()
    n_dets = [0]
    latencies: list[float] = []
    writer = mjpeg = None

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # surfaced after the pipeline has drained
                errors.append(e)
                stop.set()

        return run

    def put(q, item):
        while True:
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if errors and item is not _END:
                    return

    source_errors: list[BaseException] = []

    def decode():
        it = iter(source)
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    break
                except YoloAccelError as e:  # the source ended badly: the frames read so far are still processed
                    source_errors.append(e)
                    break
                stages.ms["decode"].append((time.perf_counter() - t0) * 1000)
                item = _Item(frame, t0)
                if source.live:
                    try:
                        q_dec.put_nowait(item)
                    except queue.Full:  # keep the newest frame: drop the oldest waiting one
                        try:
                            q_dec.get_nowait()
                            dropped[0] += 1
                        except queue.Empty:
                            pass
                        q_dec.put_nowait(item)
                else:
                    put(q_dec, item)
        finally:
            put(q_dec, _END)

    def detect():
        if hasattr(detector, "submit"):  # throughput mode: hand frames to the batcher, do not wait
            while (item := q_dec.get()) is not _END:
                if not errors:
                    item.future = detector.submit(item.frame.image)
                    put(q_det, item)
            put(q_det, _END)
            return
        done = False
        while not done:
            first = q_dec.get()
            if first is _END:
                break
            batch = [first]
            while len(batch) < s.batch:
                try:
                    nxt = q_dec.get_nowait()
                except queue.Empty:
                    break
                if nxt is _END:
                    done = True
                    break
                batch.append(nxt)
            if errors:
                continue
            dets, per = detector.detect_batch([b.frame.image for b in batch])
            for b, d in zip(batch, dets):
                for stage, ms in per.items():
                    stages.ms[stage].append(ms)
                b.dets = d
                put(q_det, b)
        put(q_det, _END)

    def track_and_count():
        while (item := q_det.get()) is not _END:
            if errors:
                continue
            if item.future is not None:  # frames come back in order: each stream waits on its own
                item.dets = item.future.result()
                for stage, ms in detector.stage_ms().items():
                    stages.ms[stage].append(ms)
            t0 = time.perf_counter()
            d = to_supervision(item.dets)
            if tracker is not None:
                d = tracker.update(d)
            t1 = time.perf_counter()
            events = counter.update(item.frame.index, item.frame.time_s, d)
            t2 = time.perf_counter()
            stages.ms["track"].append((t1 - t0) * 1000)
            stages.ms["count"].append((t2 - t1) * 1000)
            n_dets[0] += len(d)
            if d.tracker_id is not None:
                track_ids.update(int(t) for t in d.tracker_id if t >= 0)
            if events_file:
                for ev in events:
                    events_file.write(json.dumps(ev) + "\n")
            if on_frame:
                on_frame(item.frame.index, d)
            item.dets = d
            put(q_trk, item)
        put(q_trk, _END)

    box = sv.BoxAnnotator(thickness=2)
    label = sv.LabelAnnotator(text_scale=0.5, text_padding=3)
    trace = sv.TraceAnnotator(trace_length=30)
    line_ann = sv.LineZoneAnnotator(thickness=2, text_scale=0.6)
    t_start = time.perf_counter()

    def draw():
        while (item := q_trk.get()) is not _END:
            if errors:  # a stage failed: drain without processing
                continue
            if not annotate:
                put(q_ann, item)
                continue
            t0 = time.perf_counter()
            d, img = item.dets, host_image(item.frame.image).copy()
            labels = [
                (f"#{int(t)} " if t is not None and t >= 0 else "") + f"{names.get(int(c), c)} {p:.2f}"
                for c, p, t in zip(
                    d.class_id, d.confidence, d.tracker_id if d.tracker_id is not None else [None] * len(d)
                )
            ]
            img = box.annotate(img, d)
            img = label.annotate(img, d, labels)
            if d.tracker_id is not None and len(d):
                img = trace.annotate(img, d[d.tracker_id >= 0])
            for _, zone in counter.lines:
                img = line_ann.annotate(img, zone)
            for spec, _ in counter.zones:
                img = sv.draw_polygon(img, spec.polygon, sv.Color.YELLOW, thickness=2)
            y = 24
            elapsed = time.perf_counter() - t_start
            fps = (len(stages.ms["annotate"]) + 1) / elapsed if elapsed > 0 else 0.0
            texts = [f"FPS {fps:.1f}"] + [
                f"{c} {n}: in {v['in']} out {v['out']}" for c, per in counter.as_dict().items() for n, v in per.items()
            ]
            for text in texts:
                cv2_put(img, text, y)
                y += 22
            item.image = img
            stages.ms["annotate"].append((time.perf_counter() - t0) * 1000)
            put(q_ann, item)
        put(q_ann, _END)

    def write():
        nonlocal writer, mjpeg
        frames_dir = Path(s.save_frames) if s.save_frames else None
        if frames_dir:
            frames_dir.mkdir(parents=True, exist_ok=True)
        while (item := q_ann.get()) is not _END:
            if errors:
                continue
            if item.image is not None:
                t0 = time.perf_counter()
                if s.output:
                    if writer is None:
                        from .sinks import Mp4Writer

                        h, w = item.image.shape[:2]
                        writer = Mp4Writer(Path(s.output), source.fps, (w, h))
                    writer.write(item.image)
                if frames_dir:
                    import cv2

                    cv2.imwrite(str(frames_dir / f"frame_{item.frame.index:06d}.jpg"), item.image)
                if mjpeg:
                    mjpeg.publish(item.image)
                stages.ms["encode"].append((time.perf_counter() - t0) * 1000)
            latencies.append((time.perf_counter() - item.t0) * 1000)
            if progress:
                progress()

    if s.serve_mjpeg is not None:
        from .sinks import MjpegServer

        mjpeg = MjpegServer(s.serve_mjpeg)
    threads = [
        threading.Thread(target=guard(f), name=f.__name__, daemon=True)
        for f in (decode, detect, track_and_count, draw, write)
    ]
    for t in threads:
        t.start()
    join_all(threads, stop)
    wall = time.perf_counter() - t_start
    if writer is not None:
        writer.close()
    if events_file:
        events_file.close()
    if mjpeg:
        mjpeg.close()
    source.close()
    frames = len(latencies)
    summary = {
        "source": source.description,
        "frames": frames,
        "source_frames": source.frame_count,
        "dropped_frames": dropped[0],
        "detections": n_dets[0],
        "tracks": len(track_ids),
        "counts": counter.as_dict(),
        "fps": frames / wall if wall > 0 else 0.0,
        "latency_ms": {
            "mean": float(np.mean(latencies)) if latencies else 0.0,
            "p95": float(np.percentile(latencies, 95)) if latencies else 0.0,
        },
        "stages": stages.table(),
        "wall_s": wall,
        "interrupted": stop.is_set() and not errors,
        "source_error": str(source_errors[0]) if source_errors else None,
        "output": {
            "video": s.output,
            "video_frames": writer.frames if writer else 0,
            "video_backend": writer.backend if writer else None,
            "frames_dir": s.save_frames,
            "events": s.events,
            "mjpeg_port": mjpeg.port if mjpeg else None,
        },
        "error": None,
    }
    if errors or source_errors:
        e = (errors or source_errors)[0]
        summary["error"] = str(e)
        if not isinstance(e, YoloAccelError):
            raise e
    return summary


def join_all(threads: list[threading.Thread], stop: threading.Event) -> None:
    """Wait for the threads; Ctrl-C sets `stop` (stop reading, let the stages drain, finish the files)."""
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.2)  # short joins keep the main thread responsive to SIGINT
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join()


def stream_path(path: str | None, i: int, n: int) -> str | None:
    """Per-stream output names when several streams run: out.mp4 -> out-0.mp4, out-1.mp4, ..."""
    if path is None or n == 1:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{i}{p.suffix}"))


def run_streams(
    sources: list[FrameSource],
    detector,
    s: VideoSettings,
    max_batch: int,
    max_wait_ms: float,
    progress=None,
    stop: threading.Event | None = None,
) -> dict:
    """Several streams at once: one pipeline each (own tracker, counts and outputs), one shared batcher.

    The batcher gathers frames from every stream into GPU batches (`max_batch`, `max_wait_ms`).
    Returns the aggregate (frames, FPS over the wall time) and each stream's summary.
    """
    import dataclasses

    from ..batching import BatchingDetector

    n = len(sources)
    stop = stop or threading.Event()
    results: list[dict | None] = [None] * n
    failures: list[BaseException] = []

    with BatchingDetector(detector, max_batch=max_batch, max_wait_ms=max_wait_ms) as batcher:

        def one(i: int) -> None:
            si = dataclasses.replace(
                s,
                output=stream_path(s.output, i, n),
                events=stream_path(s.events, i, n),
                save_frames=str(Path(s.save_frames) / f"stream{i}") if (s.save_frames and n > 1) else s.save_frames,
            )
            try:
                results[i] = run_video(sources[i], batcher, si, progress=progress, stop=stop)
            except BaseException as e:
                failures.append(e)
                stop.set()

        t0 = time.perf_counter()
        threads = [threading.Thread(target=one, args=(i,), name=f"stream{i}", daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        join_all(threads, stop)
        wall = time.perf_counter() - t0
        stats = batcher.stats.to_dict()
    if failures:
        raise failures[0]
    frames = sum(r["frames"] for r in results if r)
    return {
        "streams": results,
        "frames": frames,
        "fps": frames / wall if wall > 0 else 0.0,
        "wall_s": wall,
        "batcher": {**stats, "max_batch": max_batch, "max_wait_ms": max_wait_ms},
        "error": next((r["error"] for r in results if r and r["error"]), None),
        "interrupted": any(r["interrupted"] for r in results if r),
    }


def cv2_put(img: np.ndarray, text: str, y: int) -> None:
    import cv2

    cv2.putText(img, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
