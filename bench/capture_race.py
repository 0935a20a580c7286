"""CUDA graph captures while NVDEC decoders open, rewind and close in the same process (GPU).

    python bench/capture_race.py CLIP --model yolov5n.pt [--warm-first] [--json OUT.json]

The detector (FP16, CUDA graphs) runs every power-of-two batch size up to 128 while another thread
keeps opening a decoder on CLIP, reading a few frames, rewinding it and closing it (as cameras join
and files loop). By default each size is captured on first sight, meanwhile: the captures fail.
`--warm-first` is what the video engine does: every size is captured before the decoders open, then
the graphs are frozen, and the same batches only replay. Prints the batches run, the graphs captured
and the first error, if any. Run each variant in a process of its own (a failed capture can leave
the CUDA context unusable).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("--model", required=True)
    ap.add_argument("--warm-first", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from yolo_accel.backends.pytorch import TorchOptions
    from yolo_accel.detector import Detector
    from yolo_accel.video.sources import NvdecSource

    det = Detector(args.model, device="cuda", half=True, rect=False, torch_options=TorchOptions(cuda_graph=True))
    frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    sizes = (1, 2, 4, 8, 16, 32, 64, 128)
    if args.warm_first:
        for n in sizes:
            det.detect_batch([frame] * n)
        det.backend.freeze_graphs()
    stop, decoded, opened, decode_errors = threading.Event(), [0], [0], []

    def churn() -> None:  # what a serve engine's decoders do as cameras join and files loop
        import torch

        torch.cuda.set_device(0)  # as serve's engine opens its decoders: in the detector's CUDA context
        try:
            while not stop.is_set():
                src = NvdecSource(Path(args.clip), batch=4)
                for _ in range(2):
                    for i, _ in enumerate(src):
                        decoded[0] += 1
                        if i == 3:
                            break
                    src.rewind()
                src.close()
                opened[0] += 1
        except Exception as e:
            decode_errors.append(repr(e))

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    time.sleep(1.0)
    batches, error, t0 = 0, None, time.perf_counter()
    try:
        for _ in range(3):
            for n in sizes:
                det.detect_batch([frame] * n)
                batches += 1
    except Exception as e:
        error = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    stop.set()
    t.join(timeout=30)
    graphs = det.backend._graphs
    out = {
        "warm_first": args.warm_first,
        "batches": batches,
        "of": 3 * len(sizes),
        "graphs": len(graphs.shapes) if graphs is not None else 0,
        "error": error,
        "frames_decoded": decoded[0],
        "decoders_opened": opened[0],
        "decode_errors": decode_errors[:1],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
