"""Plot the memory curve a `yolo-accel video --summary` recorded (host memory of the engine and its
workers, GPU memory, GPU and decoder utilisation), with the warm-up the drift figures leave out.

Usage: python bench/plot_memory.py SUMMARY.json OUT.png [--title TEXT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summary", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--title", default=None)
    a = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = json.loads(a.summary.read_text())
    m = s["memory"]
    rows = m["samples"]
    t = [r[0] for r in rows]
    host = [r[1] + r[2] for r in rows]
    gpu = [r[3] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    ax.plot(t, host, label=f"host RSS, engine + workers (drift {m['rss_drift_pct']} %)", color="tab:blue")
    if any(g is not None for g in gpu):
        ax.plot(t, gpu, label=f"GPU memory (drift {m['gpu_drift_pct']} %)", color="tab:green")
    if m.get("warmup_s"):
        ax.axvspan(0, m["warmup_s"], color="0.9", label="warm-up (not in the drift)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(a.title or f"{s['frames']} frames, {s['fps']:.0f} FPS, {s['wall_s']:.0f} s", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"written: {a.out}")


if __name__ == "__main__":
    main()
