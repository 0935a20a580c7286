"""Where the video engine's detect loop spends its time: torch.profiler over a window of batches.

Usage (GPU machine): python bench/profile_engine.py CLIP OUT.txt [--streams 16] [--batch 8] [--seconds 15]
The engine runs CLIP as N looping NVDEC streams (YOLOv5n FP16, CUDA graph, channels_last, ByteTrack,
one line); batches 30 to 60 are profiled (host and device time per operator, both sorted tables in
OUT.txt), and the engine's summary line (FPS, busy shares, utilisation) is appended.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("out", type=Path)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--model", default=".device/assets/models/yolov5n.pt")
    a = ap.parse_args()

    import torch
    from engine_detector import published_detector
    from torch.profiler import ProfilerActivity, profile

    from yolo_accel.video.engine import EngineSettings, VideoEngine
    from yolo_accel.video.processor import StreamSettings
    from yolo_accel.video.sources import open_source

    det = published_detector(a.model)
    sources = [open_source(a.clip, nvdec_device="cuda", loop=True) for _ in range(a.streams)]
    settings = [StreamSettings(lines=["0,675,1920,675"]) for _ in range(a.streams)]
    engine = VideoEngine(det, sources, settings, EngineSettings(batch=a.batch, duration_s=a.seconds))
    real = engine._launch
    state = {"n": 0, "prof": None}

    def profiled(batch):  # the launching thread opens and closes the profiler around batches 30-60
        state["n"] += 1
        if state["n"] == 30:
            state["prof"] = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
            state["prof"].__enter__()
        job = real(batch)
        if state["n"] == 60 and state["prof"] is not None:
            torch.cuda.synchronize()
            state["prof"].__exit__(None, None, None)
        return job

    engine._launch = profiled
    result = engine.run()
    prof = state["prof"]
    with a.out.open("w") as f:
        if prof is not None:
            ka = prof.key_averages()
            f.write("== by device time (batches 30-60)\n")
            f.write(ka.table(sort_by="cuda_time_total", row_limit=30))
            f.write("\n== by host time\n")
            f.write(ka.table(sort_by="cpu_time_total", row_limit=40))
        keys = ("fps", "frames", "wall_s", "busy", "batcher")
        f.write("\n== engine\n" + json.dumps({k: result[k] for k in keys}, indent=1) + "\n")
        f.write(json.dumps({k: result["memory"].get(k) for k in ("gpu_util_mean_pct", "decoder_util_mean_pct")}))
        f.write("\n" + json.dumps(result["streams"][0]["stages"], indent=1) + "\n")
    print(a.out.read_text()[-3000:])


if __name__ == "__main__":
    main()
