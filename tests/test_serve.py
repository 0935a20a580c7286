"""`yolo-accel serve` over HTTP on loopback, as a client uses it: upload the shared clip, watch it run,
read its events from the API and the database, and every bad request answered with a 4xx JSON error.

The stream's stored events are compared with an independent run of the same settings through the
video engine's sequential path (the reference every engine run is held to)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from tests.conftest import wait_until_serving  # noqa: E402

from yolo_accel.serve.app import create_app  # noqa: E402
from yolo_accel.serve.manager import ServeSettings  # noqa: E402
from yolo_accel.serve.store import Store  # noqa: E402

LINE = "0,450,1280,450"
VEHICLES = "car,motorcycle,bus,truck"
IMGSZ = 320  # the 2-core machine: a short clip in seconds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, assets_root) -> Path:
    """The first 150 frames of the shared traffic clip (written here, in the test's temporary folder)."""
    import cv2

    src = cv2.VideoCapture(str(assets_root / "videos" / "highway_traffic_720p.mp4"))
    out = tmp_path_factory.mktemp("clip") / "traffic150.mp4"
    w = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (1280, 720))
    for _ in range(150):
        ok, img = src.read()
        assert ok
        w.write(img)
    w.release()
    return out


class Server:
    """The app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: ServeSettings, names=None, port: int | None = None):
        import uvicorn

        self.settings = settings
        self.app = create_app(settings, names, closing=lambda: self.server.should_exit)
        self.port = port or _free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def names(yolov5n_pt) -> dict:
    from yolo_accel import Detector

    with Detector(yolov5n_pt) as det:
        return dict(det.names)


@pytest.fixture
def make_server(tmp_path, yolov5n_pt, names):
    servers = []

    def make(**kw):
        kw.setdefault("data_dir", tmp_path / "data")
        s = Server(ServeSettings(model=str(yolov5n_pt), imgsz=IMGSZ, **kw), names=names)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait(client, sid: int, states=("finished", "failed", "stopped"), timeout=180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        row = client.get(f"/api/streams/{sid}").json()
        if row["status"] in states:
            return row
        time.sleep(0.3)
    raise AssertionError(f"stream {sid} still {row['status']}")


def _first_jpeg(resp) -> bytes | None:
    """The first whole part of a multipart JPEG response (by its Content-Length)."""
    buf = b""
    for chunk in resp.iter_bytes():
        buf += chunk
        if b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            assert b"Content-Type: image/jpeg" in head
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            if len(rest) >= length:
                return rest[:length]
    return None


def _decode(jpeg: bytes):
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on loopback (initdb + pg_ctl, as the postgres user when run as root);
    skipped where PostgreSQL or psycopg is missing."""
    import pwd
    import shutil
    import tempfile

    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    pytest.importorskip("psycopg")
    root = os.geteuid() == 0
    if root:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres user (PostgreSQL refuses to run as root)")
    as_postgres = ["runuser", "-u", "postgres", "--"] if root else []
    folder = Path(tempfile.mkdtemp(prefix="yolo-accel-pg-"))
    if root:
        shutil.chown(folder, "postgres", "postgres")
    port = _free_port()
    run = lambda *a: subprocess.run([*as_postgres, *a], check=True, capture_output=True)  # noqa: E731
    run(initdb, "-D", str(folder / "data"), "-U", "postgres", "--auth=trust")
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder}"
    run(pg_ctl, "-D", str(folder / "data"), "-o", opts, "-w", "-l", str(folder / "log"), "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(folder / "data"), "-m", "fast", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.slow
def test_upload_run_and_read_the_events(make_server, clip, yolov5n_pt, tmp_path, database, request):
    ocr = pytest.importorskip("rapidocr_onnxruntime") is not None
    db_url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    srv = make_server(ocr=ocr, db_url=db_url)  # plates read beside: the crossings must still be the reference's
    t_start = time.time()
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        assert c.get("/healthz").json()["ok"] is True
        page = c.get("/")
        assert page.status_code == 200 and "EventSource('/api/live')" in page.text
        with open(clip, "rb") as f:
            up = c.post("/api/uploads", files={"file": ("traffic.mp4", f, "video/mp4")})
        assert up.status_code == 201, up.text
        source = up.json()["source"]
        assert source.startswith("uploads/") and (srv.settings.data_dir / source).is_file()
        assert c.get("/api/preview", params={"source": source}).content[:2] == b"\xff\xd8"  # a JPEG
        r = c.post("/api/streams", json={"source": source, "classes": VEHICLES, "lines": [LINE]})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        # while it runs: two viewers at once each get whole, decodable JPEG frames, and the SSE feed reports it
        with (
            httpx.Client(base_url=srv.url, timeout=60) as c2,
            c.stream("GET", f"/api/streams/{sid}/video.mjpg") as v1,
            c2.stream("GET", f"/api/streams/{sid}/video.mjpg") as v2,
        ):
            if v1.status_code == 200 and v2.status_code == 200:
                for v in (v1, v2):
                    jpeg = _first_jpeg(v)
                    assert jpeg is not None and _decode(jpeg).shape == (720, 1280, 3)
        with c.stream("GET", "/api/live") as sse:
            line = next(x for x in sse.iter_lines() if x.startswith("data: "))
        assert any(s["id"] == sid for s in json.loads(line[6:])["streams"])
        row = _wait(c, sid)
        assert row["status"] == "finished" and row["frames"] == 150, row
        events = c.get(f"/api/streams/{sid}/events").json()
        counts = c.get(f"/api/streams/{sid}").json()["counts"]
        # a browser that reconnects names the last event it got (each message's SSE id): only later ones come
        assert len(events) >= 2
        with c.stream("GET", "/api/live", headers={"Last-Event-ID": str(events[0]["id"])}) as sse:
            it = sse.iter_lines()
            head, data = next(it), next(it)
        assert head == f"id: {events[-1]['id']}"
        assert [e["id"] for e in json.loads(data[6:])["events"]] == [e["id"] for e in events[1:]]
        bad = c.get("/api/live", headers={"Last-Event-ID": "1e309"})
        assert bad.status_code == 422 and "error" in bad.json()
        rows = list(csv.DictReader(io.StringIO(c.get(f"/api/streams/{sid}/events", params={"format": "csv"}).text)))
        metrics = c.get("/metrics").text
        # plates: each track's stored plate is its last (best) plate record, and its crop is served
        records = [json.loads(x) for x in (srv.settings.data_dir / "events" / f"stream{sid}.jsonl").open()]
        best = {r["track_id"]: r["plate"] for r in records if r.get("event") == "plate"}
        for e in events:
            assert e["plate"] == best.get(e["track_id"]), e
        for tid in best:
            assert c.get(f"/api/streams/{sid}/plates/{tid}.jpg").content[:2] == b"\xff\xd8"
        # each crossing in the file says when its frame was decoded, before it was stored
        seen = {(r["frame"], r["track_id"]): r["seen_at"] for r in records if "direction" in r}
        assert len(seen) == len(events)
        for e in events:
            assert t_start <= seen[(e["frame"], e["track_id"])] <= e["created_at"] + 0.01, e
        assert c.get(f"/api/streams/{sid}/plates/99999.jpg").status_code == 404
    # the stored events are those of the same settings run through the sequential reference path
    from yolo_accel import Detector
    from yolo_accel.video.engine import run_sequential
    from yolo_accel.video.processor import StreamSettings
    from yolo_accel.video.sources import open_source

    ref_events = tmp_path / "ref.jsonl"
    with Detector(yolov5n_pt, imgsz=IMGSZ, conf=0.25, iou=0.5, max_det=30, classes=VEHICLES, rect=False) as det:
        ref = run_sequential(open_source(str(clip)), det, StreamSettings(lines=[LINE], events=str(ref_events)))
    expected = [json.loads(x) for x in ref_events.read_text().splitlines()]
    assert len(expected) > 0
    keys = ("frame", "counter", "track_id", "class_name", "direction")
    assert [tuple(e[k] for k in keys) for e in events] == [tuple(e[k] for k in keys) for e in expected]
    assert counts == ref["counts"]
    assert [int(r["id"]) for r in rows] == [e["id"] for e in events]
    assert [r["class_name"] for r in rows] == [e["class_name"] for e in events]
    assert f'yolo_accel_frames_total{{stream="{sid}"}} 150.0' in metrics
    assert f'yolo_accel_events_total{{stream="{sid}"}} {float(len(events))}' in metrics
    # every frame went through each stage once, and each stage's histogram says so (Prometheus' own parser)
    from prometheus_client.parser import text_string_to_metric_families

    (stages,) = [m for m in text_string_to_metric_families(metrics) if m.name == "yolo_accel_stage_seconds"]
    per = {}
    for smp in stages.samples:
        if smp.labels["stream"] == str(sid) and smp.name.endswith("_count"):
            per[smp.labels["stage"]] = smp.value
    assert {k: per.get(k) for k in ("decode", "pre", "infer", "post", "track", "count")} == dict.fromkeys(
        ("decode", "pre", "infer", "post", "track", "count"), 150.0
    )
    # in the database itself
    assert Store(srv.settings.database).counts(sid) == counts


def test_bad_requests_get_a_4xx_json_error(make_server, clip, tmp_path):
    srv = make_server(max_upload_mb=1)
    data = srv.settings.data_dir
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(clip.read_bytes())
    (data / "link.mp4").symlink_to(outside)
    (data / "clip.mp4").write_bytes(clip.read_bytes())
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        cases = [
            (c.post("/api/streams", json={"source": "../outside.mp4"}), 400, "data folder"),
            (c.post("/api/streams", json={"source": str(outside)}), 400, "data folder"),
            (c.post("/api/streams", json={"source": "link.mp4"}), 400, "inside the data folder"),
            (c.post("/api/streams", json={"source": "ftp://cam/1"}), 400, "rtsp://, http:// or https://"),
            (c.post("/api/streams", json={"source": "missing.mp4"}), 400, "no file"),
            (c.post("/api/streams", json={"source": "clip.mp4", "lines": ["1,2,3"]}), 400, "x1,y1,x2,y2"),
            (c.post("/api/streams", json={"source": "clip.mp4", "classes": "unicorn"}), 400, "unicorn"),
            (c.post("/api/streams", json={"lines": []}), 422, "source"),
            (c.post("/api/streams", content=b"{not json", headers={"content-type": "application/json"}), 422, ""),
            (c.post("/api/uploads", files={"file": ("notes.txt", b"hello", "text/plain")}), 400, "video files"),
            (c.post("/api/uploads", files={"file": ("x.mp4", os.urandom(4096), "video/mp4")}), 400, "does not decode"),
            (c.post("/api/uploads", files={"file": ("big.mp4", b"\0" * (2 * 2**20), "video/mp4")}), 413, "1 MB"),
            (c.get("/api/streams/999"), 404, "no stream 999"),
            (c.get("/api/streams/999/events", params={"format": "xml"}), 404, ""),
            (c.get("/no/such/route"), 404, ""),
        ]
        for r, status, text in cases:
            assert r.status_code == status, (r.request.url, r.text)
            body = r.json()
            assert "error" in body and text in body["error"], body
            assert "Traceback" not in r.text
        assert list((data / "uploads").iterdir()) == []  # refused uploads leave nothing behind


class _Camera:
    """An HTTP MJPEG camera on a loopback port, playing the clip's frames at 25 FPS until closed."""

    def __init__(self, jpegs: list[bytes], port: int):
        from yolo_accel.video.sinks import MjpegServer

        self.server, self.stopped = MjpegServer(port), threading.Event()
        self.thread = threading.Thread(target=self._play, args=(jpegs,), daemon=True)
        self.thread.start()

    def _play(self, jpegs):
        i = 0
        while not self.stopped.is_set():
            self.server.publish_jpeg(jpegs[i % len(jpegs)])
            i += 1
            time.sleep(0.04)

    def close(self):
        self.stopped.set()
        self.thread.join()
        self.server.close()  # its open responses end: the reader sees the stream drop


@pytest.mark.slow
def test_a_camera_that_drops_is_reconnecting_then_running_again(make_server, clip):
    """A camera that goes away mid-stream is not shown as a frozen 'running': it is 'reconnecting' while its
    source reopens the connection, and 'running' again, its frames moving on, once the camera is back."""
    import cv2

    cap, jpegs = cv2.VideoCapture(str(clip)), []
    for _ in range(50):
        ok, img = cap.read()
        assert ok
        jpegs.append(cv2.imencode(".jpg", cv2.resize(img, (640, 360)))[1].tobytes())
    port = _free_port()
    camera = _Camera(jpegs, port)
    srv = make_server()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            r = c.post("/api/streams", json={"source": f"http://127.0.0.1:{port}/", "name": "cam", "lines": [LINE]})
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            assert _wait(c, sid, ("running", "failed"), timeout=120)["status"] == "running"
            camera.close()
            dropped = _wait(c, sid, ("reconnecting", "failed"), timeout=30)
            assert dropped["status"] == "reconnecting", dropped
            camera = _Camera(jpegs, port)
            back = _wait(c, sid, ("running", "failed"), timeout=60)
            assert back["status"] == "running" and back["error"] is None, back
            deadline = time.time() + 30
            while c.get(f"/api/streams/{sid}").json()["frames"] <= dropped["frames"]:
                assert time.time() < deadline, "no frames after the camera came back"
                time.sleep(0.3)
            assert c.post(f"/api/streams/{sid}/stop").status_code == 200
            assert _wait(c, sid)["status"] == "stopped"
    finally:
        camera.close()


@pytest.mark.xdist_group("test_serve.py::faults")
@pytest.mark.slow
def test_a_killed_engine_process_fails_its_streams_in_one_line_and_the_next_stream_runs(make_server, clip):
    """The engine process (every stream's detector) killed with SIGKILL: its streams are failed with one line
    saying so, what they stored stays, its worker processes go with it, and the next stream starts a new engine."""
    srv = make_server()
    (srv.settings.data_dir / "clip.mp4").write_bytes(clip.read_bytes())
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        body = {"source": "clip.mp4", "lines": [LINE], "loop": True, "realtime": True}
        sid = c.post("/api/streams", json=body).json()["id"]
        assert _wait(c, sid, ("running", "failed"), timeout=120)["status"] == "running"
        (pid,) = srv.app.state.manager.engine.pids
        workers = _children(pid)
        assert workers, "the engine's tracking workers are processes of their own"
        time.sleep(3.0)
        os.kill(pid, signal.SIGKILL)
        row = _wait(c, sid, ("failed", "finished", "stopped"), timeout=60)
        assert row["status"] == "failed" and row["error"].startswith("the engine process exited"), row
        assert "\n" not in row["error"] and row["frames"] > 0
        deadline = time.time() + 15
        while any(_alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "an engine worker outlived its engine"
        again = c.post("/api/streams", json={"source": "clip.mp4", "lines": [LINE]}).json()["id"]
        row = _wait(c, again)
        assert row["status"] == "finished" and row["frames"] == 150, row
        assert srv.app.state.manager.engine.pids != [pid]


@pytest.mark.xdist_group("test_serve.py::faults")
@pytest.mark.slow
def test_a_killed_engine_worker_fails_its_stream_in_one_line_and_the_others_run_on(make_server, clip):
    """One of the engine's tracking workers killed with SIGKILL: the stream it tracked is failed with one line,
    the stream on the other worker runs on, and a new stream goes to the worker left."""
    import psutil

    srv = make_server(workers=2)
    (srv.settings.data_dir / "clip.mp4").write_bytes(clip.read_bytes())
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        body = {"source": "clip.mp4", "lines": [LINE], "loop": True, "realtime": True}
        ids = [c.post("/api/streams", json=body).json()["id"] for _ in range(2)]
        for sid in ids:
            assert _wait(c, sid, ("running", "failed"), timeout=120)["status"] == "running"
        (pid,) = srv.app.state.manager.engine.pids
        workers = [p for p in psutil.Process(pid).children() if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2, workers
        os.kill(workers[0].pid, signal.SIGKILL)
        deadline = time.time() + 30
        while not any(
            (rows := [c.get(f"/api/streams/{sid}").json() for sid in ids])[i]["status"] == "failed" for i in (0, 1)
        ):
            assert time.time() < deadline, rows
            time.sleep(0.3)
        failed = [r for r in rows if r["status"] == "failed"]
        running = [r for r in rows if r["status"] != "failed"]
        assert len(running) == 1, [(r["status"], r["error"]) for r in rows]  # the other worker's stream runs on
        (alive,) = running
        assert len(failed) == 1 and failed[0]["error"].startswith("its worker process exited"), failed
        time.sleep(2.0)
        later = c.get(f"/api/streams/{alive['id']}").json()
        assert later["status"] == "running" and later["frames"] > alive["frames"], (alive, later)
        again = c.post("/api/streams", json={"source": "clip.mp4", "lines": [LINE]}).json()["id"]
        row = _wait(c, again)
        assert row["status"] == "finished" and row["frames"] == 150, row


@pytest.mark.xdist_group("test_serve.py::faults")
def test_cameras_that_never_connect_or_send_garbage_fail_in_one_line(make_server, clip):
    """A camera URL nobody answers and one that answers with noise: each stream is failed with one line once
    its retries are spent; a file stream beside them runs to its end."""
    import socketserver

    class Noise(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.recv(4096)
            self.request.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: video/mp4\r\n\r\n" + os.urandom(200_000))

    garbage = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Noise)
    threading.Thread(target=garbage.serve_forever, daemon=True).start()
    srv = make_server(reconnect_retries=1, reconnect_backoff_s=0.2, reconnect_max_s=0.2)
    (srv.settings.data_dir / "clip.mp4").write_bytes(clip.read_bytes())
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            urls = [f"http://127.0.0.1:{_free_port()}/cam", f"http://127.0.0.1:{garbage.server_address[1]}/cam"]
            cams = [c.post("/api/streams", json={"source": u, "lines": [LINE]}).json()["id"] for u in urls]
            ok = c.post("/api/streams", json={"source": "clip.mp4", "lines": [LINE]}).json()["id"]
            for sid, url in zip(cams, urls):
                row = _wait(c, sid, timeout=120)
                assert row["status"] == "failed" and row["error"] == f"cannot open {url} after 1 retries", row
            row = _wait(c, ok)
            assert row["status"] == "finished" and row["frames"] == 150 and row["error"] is None, row
    finally:
        garbage.shutdown()


@pytest.mark.xdist_group("test_serve.py::faults")
def test_a_stream_removed_while_its_video_is_watched_ends_the_video(make_server, clip):
    """DELETE of a stream whose live video a viewer holds: the viewer's response ends (no hung connection),
    the stream is gone, the server answers on."""
    srv = make_server()
    (srv.settings.data_dir / "clip.mp4").write_bytes(clip.read_bytes())
    with httpx.Client(base_url=srv.url, timeout=30) as c, httpx.Client(base_url=srv.url, timeout=30) as viewer:
        body = {"source": "clip.mp4", "lines": [LINE], "loop": True, "realtime": True}
        sid = c.post("/api/streams", json=body).json()["id"]
        assert _wait(c, sid, ("running", "failed"), timeout=120)["status"] == "running"
        ended = threading.Event()
        with viewer.stream("GET", f"/api/streams/{sid}/video.mjpg") as v:
            assert v.status_code == 200
            chunks, buf = v.iter_bytes(), b""
            while b"\xff\xd9" not in buf:  # a whole first frame
                buf += next(chunks)

            def drain():
                for _ in chunks:
                    pass
                ended.set()

            threading.Thread(target=drain, daemon=True).start()
            assert c.delete(f"/api/streams/{sid}").status_code == 204
            assert ended.wait(30), "the viewer's response did not end"
        assert c.get(f"/api/streams/{sid}").status_code == 404
        assert c.get("/healthz").json() == {"ok": True, "streams_running": 0}


def test_off_loopback_needs_a_token(yolov5n_pt, tmp_path):
    from typer.testing import CliRunner

    from yolo_accel.cli import app

    res = CliRunner().invoke(app, ["serve", "-m", str(yolov5n_pt), "--host", "0.0.0.0", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--token" in res.output and "Traceback" not in res.output


@pytest.mark.xdist_group("test_serve.py::kill-9")
@pytest.mark.slow
def test_kill_9_mid_stream_loses_no_event_and_the_streams_come_back(tmp_path, assets_root, yolov5n_pt):
    """A server killed with SIGKILL while a stream runs: every event it had committed is in the database,
    the restarted server lists the stream (interrupted) with those counts, and resumes it where it stopped."""
    data = tmp_path / "data"
    (data / "uploads").mkdir(parents=True)
    clip = data / "uploads" / "clip.mp4"  # the whole clip (751 frames): it runs on past the kill
    clip.write_bytes((assets_root / "videos" / "highway_traffic_720p.mp4").read_bytes())
    port = _free_port()
    cmd = [sys.executable, "-m", "yolo_accel", "serve", "-m", str(yolov5n_pt), "--imgsz", str(IMGSZ)]
    cmd += ["--port", str(port), "--data-dir", str(data)]

    def start():
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_serving(port, proc, 60)
        return proc

    proc = start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            sid = c.post("/api/streams", json={"source": "uploads/clip.mp4", "lines": [LINE]}).json()["id"]
            deadline = time.time() + 120
            seen = []
            while time.time() < deadline and len(seen) < 3:
                seen = c.get(f"/api/streams/{sid}/events").json()
                time.sleep(0.1)
            assert len(seen) >= 3 and c.get(f"/api/streams/{sid}").json()["status"] == "running"
            time.sleep(2.5)  # past the first time the server stores how far the stream got
            children = _children(proc.pid)
            assert children, "the stream runs in a process of its own"
            os.kill(proc.pid, signal.SIGKILL)  # the server alone: its stream's process must not run on
            proc.wait(timeout=10)
            deadline = time.time() + 15
            while any(_alive(p) for p in children) and time.time() < deadline:
                time.sleep(0.2)
            assert not any(_alive(p) for p in children), "a stream process outlived its server"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stored = Store(f"sqlite:///{data / 'yolo-accel.db'}").events(sid)
    assert [e["id"] for e in stored[: len(seen)]] == [e["id"] for e in seen]  # nothing it had answered is lost
    proc = start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            (row,) = c.get("/api/streams").json()
            assert row["id"] == sid and row["status"] == "interrupted" and row["resumable"]
            assert sum(v["in"] + v["out"] for per in row["counts"].values() for v in per.values()) == len(stored)
            resume_at = row["frames"]
            assert 0 < resume_at < 751
            assert c.post(f"/api/streams/{sid}/resume").json()["status"] in ("starting", "running")
            deadline = time.time() + 120
            while c.get(f"/api/streams/{sid}").json()["frames"] < resume_at + 50 and time.time() < deadline:
                time.sleep(0.2)
            row = c.post(f"/api/streams/{sid}/stop").json()
            assert row["status"] == "stopped" and resume_at < row["frames"] < 751, row
            stopped_at = row["frames"]
            after = c.get(f"/api/streams/{sid}/events").json()
            assert c.post(f"/api/streams/{sid}/start").status_code == 200
            assert c.post(f"/api/streams/{sid}/resume").status_code == 409  # running: nothing to resume
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    # resumed: the events before the stopping point are those stored before the kill, the rest are those of
    # a run of the same settings resumed there as the server resumes (the warm-up frames before it tracked,
    # not counted; track ids above the stored ones): nothing lost, nothing twice
    from yolo_accel import Detector
    from yolo_accel.serve.manager import RESUME_WARMUP_FRAMES
    from yolo_accel.video.engine import run_sequential
    from yolo_accel.video.processor import StreamSettings
    from yolo_accel.video.sources import open_source

    keys = ("frame", "counter", "track_id", "class_name", "direction")
    before = [e for e in stored if e["frame"] < resume_at]
    assert [e["id"] for e in after[: len(before)]] == [e["id"] for e in before]
    warm_from = max(0, resume_at - RESUME_WARMUP_FRAMES)
    ref_events = tmp_path / "ref.jsonl"
    with Detector(yolov5n_pt, imgsz=IMGSZ, conf=0.25, iou=0.5, max_det=30, rect=False) as det:
        run_sequential(
            open_source(str(clip), start_frame=warm_from, max_frames=stopped_at - warm_from),
            det,
            StreamSettings(
                lines=[LINE],
                events=str(ref_events),
                events_from=resume_at,
                track_id_offset=max((e["track_id"] for e in before), default=0),
            ),
        )
    expected = [json.loads(x) for x in ref_events.read_text().splitlines()]
    assert [tuple(e[k] for k in keys) for e in after[len(before) :]] == [tuple(e[k] for k in keys) for e in expected]


@pytest.mark.slow
def test_plates_reach_the_events_and_the_page(make_server, tmp_path, assets_root):
    """With --ocr: a crossing stored before its vehicle's plate was read gets the plate when it is, and the
    crop it was read from is served."""
    pytest.importorskip("rapidocr_onnxruntime")
    from conftest import make_plate_clip

    srv = make_server(ocr=True)
    uploads = srv.settings.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    _, truth, _ = make_plate_clip(assets_root, uploads / "plate.mp4")
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        body = {"source": "uploads/plate.mp4", "classes": VEHICLES, "lines": ["0,360,1280,360"]}
        sid = c.post("/api/streams", json=body).json()["id"]
        assert _wait(c, sid)["status"] == "finished"
        events = c.get(f"/api/streams/{sid}/events").json()
        assert events and {e["plate"] for e in events} == {truth}
        crop = c.get(f"/api/streams/{sid}/plates/{events[0]['track_id']}.jpg")
        assert crop.status_code == 200 and _decode(crop.content).shape[0] > 50
        csv_rows = list(csv.DictReader(io.StringIO(c.get(f"/api/streams/{sid}/events?format=csv").text)))
        assert [r["plate"] for r in csv_rows] == [truth] * len(events)
