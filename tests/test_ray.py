"""Scaling out on Ray, on a local Ray with two CPU workers: two streams and a 64-image folder give what
the runs without Ray give, and a killed engine's stream goes on elsewhere with every frame's events
written exactly once (those before the restart as the full run wrote them, those after as a fresh run
from the restart frame writes them). Measured scaling on two GPUs is in BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import wait_until_serving
from yolo_accel._deps import available

LINE = "0,450,1280,450"  # across the motorway of the shared clip
FRAMES = 90


def _cli(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    exe = os.path.join(os.path.dirname(sys.executable), "yolo-accel")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)


def _events(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_without_the_extra_ray_is_one_line_naming_the_install(monkeypatch, yolov5n_pt, assets_root):
    from typer.testing import CliRunner

    from yolo_accel.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    clip = str(assets_root / "videos" / "highway_traffic_720p.mp4")
    res = CliRunner().invoke(app, ["video", clip, "--model", str(yolov5n_pt), "--ray", "local"])
    assert res.exit_code == 2
    assert "pip install 'yolo-accel[ray]'" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_predict_on_ray_refuses_rect_and_takes_square(tmp_path, yolov5n_pt):
    """Ray's engines letterbox to the square input: --rect is one line before Ray starts; --square is what
    they do anyway (the folder test below passes it)."""
    from typer.testing import CliRunner

    from yolo_accel.cli import app

    args = [
        "predict",
        str(tmp_path),
        "--model",
        str(yolov5n_pt),
        "--ray",
        "local",
        "--save-parquet",
        str(tmp_path / "p"),
    ]
    res = CliRunner().invoke(app, [*args, "--rect"])
    assert (
        res.exit_code == 2 and res.output.strip() == "error: --rect: not with --ray (detections go to --save-parquet)"
    )


needs_ray = pytest.mark.skipif(not available("ray"), reason="Ray is not installed (pip install 'yolo-accel[ray]')")


@needs_ray
@pytest.mark.slow
def test_two_streams_on_two_cpu_engines_count_what_the_engine_alone_counts(tmp_path, yolov5n_pt, assets_root):
    clip = str(assets_root / "videos" / "highway_traffic_720p.mp4")
    common = [clip, clip, "--model", str(yolov5n_pt), "--imgsz", "320", "--line", LINE, "--max-frames", str(FRAMES)]
    res = _cli(["video", *common, "--events", str(tmp_path / "ref.jsonl"), "--summary", str(tmp_path / "ref.json")])
    assert res.returncode == 0, res.stderr
    args = ["video", *common, "--ray", "local", "--engines", "2", "--events", str(tmp_path / "ray.jsonl")]
    res = _cli([*args, "--summary", str(tmp_path / "ray.json")])
    assert res.returncode == 0, res.stdout + res.stderr
    ray_sum = json.loads((tmp_path / "ray.json").read_text())
    ref_sum = json.loads((tmp_path / "ref.json").read_text())
    assert {e["pid"] for e in ray_sum["engines"]} and len(ray_sum["engines"]) == 2
    assert [e["frames"] for e in ray_sum["engines"]] == [FRAMES, FRAMES]  # one stream each, by load
    total = 0
    for i in range(2):
        ours, ref = _events(tmp_path / f"ray-{i}.jsonl"), _events(tmp_path / f"ref-{i}.jsonl")
        assert ours == ref
        total += len(ref)
        assert ray_sum["streams"][i]["counts"] == ref_sum["streams"][i]["counts"]
        assert ray_sum["streams"][i]["frames"] == FRAMES
    assert total >= 2  # the clip really has traffic over the line in these frames


@pytest.mark.xdist_group("test_ray.py::data")  # a group of its own: the two workers finish together
@needs_ray
@pytest.mark.slow
def test_a_folder_on_ray_data_gives_predicts_detections(tmp_path, yolov5n_pt, coco128_images):
    import pyarrow.parquet as pq

    folder = tmp_path / "images"
    folder.mkdir()
    for p in coco128_images[:64]:
        shutil.copy(p, folder)
    common = ["--model", str(yolov5n_pt), "--square", "--imgsz", "320"]  # 320: the same claim at a quarter of the work
    res = _cli(["predict", str(folder), *common, "--save-json", str(tmp_path / "r.json")])
    assert res.returncode == 0, res.stderr
    ref = {Path(r["image"]).name: r["detections"] for r in json.loads((tmp_path / "r.json").read_text())["images"]}
    out = tmp_path / "parquet"
    args = ["predict", str(folder), *common, "--ray", "local", "--engines", "2"]
    res = _cli([*args, "--batch", "8", "--save-parquet", str(out)])
    assert res.returncode == 0, res.stdout + res.stderr
    rows = pq.read_table(str(out)).to_pylist()
    assert sorted(Path(r["path"]).name for r in rows) == sorted(ref)
    for r in rows:
        want = ref[Path(r["path"]).name]
        assert len(r["confidence"]) == len(want)
        if want:
            np.testing.assert_allclose(np.reshape(r["xyxy"], (-1, 4)), [d["xyxy"] for d in want], atol=0.02)
            np.testing.assert_allclose(r["confidence"], [d["confidence"] for d in want], atol=1e-4)
            assert r["class_name"] == [d["class_name"] for d in want]


@pytest.mark.xdist_group("test_ray.py::kill")  # a group of its own: the two workers finish together
@needs_ray
@pytest.mark.slow
def test_a_killed_engine_s_stream_resumes_elsewhere_with_every_event_once(tmp_path, yolov5n_pt, assets_root):
    """Run in a child process (Ray's driver in pytest's own process is not wanted); it writes what the
    job did, and this test checks it against two runs without Ray."""
    clip = assets_root / "videos" / "highway_traffic_720p.mp4"
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    res = subprocess.run(
        [sys.executable, str(script), str(yolov5n_pt), str(clip), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    st = summary["streams"][0]
    assert summary["restarts"] == 1 and len(st["pieces"]) == 2 and "died" in st["pieces"][0]
    assert st["pieces"][0]["engine"] != st["pieces"][1]["engine"]  # it went on on the other engine
    resume = st["pieces"][1]["start_frame"]
    assert 0 < resume < FRAMES * 2
    assert st["frames"] == FRAMES * 2  # every frame once: none lost, none twice

    from yolo_accel.detector import Detector
    from yolo_accel.video.engine import run_sequential
    from yolo_accel.video.processor import StreamSettings
    from yolo_accel.video.sources import open_source

    det = Detector(yolov5n_pt, imgsz=320, rect=False)
    refs = {}
    for name, start in (("full", 0), ("from_resume", resume)):
        path = tmp_path / f"{name}.jsonl"
        settings = StreamSettings(lines=[LINE], events=str(path))
        run_sequential(open_source(str(clip), max_frames=FRAMES * 2 - start, start_frame=start), det, settings)
        refs[name] = _events(path)
    ours = _events(tmp_path / "events.jsonl")
    expected = [e for e in refs["full"] if e["frame"] < resume] + refs["from_resume"]
    assert ours == expected
    assert len({(e["frame"], e["track_id"], e["counter"]) for e in ours}) == len(ours)


KILL_SCRIPT = """
import json, sys, threading, time
from yolo_accel.scale.cluster import connect
from yolo_accel.scale.video import RayVideoJob
from yolo_accel.video.engine import EngineSettings
from yolo_accel.video.processor import StreamSettings

model, clip, out = sys.argv[1:4]
ray = connect("local", num_cpus=2)
kwargs = dict(model=model, imgsz=320, rect=False)
job = RayVideoJob(ray, [clip], kwargs, StreamSettings(lines=["LINE"]), EngineSettings(batch=1, workers=1),
                  [out + "/events.jsonl"], engines=2, gpu=False, max_frames=FRAMES2)
result = {}
t = threading.Thread(target=lambda: result.update(job.run()))
t.start()
while job.streams[0].frames < 40:
    time.sleep(0.05)
engine = job.streams[0].pieces[-1]["engine"]
ray.kill(job.actors[engine])
t.join()
json.dump(result, open(out + "/summary.json", "w"))
""".replace("LINE", LINE).replace("FRAMES2", str(FRAMES * 2))


@needs_ray
@pytest.mark.slow
def test_serve_runs_its_streams_on_ray_and_stores_the_reference_events(tmp_path, assets_root, yolov5n_pt):
    """`serve --ray local`: a stream runs as a Ray actor; its events in the database are those of the
    sequential reference path, its frames all counted, and its live video reaches a viewer."""
    import socket

    import cv2
    import httpx

    data = tmp_path / "data"
    (data / "uploads").mkdir(parents=True)
    src = cv2.VideoCapture(str(assets_root / "videos" / "highway_traffic_720p.mp4"))
    clip = data / "uploads" / "clip.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (1280, 720))
    for _ in range(FRAMES):
        ok, img = src.read()
        assert ok
        w.write(img)
    w.release()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "yolo_accel", "serve", "-m", str(yolov5n_pt), "--imgsz", "320", "--ray", "local"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--data-dir", str(data)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until_serving(port, proc, 120)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            r = c.post("/api/streams", json={"source": "uploads/clip.mp4", "lines": [LINE], "classes": "car,truck"})
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            jpeg = None
            with c.stream("GET", f"/api/streams/{sid}/video.mjpg") as v:
                if v.status_code == 200:  # 409 once the stream has ended: then there is nothing to watch
                    buf = b""
                    for chunk in v.iter_bytes():
                        buf += chunk
                        start, end = buf.find(b"\xff\xd8"), buf.find(b"\xff\xd9")
                        if start >= 0 and end > start:
                            jpeg = buf[start : end + 2]
                            break
            deadline = time.time() + 300
            while (row := c.get(f"/api/streams/{sid}").json())["status"] not in ("finished", "failed", "stopped"):
                assert time.time() < deadline
                time.sleep(0.3)
            assert row["status"] == "finished" and row["frames"] == FRAMES, row
            events = c.get(f"/api/streams/{sid}/events").json()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert jpeg is not None  # the live video reached a viewer here, from the actor
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (720, 1280, 3)
    from yolo_accel import Detector
    from yolo_accel.video.engine import run_sequential
    from yolo_accel.video.processor import StreamSettings
    from yolo_accel.video.sources import open_source

    ref_events = tmp_path / "ref.jsonl"
    with Detector(yolov5n_pt, imgsz=320, conf=0.25, iou=0.5, max_det=30, classes="car,truck", rect=False) as det:
        run_sequential(open_source(str(clip)), det, StreamSettings(lines=[LINE], events=str(ref_events)))
    expected = _events(ref_events)
    keys = ("frame", "counter", "track_id", "class_name", "direction")
    assert [tuple(e[k] for k in keys) for e in events] == [tuple(e[k] for k in keys) for e in expected]
    assert expected
