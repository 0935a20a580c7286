"""BENCHMARKS.md, "Tracking cost": milliseconds per frame of each multi-object tracker on the same detections.

The shared traffic clip is detected once (YOLOv5n at 640 on the CPU, every class, at most --max-det
boxes per frame, a low --conf so that most frames hold that many); then every tracker runs alone over the
same per-frame arrays, --repeats times, and its per-frame update is timed with perf_counter_ns.

    python bench/tracker_cost.py OUT.json [--max-det 30 --conf 0.01 --repeats 3]

Trackers: `trackers`' ByteTrack and SORT (what `yolo-accel video` uses) and Ultralytics' BYTETracker
(with `lap`), the other well-kept ByteTrack. Each takes its own input type, built outside the clock.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ASSETS = Path(os.environ.get("YOLO_ACCEL_ASSETS", Path(__file__).resolve().parents[2] / "shared" / "assets"))


def detect(clip: Path, conf: float, max_det: int) -> list[np.ndarray]:
    import cv2

    from yolo_accel import Detector

    out = []
    cap = cv2.VideoCapture(str(clip))
    with Detector(ASSETS / "models" / "yolov5n.pt", imgsz=640, conf=conf, max_det=max_det) as det:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            out.append(det.predict(frame)[0].to_array())
    return out


def time_frames(update, inputs) -> np.ndarray:
    ms = np.empty(len(inputs))
    for i, x in enumerate(inputs):
        t = time.perf_counter_ns()
        update(x)
        ms[i] = (time.perf_counter_ns() - t) / 1e6
    return ms


def trackers_lib(name: str, frames: list[np.ndarray]):
    import supervision as sv
    import trackers

    inputs = [
        sv.Detections(xyxy=a[:, :4].copy(), confidence=a[:, 4].copy(), class_id=a[:, 5].astype(int)) for a in frames
    ]

    def fresh():
        t = trackers.ByteTrackTracker(frame_rate=25) if name == "bytetrack" else trackers.SORTTracker(frame_rate=25)
        return t.update

    return fresh, inputs


def ultralytics_bytetrack(frames: list[np.ndarray]):
    from ultralytics.trackers.byte_tracker import BYTETracker

    # Ultralytics' defaults (ultralytics/cfg/trackers/bytetrack.yaml)
    args = SimpleNamespace(
        track_high_thresh=0.25,
        track_low_thresh=0.1,
        new_track_thresh=0.25,
        track_buffer=30,
        match_thresh=0.8,
        fuse_score=True,
    )

    class Boxes:  # what BYTETracker reads from an Ultralytics Results.boxes
        def __init__(self, a: np.ndarray):
            self.conf, self.cls = a[:, 4], a[:, 5]
            xy = a[:, :4]
            self.xyxy = xy
            self.xywh = np.c_[
                (xy[:, 0] + xy[:, 2]) / 2, (xy[:, 1] + xy[:, 3]) / 2, xy[:, 2] - xy[:, 0], xy[:, 3] - xy[:, 1]
            ]

        def __len__(self):
            return len(self.conf)

        def __getitem__(self, i):
            b = Boxes.__new__(Boxes)
            b.conf, b.cls, b.xyxy, b.xywh = self.conf[i], self.cls[i], self.xyxy[i], self.xywh[i]
            return b

    inputs = [Boxes(a) for a in frames]

    def fresh():
        return BYTETracker(args).update

    return fresh, inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--clip", type=Path, default=ASSETS / "videos" / "highway_traffic_720p.mp4")
    ap.add_argument("--conf", type=float, default=0.01)
    ap.add_argument("--max-det", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    frames = detect(a.clip, a.conf, a.max_det)
    counts = np.array([len(f) for f in frames])
    rows = {}
    for name, make in (
        ("trackers ByteTrack", lambda: trackers_lib("bytetrack", frames)),
        ("trackers SORT", lambda: trackers_lib("sort", frames)),
        ("ultralytics BYTETracker", lambda: ultralytics_bytetrack(frames)),
    ):
        fresh, inputs = make()
        runs = [time_frames(fresh(), inputs) for _ in range(a.repeats)]
        ms = np.concatenate(runs)
        full = np.concatenate([r[counts == a.max_det] for r in runs])
        rows[name] = {
            "mean_ms": float(ms.mean()),
            "p95_ms": float(np.percentile(ms, 95)),
            f"mean_ms_at_{a.max_det}": float(full.mean()) if len(full) else None,
        }
        print(
            f"{name:24s} mean {ms.mean():.3f} ms  p95 {np.percentile(ms, 95):.3f} ms"
            f"  at {a.max_det} objects: {full.mean():.3f} ms"
        )
    import platform

    result = {
        "clip": a.clip.name,
        "frames": len(frames),
        "objects_mean": float(counts.mean()),
        f"frames_at_{a.max_det}": int((counts == a.max_det).sum()),
        "settings": {"conf": a.conf, "max_det": a.max_det, "repeats": a.repeats},
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "rows": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
