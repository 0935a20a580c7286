"""The decoder's ceiling: NVDEC decode alone, the way the video engine's sources decode, no detector.

Usage (GPU machine): python bench/nvdec_ceiling.py CLIP [--streams 1,16] [--seconds 10] [--json OUT]
Each stream is yolo-accel's own NvdecSource (PyNvVideoCodec ThreadedDecoder, frames as BGR tensors
on the GPU), read in its own thread and looped for the given time; prints frames per second per
stream count. The video engine cannot beat this number: it is the target of the engine's rows.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path


def decode_fps(clip: Path, streams: int, seconds: float) -> dict:
    import torch

    from yolo_accel.video.sources import open_source

    counts = [0] * streams
    stop = threading.Event()

    def run(i: int) -> None:
        src = open_source(str(clip), nvdec_device="cuda", loop=True)
        for _ in src:
            counts[i] += 1
            if stop.is_set():
                break
        src.close()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(2.0)  # decoders created and running: count from here
    base, t1 = sum(counts), time.perf_counter()
    time.sleep(seconds)
    total, t2 = sum(counts), time.perf_counter()
    stop.set()
    for t in threads:
        t.join(timeout=10)
    torch.cuda.synchronize()
    fps = (total - base) / (t2 - t1)
    return {
        "clip": clip.name,
        "streams": streams,
        "fps_total": round(fps, 1),
        "fps_per_stream": round(fps / streams, 1),
        "startup_s": round(t1 - t0, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", type=Path)
    ap.add_argument("--streams", default="1,16")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    rows = [decode_fps(a.clip, int(n), a.seconds) for n in a.streams.split(",")]
    for r in rows:
        print(
            f"NVDEC {r['clip']}: {r['streams']} stream(s) {r['fps_total']:.0f} FPS in total "
            f"({r['fps_per_stream']:.0f} per stream)"
        )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
