"""BENCHMARKS.md, "Plate reading": accuracy on the synthetic set and on the shared real plates, time per
read, and video FPS with and without --ocr.

    python bench/plates.py OUT.json [--device cpu|cuda] [--n 200] [--frames 751] [--video-only]

1. Builds the synthetic set (`yolo_accel.plates.synthetic.make_set`, seed 0) and reads each image
   (the image is the vehicle crop): exact-plate and character accuracy by plate width, ms per read.
2. The 60 real US plates of the shared assets: YOLOv5n finds the vehicle holding the labelled plate,
   its crop is read.
3. `yolo-accel video` on the shared traffic clip (vehicles, one counting line) with and without
   --ocr, each in its own process: FPS, and the reads made.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ASSETS = Path(os.environ.get("YOLO_ACCEL_ASSETS", Path(__file__).resolve().parents[2] / "shared" / "assets"))


def video_run(device: str, frames: int, ocr: bool, half: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "s.json"
        cmd = [sys.executable, "-m", "yolo_accel", "video", str(ASSETS / "videos" / "highway_traffic_720p.mp4")]
        cmd += [
            "-m",
            str(ASSETS / "models" / "yolov5n.pt"),
            "--device",
            device,
            "--classes",
            "car,motorcycle,bus,truck",
        ]
        cmd += ["--line", "0,450,1280,450", "--max-frames", str(frames), "--summary", str(summary)]
        cmd += ["--loop"] if frames > 751 else []  # the clip has 751 frames
        cmd += ["--half"] if half else []
        cmd += ["--ocr"] if ocr else []
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        s = json.loads(summary.read_text())
    return {"fps": round(s["fps"], 1), "frames": s["frames"], "tracks": s["tracks"], "plates": s.get("plates")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--frames", type=int, default=751, help="video frames per run (past 751 the clip loops)")
    ap.add_argument("--video-only", action="store_true", help="only the video runs")
    a = ap.parse_args()
    from yolo_accel.plates.reader import PlateReader

    reader = PlateReader()
    result = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor()}, "device": a.device}
    if not a.video_only:
        accuracy(reader, a, result)
    half = a.device.startswith("cuda")
    result["video_without_ocr"] = video_run(a.device, a.frames, False, half)
    result["video_with_ocr"] = video_run(a.device, a.frames, True, half)
    w, wo = result["video_with_ocr"]["fps"], result["video_without_ocr"]["fps"]
    result["video_fps_change_pct"] = round(100 * (w / wo - 1), 1)
    print("video", wo, "->", w, "FPS with --ocr")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))


def accuracy(reader, a, result: dict) -> None:
    from yolo_accel import Detector
    from yolo_accel.plates.accuracy import evaluate_real, evaluate_synthetic
    from yolo_accel.plates.synthetic import make_set

    with tempfile.TemporaryDirectory() as tmp:
        make_set(Path(tmp), ASSETS / "datasets" / "coco128", n=a.n, seed=0)
        result["synthetic"], rows = evaluate_synthetic(reader, Path(tmp))
    print("synthetic", json.dumps(result["synthetic"]["all"]))
    with Detector(ASSETS / "models" / "yolov5n.pt", device=a.device, classes="car,motorcycle,bus,truck") as det:
        result["real"], rows = evaluate_real(reader, det, ASSETS / "plates" / "us")
    result["real_misreads"] = [(r["truth"], r["read"]) for r in rows if r["read"] != r["truth"]]
    print("real", json.dumps(result["real"]["all"]))


if __name__ == "__main__":
    main()
