"""`serve` against `video` on the same looping streams, one after the other on the same machine: total
FPS and GPU memory with N streams, and with one.

    python bench/serve_engine.py CLIP --streams 16 --seconds 30 --json OUT.json                 (GPU)
    python bench/serve_engine.py CLIP --streams 4 --device cpu --imgsz 416 --json OUT.json      (CPU)

On CUDA both run YOLOv5n FP16 with CUDA graphs and NVDEC (`--half --cuda-graph`, `video --nvdec`,
`serve --nvdec on`); on the CPU plain. Both track (ByteTrack), count on one line and write events.
`video`: `yolo-accel video CLIP x N --loop --duration S` (its FPS over the run, which starts after its
warm-up). `serve`: `yolo-accel serve` in a child process with CLIP in its data folder, N looping streams
added through the API; its FPS is the growth of the streams' frame counts (GET /api/streams) over S
seconds, measured after --warmup-s (the engine captures its CUDA graphs when it starts).
GPU memory: the GPU's used memory (nvidia-smi; only these processes use the GPU), peak over each run,
and each process's memory at that peak (`gpu_mib_per_process`).

    python bench/serve_engine.py CLIP --realtime 64 --seconds 20 --json OUT.json

only `serve`, with 64 streams of CLIP delivered at its own frame rate (`"realtime": true`, as cameras
would): each stream's FPS over the window (held at the clip's rate or not), and the latency from a
crossing's frame being decoded (`seen_at` in the stream's events file) to the crossing being stored
in the database (its `created_at`), p50 and p95.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

LINE = "0,450,1280,450"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GpuMemory:
    """Peak used GPU memory (MiB) while running, sampled twice a second, and each process's share then."""

    def __init__(self, on: bool):
        self.on, self.peak, self.processes, self._stop = on, 0, [], threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _query(*args: str) -> str:
        cmd = ["nvidia-smi", *args, "--format=csv,noheader,nounits", "-i", "0"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout

    def _run(self):
        while not self._stop.wait(0.5):
            try:
                used = int(self._query("--query-gpu=memory.used").split()[0])
                if used > self.peak:
                    self.peak = used
                    apps = self._query("--query-compute-apps=pid,used_memory").strip().splitlines()
                    self.processes = sorted((int(a.split(",")[1]) for a in apps if "," in a), reverse=True)
            except Exception:
                pass

    def __enter__(self):
        if self.on:
            self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def stored_latency(client: httpx.Client, data: Path, ids: list[int]) -> dict | None:
    """p50 / p95 ms from a crossing's frame decoded to the crossing in the database, over every stream."""
    ms = []
    for sid in ids:
        seen = {}
        path = data / "events" / f"stream{sid}.jsonl"
        for line in path.read_text().splitlines() if path.is_file() else []:
            e = json.loads(line)
            if "seen_at" in e:
                seen[(e["frame"], e["track_id"], e["counter"])] = e["seen_at"]
        for e in client.get(f"/api/streams/{sid}/events", params={"limit": 100000}).json():
            t = seen.get((e["frame"], e["track_id"], e["counter"]))
            if t is not None:
                ms.append(1000 * (e["created_at"] - t))
    if not ms:
        return None
    ms.sort()
    return {"events": len(ms), "p50": round(ms[len(ms) // 2], 1), "p95": round(ms[int(0.95 * (len(ms) - 1))], 1)}


def run_video(args, n: int, gpu: bool) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench-video-"))
    cmd = [sys.executable, "-m", "yolo_accel", "video", *([args.clip] * n), "-m", args.model, "--device", args.device]
    cmd += ["--loop", "--duration", str(args.seconds), "--line", LINE, "--events", str(out / "e.jsonl")]
    cmd += ["--summary", str(out / "s.json"), "--force"]
    if args.imgsz:
        cmd += ["--imgsz", str(args.imgsz)]
    if gpu:
        cmd += ["--half", "--nvdec", *([] if args.no_cuda_graph else ["--cuda-graph"])]
    with GpuMemory(gpu) as mem:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = json.loads((out / "s.json").read_text())
    table = summary.get("stages") or (summary.get("streams") or [{}])[0].get("stages", [])  # one stream's
    shutil.rmtree(out, ignore_errors=True)
    return {
        "fps": round(summary["fps"], 1),
        "gpu_mib": mem.peak or None,
        "gpu_mib_per_process": mem.processes,
        "frames": summary["frames"],
        "engine": {
            "mean_batch": summary["batcher"]["mean_batch"],
            **summary["busy"],
            "stages_ms": {r["stage"]: round(r["mean_ms"], 2) for r in table},
        },
    }


def run_serve(args, n: int, gpu: bool, realtime: bool = False) -> dict:
    data = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    shutil.copy(args.clip, data / "clip.mp4")
    port = free_port()
    cmd = [sys.executable, "-m", "yolo_accel", "serve", "-m", args.model, "--device", args.device]
    cmd += ["--port", str(port), "--data-dir", str(data)]
    if args.imgsz:
        cmd += ["--imgsz", str(args.imgsz)]
    if gpu:
        cmd += ["--half", "--nvdec", "on", *([] if args.no_cuda_graph else ["--cuda-graph"])]
    cmd += args.serve_args.split()
    log = open(args.serve_log, "ab") if args.serve_log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    try:
        with GpuMemory(gpu) as mem, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            deadline = time.time() + 600
            while True:
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None and time.time() < deadline, "serve did not start"
                time.sleep(0.5)
            for _ in range(n):
                body = {"source": "clip.mp4", "lines": [LINE], "loop": True, "realtime": realtime}
                r = c.post("/api/streams", json=body)
                assert r.status_code == 201, r.text
            time.sleep(args.warmup_s)

            def each() -> list[int]:
                return [s["frames"] for s in c.get("/api/streams").json()]

            e0, t0 = each(), time.perf_counter()
            time.sleep(args.seconds)
            e1, t1 = each(), time.perf_counter()
            f0, f1 = sum(e0), sum(e1)
            per_stream = sorted((b - a) / (t1 - t0) for a, b in zip(e0, e1))
            rows = c.get("/api/streams").json()
            assert all(s["status"] == "running" for s in rows), sorted({(s["status"], s["error"]) for s in rows})
            engine = c.get("/api/engine").json()
            latency = stored_latency(c, data, [s["id"] for s in rows]) if realtime else None
            stages = {}  # mean ms per frame of each stage over the streams
            for row in rows:
                for k, v in row["stages_ms"].items():
                    stages[k] = stages.get(k, 0.0) + v / len(rows)
            engine["stages_ms"] = {k: round(v, 2) for k, v in stages.items()}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
        shutil.rmtree(data, ignore_errors=True)
        if args.serve_log:
            log.close()
    return {
        "fps": round((f1 - f0) / (t1 - t0), 1),
        "gpu_mib": mem.peak or None,
        "gpu_mib_per_process": mem.processes,
        "frames": f1 - f0,
        "stream_fps": {"min": round(per_stream[0], 1), "median": round(per_stream[len(per_stream) // 2], 1)},
        "dropped": sum((s.get("health") or {}).get("dropped", 0) for s in rows),
        "event_latency_ms": latency,
        "engine": engine,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("--model", default=".device/assets/models/yolov5n.pt")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--imgsz", type=int)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup-s", type=float, default=15.0)
    ap.add_argument("--realtime", type=int, help="only serve, with this many streams at the clip's frame rate")
    ap.add_argument("--serve-args", default="", help="more `serve` options, e.g. '--workers 1'")
    ap.add_argument("--no-cuda-graph", action="store_true", help="on CUDA, without --cuda-graph")
    ap.add_argument("--serve-log", type=Path, help="append serve's output (its log) to this file")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    result = {"device": args.device, "clip": args.clip, "imgsz": args.imgsz, "seconds": args.seconds, "rows": {}}
    result["serve_args"] = args.serve_args
    if args.realtime:
        row = run_serve(args, args.realtime, gpu, realtime=True)
        result["rows"][f"serve-realtime-{args.realtime}"] = row
        print(json.dumps(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return
    for n in sorted({args.streams, 1}, reverse=True):
        for name, fn in (("video", run_video), ("serve", run_serve)):
            row = fn(args, n, gpu)
            result["rows"][f"{name}-{n}"] = row
            print(f"{name} x{n}: {row}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(result, indent=1))
        v, s = result["rows"][f"video-{n}"], result["rows"][f"serve-{n}"]
        result[f"serve_over_video_{n}"] = round(s["fps"] / v["fps"], 3)
        if v["gpu_mib"] and s["gpu_mib"]:
            result[f"serve_over_video_memory_{n}"] = round(s["gpu_mib"] / v["gpu_mib"], 3)
    print(json.dumps({k: v for k, v in result.items() if k.startswith("serve_over")}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
