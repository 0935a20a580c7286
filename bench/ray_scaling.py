"""Scaling on Ray across the GPUs of one machine (BENCHMARKS.md, "Scaling out on Ray").

Usage (on the GPU machine, after `source bench/device_env.sh` and the Ray wheels):
    python bench/ray_scaling.py CLIP IMAGES OUT [--streams 16] [--frames 3000] [--copies 20]

- video: STREAMS copies of CLIP (1080p H.264, made by bench/make_clips.py) through `yolo-accel video --ray local`
  with --engines 1 and then 2 (one engine per GPU; YOLOv5n 640 FP16, CUDA graph, channels_last, NVDEC,
  ByteTrack, one counting line, events written), each stream looping for FRAMES frames; FPS in total.
- folder: IMAGES copied COPIES times into one folder, `yolo-accel predict --ray local --save-parquet` with
  --engines 1 and 2 (batch 32, FP16); images per second, Ray Data start-up included.
- kill: the 2-engine video job again, with one engine killed once a quarter of the frames are done: the
  job must finish with every stream's frames counted once and no event twice.
Writes OUT/ray_scaling.json and prints one line per row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

MODEL = os.environ.get("YOLO_ACCEL_ASSETS", ".device/assets") + "/models/yolov5n.pt"
LINE = "0,675,1920,675"
SPEED = ["--half", "--cuda-graph", "--channels-last"]


def cli(args: list[str], timeout: int = 400) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "yolo_accel", *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr)[-3000:], time.perf_counter() - t0


def video(clip: str, n: int, frames: int, engines: int, out: Path) -> dict:
    summary = out / f"video-{engines}gpu.json"
    args = ["video", *([clip] * n), "--model", MODEL, "--device", "cuda", *SPEED, "--nvdec", "--loop"]
    args += ["--max-frames", str(frames), "--line", LINE, "--classes", "car,motorcycle,bus,truck"]
    args += ["--ray", "local", "--engines", str(engines), "--events", f"/tmp/ray-ev{engines}.jsonl"]
    rc, text, wall = cli([*args, "--summary", str(summary), "--force"])
    row = {"case": f"video {n} streams, {engines} GPU", "rc": rc, "command_s": round(wall, 1)}
    if rc == 0:
        s = json.loads(summary.read_text())
        row.update(frames=s["frames"], wall_s=round(s["wall_s"], 2), fps=round(s["fps"], 1))
        row["fps_after_start"] = round(s.get("fps_after_start", 0.0), 1)
        row["per_engine_frames"] = [e["frames"] for e in s["engines"]]
    else:
        row["output"] = text
    return row


def folder(images: Path, copies: int, engines: int, out: Path) -> dict:
    big = Path("/tmp/ray-images")
    if not big.is_dir():
        big.mkdir(parents=True)
        for c in range(copies):
            for p in sorted(images.glob("*.jpg")):
                shutil.copy(p, big / f"{c:03d}_{p.name}")
    n = len(list(big.iterdir()))
    target = Path(f"/tmp/ray-parquet-{engines}")
    args = ["predict", str(big), "--model", MODEL, "--device", "cuda", "--half", "--ray", "local"]
    rc, text, wall = cli([*args, "--engines", str(engines), "--batch", "32", "--save-parquet", str(target), "--force"])
    row = {"case": f"folder {n} images, {engines} GPU", "rc": rc, "command_s": round(wall, 1), "output": text[-600:]}
    return row


def kill(clip: str, n: int, frames: int, out: Path) -> dict:
    from yolo_accel.scale.cluster import connect
    from yolo_accel.scale.video import RayVideoJob
    from yolo_accel.video.engine import EngineSettings
    from yolo_accel.video.processor import StreamSettings

    ray = connect("local")
    kwargs = {"model": MODEL, "device": "cuda", "half": True, "rect": False, "classes": "car,motorcycle,bus,truck"}
    from yolo_accel.backends.pytorch import TorchOptions

    kwargs["torch_options"] = TorchOptions(channels_last=True, cuda_graph=True)
    events = [f"/tmp/ray-kill-{i}.jsonl" for i in range(n)]
    job = RayVideoJob(
        ray,
        [clip] * n,
        kwargs,
        StreamSettings(lines=[LINE]),
        EngineSettings(batch=8),
        events,
        engines=2,
        gpu=True,
        max_frames=frames,
        nvdec=True,
        loop=True,
    )
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(job.run()))
    t.start()
    while sum(st.frames for st in job.streams) < n * frames // 4:
        time.sleep(0.05)
    killed_at = sum(st.frames for st in job.streams)
    ray.kill(job.actors[0])
    t.join()
    if "streams" not in result:
        return {"case": "kill", "error": "the job failed (see the output)"}
    rows = []
    dup = 0
    for p in events:
        evs = [json.loads(x) for x in Path(p).read_text().splitlines() if x.strip()]
        keys = [(e["frame"], e["track_id"], e["counter"], e["direction"]) for e in evs]
        dup += len(keys) - len(set(keys))
        rows.append(len(evs))
    ray.shutdown()
    (out / "kill.json").write_text(json.dumps(result, indent=1))
    return {
        "case": f"kill one of 2 engines, {n} streams",
        "killed_after_frames": killed_at,
        "restarts": result["restarts"],
        "frames": result["frames"],
        "expected_frames": n * frames,
        "every_stream_complete": all(s["frames"] == frames for s in result["streams"]),
        "duplicate_events": dup,
        "events": sum(rows),
        "wall_s": round(result["wall_s"], 2),
        "fps": round(result["fps"], 1),
        "engines": result["engines"],
        "stream_errors": [s["error"] for s in result["streams"] if s["error"]][:3],
        "stream_frames": [s["frames"] for s in result["streams"]],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip")
    ap.add_argument("images", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--copies", type=int, default=20)
    ap.add_argument("--cases", default="video,folder,kill")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rows = []

    def keep(row):
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "output"}), flush=True)
        (a.out / "ray_scaling.json").write_text(json.dumps(rows, indent=1))

    cases = a.cases.split(",")
    if "video" in cases:
        for engines in (1, 2):
            keep(video(a.clip, a.streams, a.frames, engines, a.out))
    if "folder" in cases:
        for engines in (1, 2):
            keep(folder(a.images, a.copies, engines, a.out))
    if "kill" in cases:
        keep(kill(a.clip, a.streams, a.frames, a.out))


if __name__ == "__main__":
    main()
