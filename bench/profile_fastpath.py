"""Where the time goes in the GPU pipeline: torch.profiler over end-to-end calls from a 1080p host frame.

Usage: python bench/profile_fastpath.py MODEL.pt OUT.txt [--variant torch-fp16-graph] [--batch 1]
Writes the stage timings (median of 200 calls) and the profiler's top operators by CPU and CUDA time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--variant", default="torch-fp16-graph")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--calls", type=int, default=200)
    a = ap.parse_args()

    import cv2
    import torch
    from torch.profiler import ProfilerActivity, profile

    from yolo_accel import Detector
    from yolo_accel.assets import sample_images
    from yolo_accel.backends.variants import parse_variant

    v = parse_variant(a.variant)
    frame = cv2.resize(cv2.imread(str(sample_images()[0])), (1920, 1080))
    frames = [frame] * a.batch
    det = Detector(a.model, backend=v.backend, device="cuda", half=v.half, rect=False, torch_options=v.torch_options())
    for _ in range(20):
        det.detect_batch(frames)
    stages: dict[str, list[float]] = {"pre": [], "infer": [], "post": []}
    e2e = []
    for _ in range(a.calls):
        t0 = time.perf_counter()
        _, per = det.detect_batch(frames)
        e2e.append((time.perf_counter() - t0) * 1000)
        for k in stages:
            stages[k].append(per[k] * a.batch)
    lines = [
        f"{a.model} {det.describe()} batch {a.batch}, 1920x1080 uint8 host frame -> Detections",
        f"end-to-end median {statistics.median(e2e):.3f} ms, p95 {sorted(e2e)[int(0.95 * len(e2e))]:.3f} ms",
        *(f"  {k}: median {statistics.median(x):.3f} ms" for k, x in stages.items()),
        "",
    ]
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(50):
            det.detect_batch(frames)
        torch.cuda.synchronize()
    ka = prof.key_averages()
    lines += ["top operators by self CUDA time (50 calls):", ka.table(sort_by="self_cuda_time_total", row_limit=25), ""]
    lines += ["top operators by CPU time (50 calls):", ka.table(sort_by="cpu_time_total", row_limit=25)]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines[:6]))


if __name__ == "__main__":
    sys.exit(main())
