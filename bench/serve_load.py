"""BENCHMARKS.md, "serve under load": two looping streams, then the same with 8 viewers of one stream's
live video and 50 API clients, on loopback.

    python bench/serve_load.py OUT.json [--imgsz 416] [--baseline-s 30] [--load-s 60] [--viewers 8] [--clients 50]
                                        [--think-s 0] [--device cpu|cuda]

Starts `yolo-accel serve` (the shared YOLOv5n on the CPU) in a child process with the shared clip in
its data folder, adds two looping streams with a counting line, measures their FPS for
--baseline-s, then for --load-s with the viewers reading /api/streams/1/video.mjpg and the clients
each asking for /api/streams and /api/streams/{id}/events in turn (back to back, or --think-s apart:
a dashboard polling each second is --think-s 1); every request's latency and status is recorded.
Reports failed requests, API latency p50/p95/p99, each stream's FPS with and without the load, and
the CPU the load generator (this process) and the server (without its streams) used meanwhile.
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
import numpy as np
import psutil

ASSETS = Path(os.environ.get("YOLO_ACCEL_ASSETS", Path(__file__).resolve().parents[2] / "shared" / "assets"))
LINE = "0,450,1280,450"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frames(client: httpx.Client) -> dict[int, int]:
    return {s["id"]: s["frames"] for s in client.get("/api/streams").json()}


def fps_over(client: httpx.Client, seconds: float) -> dict[int, float]:
    a, t0 = frames(client), time.perf_counter()
    time.sleep(seconds)
    b, t1 = frames(client), time.perf_counter()
    return {k: (b[k] - a[k]) / (t1 - t0) for k in a}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--baseline-s", type=float, default=30)
    ap.add_argument("--load-s", type=float, default=60)
    ap.add_argument("--viewers", type=int, default=8)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--think-s", type=float, default=0.0, help="pause between one client's requests")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (then FP16)")
    a = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="serve-load-"))
    (data / "uploads").mkdir()
    shutil.copy(ASSETS / "videos" / "highway_traffic_720p.mp4", data / "uploads" / "traffic.mp4")
    port = free_port()
    cmd = [sys.executable, "-m", "yolo_accel", "serve", "-m", str(ASSETS / "models" / "yolov5n.pt")]
    cmd += ["--imgsz", str(a.imgsz), "--port", str(port), "--data-dir", str(data), "--device", a.device]
    cmd += ["--half"] if a.device.startswith("cuda") else []
    log = open(data / "server.log", "w+b")  # noqa: SIM115 (a file, not a pipe: a full pipe would stall the server)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if proc.poll() is not None:
                    raise SystemExit(f"the server exited: {(data / 'server.log').read_text()[-2000:]}") from None
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        with httpx.Client(base_url=base, timeout=30) as c:
            for _ in range(2):
                body = {"source": "uploads/traffic.mp4", "classes": "car,motorcycle,bus,truck", "lines": [LINE]}
                assert c.post("/api/streams", json={**body, "loop": True}).status_code == 201
            while any(s["status"] != "running" for s in c.get("/api/streams").json()):
                time.sleep(0.5)
            time.sleep(5)  # past the first frames
            baseline = fps_over(c, a.baseline_s)
            print(f"baseline FPS per stream: {baseline}")

            stop = threading.Event()
            latencies: list[float] = []
            failures: list[str] = []
            viewer_bytes = [0] * a.viewers
            lock = threading.Lock()

            def viewer(i: int) -> None:
                with httpx.Client(base_url=base, timeout=30) as v:
                    while not stop.is_set():
                        try:
                            with v.stream("GET", "/api/streams/1/video.mjpg") as r:
                                if r.status_code != 200:
                                    with lock:
                                        failures.append(f"viewer {r.status_code}")
                                    time.sleep(0.5)
                                    continue
                                for chunk in r.iter_bytes():
                                    viewer_bytes[i] += len(chunk)
                                    if stop.is_set():
                                        return
                        except httpx.HTTPError as e:
                            with lock:
                                failures.append(f"viewer {type(e).__name__}")

            def client(i: int) -> None:
                paths = ["/api/streams", f"/api/streams/{1 + i % 2}/events?limit=100"]
                k = 0
                with httpx.Client(base_url=base, timeout=30) as h:
                    while not stop.is_set():
                        t0 = time.perf_counter()
                        try:
                            r = h.get(paths[k % 2])
                            ok = r.status_code == 200
                        except httpx.HTTPError as e:
                            ok, r = False, type(e).__name__
                        dt = (time.perf_counter() - t0) * 1000
                        with lock:
                            latencies.append(dt)
                            if not ok:
                                failures.append(f"api {getattr(r, 'status_code', r)}")
                        k += 1
                        if a.think_s:
                            stop.wait(a.think_s)

            threads = [threading.Thread(target=viewer, args=(i,), daemon=True) for i in range(a.viewers)]
            threads += [threading.Thread(target=client, args=(i,), daemon=True) for i in range(a.clients)]
            me, server = psutil.Process(), psutil.Process(proc.pid)
            cpu0 = (sum(me.cpu_times()[:2]), sum(server.cpu_times()[:2]))
            for t in threads:
                t.start()
            loaded = fps_over(c, a.load_s)
            cpu1 = (sum(me.cpu_times()[:2]), sum(server.cpu_times()[:2]))
            stop.set()
            for t in threads:
                t.join(timeout=30)
        lat = np.asarray(latencies)
        result = {
            "machine": {"cpus": os.cpu_count(), "device": a.device},
            "settings": vars(a) | {"out": str(a.out)},
            "fps_baseline": baseline,
            "fps_loaded": loaded,
            "fps_change_pct": {k: round(100 * (loaded[k] / baseline[k] - 1), 1) for k in baseline},
            "api_requests": int(lat.size),
            "api_ms": {
                "p50": float(np.percentile(lat, 50)),
                "p95": float(np.percentile(lat, 95)),
                "p99": float(np.percentile(lat, 99)),
            },
            "cpu_cores_during_load": {  # of the 2: what the load itself costs beside the streams
                "load_generator": round((cpu1[0] - cpu0[0]) / a.load_s, 2),
                "server_without_streams": round((cpu1[1] - cpu0[1]) / a.load_s, 2),
            },
            "failed_requests": len(failures),
            "failures_sample": failures[:10],
            "viewer_mb": [round(b / 2**20, 1) for b in viewer_bytes],
        }
        print(json.dumps(result, indent=1))
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=1))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
