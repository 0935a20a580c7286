"""The video engine with a fixed list of streams against the same engine as a service (streams added
while it runs), on the same detector and streams: total FPS of each, and the service's cost.

Usage (GPU machine, after `source bench/device_env.sh`):
    python3 bench/service_engine.py CLIP --streams 16 --frames 600 --json OUT.json
Both runs: YOLOv5n 640 FP16 + CUDA graph + channels_last, NVDEC, ByteTrack, one counting line, events
written; the detector is warmed up at every batch size first, so neither run pays for graph capture.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("--model", default=".device/assets/models/yolov5n.pt")
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--line", default="0,450,1280,450")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import numpy as np
    import torch
    from engine_detector import published_detector

    from yolo_accel.video.engine import EngineSettings, VideoEngine
    from yolo_accel.video.processor import StreamSettings
    from yolo_accel.video.sources import open_source

    out = Path("/tmp/service-bench")
    out.mkdir(exist_ok=True)
    det = published_detector(args.model)
    first = open_source(args.clip, nvdec_device="cuda", max_frames=1)
    w, h = first.size
    first.close()
    frame = torch.zeros((h, w, 3), dtype=torch.uint8, device="cuda")
    n = 1
    while n <= args.batch * args.streams:  # every batch size either run may use: graphs captured before the clocks
        det.detect_batch([frame] * n)
        n += 1
    es = EngineSettings(batch=args.batch)

    def sources():
        return [
            open_source(args.clip, nvdec_device="cuda", max_frames=args.frames, loop=True) for _ in range(args.streams)
        ]

    def settings(tag: str):
        return [StreamSettings(lines=[args.line], events=str(out / f"{tag}{i}.jsonl")) for i in range(args.streams)]

    rows = {}
    t0 = time.perf_counter()
    fixed = VideoEngine(det, sources(), settings("fixed"), es).run()
    rows["fixed"] = {
        "fps": fixed["fps"],
        "wall_s": time.perf_counter() - t0,
        "mean_batch": fixed["batcher"]["mean_batch"],
    }

    engine = VideoEngine(det, [], [], es, service=True)
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(engine.run()))
    runner.start()
    srcs, sets = sources(), settings("service")
    engine._running.wait()  # its workers are up: what follows is the streams' time only
    t0 = time.perf_counter()
    add_ms = []
    sids = []
    for s, st in zip(srcs, sets, strict=True):
        t = time.perf_counter()
        sids.append(engine.add_stream(s, st))
        add_ms.append((time.perf_counter() - t) * 1000)
    # steady state: from the moment every stream runs until the first one ends
    t1, done1 = time.perf_counter(), sum(engine.last_done.get(sid, -1) + 1 for sid in sids)
    while not any(engine.streams[sid].done.is_set() for sid in sids):
        time.sleep(0.005)
    t2, done2 = time.perf_counter(), sum(engine.last_done.get(sid, -1) + 1 for sid in sids)
    summaries = [engine.wait_stream(sid) for sid in sids]
    wall = time.perf_counter() - t0
    engine.stop("done")
    runner.join()
    frames = sum(s["frames"] for s in summaries)
    rows["service"] = {
        "fps": frames / wall,
        "steady_fps": (done2 - done1) / (t2 - t1),
        "wall_s": wall,
        "mean_batch": result["batcher"]["mean_batch"],
        "add_stream_ms": {"mean": round(sum(add_ms) / len(add_ms), 1), "max": round(max(add_ms), 1)},
    }
    same = all(
        (out / f"fixed{i}.jsonl").read_text() == (out / f"service{i}.jsonl").read_text() for i in range(args.streams)
    )
    report = {
        "gpu": torch.cuda.get_device_name(),
        "clip": args.clip,
        "streams": args.streams,
        "frames_per_stream": args.frames,
        "rows": rows,
        "service_over_fixed": round(rows["service"]["fps"] / rows["fixed"]["fps"], 3),
        "events_equal": same,
        "frames": {"fixed": int(np.sum([s["frames"] for s in fixed["streams"]])), "service": frames},
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
