"""A live camera through `serve`: a real RTSP server (GStreamer's, on loopback, started here) that dies
for ten seconds mid-stream and comes back. The app reconnects by itself, says so in the stream's
health (the API and /metrics), and a file stream running beside it on the same engine is not
disturbed.

Skipped where GStreamer's RTSP server is missing (`.ci/run` installs it with apt-get)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from tests.test_serve import LINE, _free_port, _wait, make_server, names  # noqa: E402, F401  (fixtures)

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-gi and the GStreamer bindings live
SERVER = Path(__file__).with_name("rtsp_server.py")
OUTAGE_S = 10.0


def _gstreamer_rtsp() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


if not _gstreamer_rtsp():
    pytest.skip(
        "GStreamer's RTSP server is not installed (apt-get install gir1.2-gst-rtsp-server-1.0 ...)",
        allow_module_level=True,
    )


class RtspServer:
    def __init__(self, port: int, video: Path):
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), str(port), str(video)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line + self.proc.stdout.read()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def _metric(text: str, name: str, sid: int) -> float | None:
    for line in text.splitlines():
        if line.startswith(f'{name}{{stream="{sid}"}} '):
            return float(line.split()[-1])
    return None


@pytest.mark.slow
def test_a_camera_whose_rtsp_server_dies_for_10_s_reconnects_by_itself(make_server, assets_root, tmp_path):  # noqa: F811
    video = assets_root / "videos" / "highway_traffic_720p.mp4"  # 30 s: the server's session outlasts the test
    port = _free_port()
    url = f"rtsp://127.0.0.1:{port}/cam"
    camera = RtspServer(port, video)
    srv = make_server(reconnect_backoff_s=0.5, reconnect_max_s=2.0)
    data = srv.settings.data_dir
    (data / "uploads").mkdir(parents=True, exist_ok=True)
    (data / "uploads" / "file.mp4").write_bytes(video.read_bytes())
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            cam = c.post("/api/streams", json={"source": url, "name": "cam", "lines": ["0,225,640,225"]}).json()["id"]
            body = {"source": "uploads/file.mp4", "lines": [LINE], "loop": True, "realtime": True}
            other = c.post("/api/streams", json=body).json()["id"]
            assert _wait(c, cam, ("running", "failed"), timeout=120)["status"] == "running"
            assert _wait(c, other, ("running", "failed"), timeout=60)["status"] == "running"
            time.sleep(2.0)
            row = c.get(f"/api/streams/{cam}").json()
            assert row["health"]["connected"] is True and row["health"]["reconnects"] == 0, row
            camera.kill()
            t_kill = time.monotonic()
            other_before = c.get(f"/api/streams/{other}").json()["frames"]
            dropped = _wait(c, cam, ("reconnecting", "failed"), timeout=OUTAGE_S)
            assert dropped["status"] == "reconnecting", dropped
            time.sleep(max(0.0, t_kill + OUTAGE_S - time.monotonic()))
            during = c.get(f"/api/streams/{other}").json()
            # the file stream ran on through the camera's outage, on the same engine
            assert during["status"] == "running" and during["frames"] > other_before + 50, (other_before, during)
            camera = RtspServer(port, video)
            t_back = time.monotonic()
            back = _wait(c, cam, ("running", "failed"), timeout=30)
            assert back["status"] == "running" and back["error"] is None, back
            deadline = t_back + 15
            while c.get(f"/api/streams/{cam}").json()["frames"] <= dropped["frames"] + 25:
                assert time.monotonic() < deadline, "frames did not flow again within 15 s of the server's return"
                time.sleep(0.2)
            row = c.get(f"/api/streams/{cam}").json()
            assert row["health"]["connected"] is True and row["health"]["reconnects"] >= 1, row
            metrics = c.get("/metrics").text
            assert _metric(metrics, "yolo_accel_stream_reconnects_total", cam) >= 1
            assert _metric(metrics, "yolo_accel_stream_connected", cam) == 1.0
            for sid in (cam, other):
                assert c.post(f"/api/streams/{sid}/stop").status_code == 200
                assert _wait(c, sid)["status"] == "stopped"
            assert c.get(f"/api/streams/{other}").json()["error"] is None
    finally:
        camera.kill()
