"""Compact Markdown tables for BENCHMARKS.md from bench.json files.

Usage: python bench/summarize.py bench/results/h100-yolov5n.json [...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(report: dict) -> str:
    rows = [r for r in report["rows"]]
    batches = sorted({r["batch"] for r in rows})
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    get = {(r["backend"], r["batch"]): r for r in rows}
    head = ["backend"] + [f"b{b} ms (speedup)" for b in batches] + ["best img/s (batch)", "b1 end-to-end ms"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in backends:
        cells = [k]
        best = (0.0, 0)
        for b in batches:
            r = get.get((k, b))
            if not r or not r.get("ok"):
                cells.append(f"failed: {r.get('error', '?') if r else 'not run'}")
                continue
            sp = f" ({r['speedup']:.2f}x)" if "speedup" in r else ""
            cells.append(f"{r['model_ms']['median']:.2f}{sp}")
            best = max(best, (r["throughput_ips"], b))
        cells.append(f"{best[0]:,.0f} (b{best[1]})")
        r1 = get.get((k, 1))
        cells.append(f"{r1['e2e_ms']['median']:.2f}" if r1 and r1.get("ok") else "-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(paths: list[str]) -> None:
    for p in paths:
        report = json.loads(Path(p).read_text())
        env = report["environment"]
        w, h = next((r["frame_size"] for r in report["rows"] if r.get("frame_size")), (810, 1080))
        gpu_ops = any(r.get("gpu_ops") for r in report["rows"])
        print(f"### {report['model']['name']} ({Path(p).name}, {report['date']})\n")
        print(
            f"{env.get('gpu', env.get('cpu'))}; baseline `{report['baseline']}`; model-only median latency per "
            "batch (speedup over the baseline at the same batch), best model-only throughput, and end-to-end "
            f"latency at batch 1 ({w}x{h} uint8 frame in host memory -> Detections"
            f"{'; GPU pre/post where the backend takes device tensors' if gpu_ops else ''}).\n"
        )
        print(table(report) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
