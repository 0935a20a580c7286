"""`yolo-accel video` on the real traffic clip: frames, MP4, counts checked independently, MJPEG, errors, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_cut_clip, make_remuxed_clip
from yolo_accel.cli import app

runner = CliRunner()
LINE = "0,450,1280,450"  # across the motorway, 450 px down a 1280x720 frame
VEHICLES = "car,motorcycle,bus,truck"


@pytest.fixture(scope="module")
def video(assets_root) -> Path:
    return assets_root / "videos" / "highway_traffic_720p.mp4"


def _count_frames(path: Path) -> tuple[int, float, tuple[int, int]]:
    """Frames, frame rate and size of a video, decoded with PyAV (independent of the writer)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return n, float(s.average_rate), (s.codec_context.width, s.codec_context.height)


def _video_args(video, model, *extra):
    return [
        "video",
        str(video),
        "--model",
        str(model),
        "--backend",
        "onnxruntime",
        "--imgsz",
        "416",
        "--classes",
        VEHICLES,
        "--line",
        LINE,
        *extra,
    ]


@pytest.fixture(scope="module")
def first_ten_seconds(tmp_path_factory, video) -> Path:
    """The clip's first 250 frames, its packets copied as they are: the same real video, a third as long."""
    return make_remuxed_clip(video, tmp_path_factory.mktemp("clip") / "first250.mp4", 250)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, first_ten_seconds, yolov5n_pt):
    """One whole run over a clip: every frame read, detected, tracked, counted, annotated and encoded.
    The first 250 frames prove "every frame written" as the 751 did; encoding all 751 cost 20 s more."""
    out = tmp_path_factory.mktemp("video")
    res = runner.invoke(
        app,
        _video_args(
            first_ten_seconds,
            yolov5n_pt,
            "--output",
            str(out / "out.mp4"),
            "--events",
            str(out / "events.jsonl"),
            "--summary",
            str(out / "summary.json"),
        ),
    )
    return res, out


@pytest.mark.slow
def test_every_frame_processed_and_written(full_run, first_ten_seconds):
    res, out = full_run
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    n_src, fps_src, size_src = _count_frames(first_ten_seconds)
    assert n_src == 250 and size_src == (1280, 720)
    assert summary["frames"] == n_src and summary["dropped_frames"] == 0
    n_out, fps_out, size_out = _count_frames(out / "out.mp4")
    assert (n_out, size_out) == (n_src, size_src)
    assert fps_out == pytest.approx(fps_src)
    stages = {s["stage"] for s in summary["stages"]}
    assert stages == {"decode", "pre", "infer", "post", "track", "count", "annotate", "encode"}
    assert sum(s["share"] for s in summary["stages"]) == pytest.approx(1.0)
    assert "per-stage timing" in res.output and "line1" in res.output
    print(f"\n2-core CPU, onnxruntime, 416: {summary['fps']:.1f} FPS over {summary['frames']} frames")


def _tracked_frames(video, model, frames: int):
    """Run the engine through the Python API (tracking in this process), keeping each frame's tracked boxes."""
    from yolo_accel import Detector
    from yolo_accel.video.engine import EngineSettings, VideoEngine
    from yolo_accel.video.processor import StreamSettings
    from yolo_accel.video.sources import open_source

    seen = []
    det = Detector(model, backend="onnxruntime", imgsz=416, classes=VEHICLES, iou=0.5, max_det=30, rect=False)
    result = VideoEngine(
        det,
        [open_source(str(video), max_frames=frames)],
        [StreamSettings(lines=[LINE])],
        EngineSettings(batch=4, workers=0),
        on_frame=lambda sid, i, d: seen.append((i, d.xyxy.copy(), d.class_id.copy(), d.tracker_id.copy())),
    ).run()
    assert [i for i, *_ in seen] == list(range(frames))  # every frame, in order
    return result["streams"][0], seen


@pytest.mark.slow
def test_line_counts_match_an_independent_count(video, yolov5n_pt):
    """Count line crossings ourselves from the tracked boxes: bottom-centre changes side of the line."""
    summary, seen = _tracked_frames(video, yolov5n_pt, 300)
    (x1, y1, x2, y2) = (float(v) for v in LINE.split(","))
    direction = np.array([x2 - x1, y2 - y1])
    length = np.linalg.norm(direction)
    last_side: dict[int, int] = {}
    crossings: dict[str, int] = {}
    from yolo_accel.names import COCO_NAMES

    for _, xyxy, cls, tids in seen:
        for box, c, tid in zip(xyxy, cls, tids):
            if tid < 0:
                continue
            p = np.array([(box[0] + box[2]) / 2, box[3]]) - np.array([x1, y1])
            along = float(p @ direction) / length
            if not 0 <= along <= length:  # outside the segment's span: ignored, as supervision does
                continue
            cross = direction[0] * p[1] - direction[1] * p[0]
            if cross == 0:
                continue
            side = 1 if cross > 0 else -1
            if tid in last_side and last_side[tid] != side:
                name = COCO_NAMES[int(c)]
                crossings[name] = crossings.get(name, 0) + 1
            last_side[tid] = side
    ours = {name: v["in"] + v["out"] for name, v in summary["counts"].get("line1", {}).items()}
    print(f"\npipeline counts {summary['counts']}, independent crossings {crossings}")
    assert sum(crossings.values()) >= 5  # the clip really has traffic over the line
    assert ours == crossings


@pytest.mark.slow
def test_counts_and_events_are_reproducible(tmp_path, video, yolov5n_pt):
    texts = []
    for i in range(2):
        ev = tmp_path / f"e{i}.jsonl"
        res = runner.invoke(app, _video_args(video, yolov5n_pt, "--max-frames", "250", "--events", str(ev)))
        assert res.exit_code == 0, res.output
        texts.append(ev.read_text())
    assert texts[0] == texts[1] and texts[0].count("\n") >= 3
    first = json.loads(texts[0].splitlines()[0])
    assert set(first) == {"frame", "time_s", "counter", "track_id", "class_id", "class_name", "direction"}
    assert first["direction"] in ("in", "out") and first["time_s"] == pytest.approx(first["frame"] / 25, abs=1e-3)


@pytest.mark.slow
def test_truncated_video_processes_readable_frames_and_exits_2(tmp_path, video, yolov5n_pt):
    cut = make_cut_clip(video, tmp_path)
    summary = tmp_path / "s.json"
    res = runner.invoke(
        app, _video_args(cut, yolov5n_pt, "--summary", str(summary), "--output", str(tmp_path / "o.mp4"))
    )
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1].startswith("error:") and "ends early" in res.output
    s = json.loads(summary.read_text())
    assert 0 < s["frames"] < 200 and s["error"]
    assert _count_frames(tmp_path / "o.mp4")[0] == s["frames"]  # the output is finished, not half-written


def test_unreachable_url_fails_with_one_line(yolov5n_pt):
    t0 = time.perf_counter()
    res = runner.invoke(app, ["video", "rtsp://127.0.0.1:9/none", "--model", str(yolov5n_pt), "--retries", "1"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error:") and "after 1 retries" in lines[-1] and "Traceback" not in res.output
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize(
    "args,expect",
    [
        (["--line", "1,2,3"], "x1,y1,x2,y2"),
        (["--tracker", "deepsort"], "unknown tracker"),
        (["--zone", "0,0,10,10"], "at least three"),
    ],
)
def test_bad_options(video, yolov5n_pt, args, expect):
    res = runner.invoke(app, ["video", str(video), "--model", str(yolov5n_pt), "--max-frames", "2", *args])
    assert res.exit_code == 2, res.output
    assert expect in res.output.strip().splitlines()[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mjpeg_stream_and_ctrl_c(tmp_path, video, yolov5n_pt):
    """A real process: an HTTP client reads multipart JPEG frames, then SIGINT stops it cleanly."""
    import http.client

    import cv2

    port = _free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "yolo-accel")
    out, summary = tmp_path / "o.mp4", tmp_path / "s.json"
    proc = subprocess.Popen(
        [
            exe,
            *_video_args(
                video, yolov5n_pt, "--serve-mjpeg", str(port), "--output", str(out), "--summary", str(summary)
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        conn = None
        for _ in range(120):  # the model loads first
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/")
                resp = conn.getresponse()
                break
            except OSError:
                time.sleep(0.5)
        assert resp.status == 200
        assert resp.getheader("Content-Type").startswith("multipart/x-mixed-replace")
        jpegs = []
        buf = b""
        while len(jpegs) < 3:
            buf += resp.read1(65536)
            while b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(rest) < length:
                    break
                jpegs.append(rest[:length])
                buf = rest[length:]
        conn.close()
        img = cv2.imdecode(np.frombuffer(jpegs[-1], np.uint8), cv2.IMREAD_COLOR)
        assert jpegs[0][:2] == b"\xff\xd8" and img.shape == (720, 1280, 3)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    s = json.loads(summary.read_text())
    assert s["interrupted"] is True and 0 < s["frames"] < 751
    assert _count_frames(out)[0] == s["output"]["video_frames"] == s["frames"]


@pytest.mark.slow
def test_two_streams_share_one_batched_detector(tmp_path, video, yolov5n_pt):
    """Two concurrent streams, one batched detector: each gets exactly its single-stream results."""
    frames = "120"
    single = tmp_path / "single"
    res = runner.invoke(
        app,
        _video_args(
            video,
            yolov5n_pt,
            "--max-frames",
            frames,
            "--events",
            str(single / "e.jsonl"),
            "--summary",
            str(single / "s.json"),
        ),
    )
    assert res.exit_code == 0, res.output
    one = json.loads((single / "s.json").read_text())
    multi = tmp_path / "multi"
    args = _video_args(
        video,
        yolov5n_pt,
        "--max-frames",
        frames,
        "--events",
        str(multi / "e.jsonl"),
        "--summary",
        str(multi / "s.json"),
    )
    args.insert(2, str(video))  # the same clip twice: two streams
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    both = json.loads((multi / "s.json").read_text())
    assert len(both["streams"]) == 2 and both["frames"] == 2 * int(frames)
    assert both["batcher"]["frames"] == 2 * int(frames)
    for i, r in enumerate(both["streams"]):
        assert r["frames"] == int(frames)
        assert r["counts"] == one["counts"]  # each stream has its own tracker and counters
        assert (multi / f"e-{i}.jsonl").read_text() == (single / "e.jsonl").read_text()
    assert "2 streams" in res.output


def test_nvdec_needs_cuda_or_the_package(video, yolov5n_pt):
    res = runner.invoke(app, _video_args(video, yolov5n_pt, "--max-frames", "2", "--nvdec"))
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "PyNvVideoCodec" in res.output or "--device cuda" in res.output


def test_auto_encoder_falls_back_to_the_cpu_and_says_why(tmp_path, monkeypatch):
    """Where NVENC cannot start (here: no PyNvVideoCodec, or no GPU), --encoder auto writes the MP4 on
    the CPU and the summary notes why; --encoder nvenc is an error instead; a CPU run never tries."""
    import cv2

    from yolo_accel.video import sinks

    def no_nvenc(*a, **k):
        raise RuntimeError("no NVENC on this machine")

    monkeypatch.setattr(sinks, "NvencMp4Writer", no_nvenc)
    monkeypatch.setattr(sinks, "nvenc_problem", lambda gpu_id: "no NVENC on this machine")
    frame = np.full((64, 96, 3), 90, np.uint8)
    writer, note = sinks.open_video_writer(tmp_path / "a.mp4", 25.0, (96, 64), "auto", gpu_id=0)
    for _ in range(5):
        writer.write(frame)
    writer.close()
    assert writer.backend in ("pyav-libx264", "opencv-mp4v") and "no NVENC on this machine" in note
    assert int(cv2.VideoCapture(str(tmp_path / "a.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    with pytest.raises(RuntimeError, match="no NVENC"):
        sinks.open_video_writer(tmp_path / "b.mp4", 25.0, (96, 64), "nvenc", gpu_id=0)
    writer, note = sinks.open_video_writer(tmp_path / "c.mp4", 25.0, (96, 64), "auto", gpu_id=None)
    writer.discard()
    assert note is None and not list(tmp_path.glob("*c*.mp4"))
    with pytest.raises(ValueError, match="unknown encoder"):
        sinks.open_video_writer(tmp_path / "d.mp4", 25.0, (96, 64), "x264")


def test_bad_encoder_option_is_one_line(video, yolov5n_pt, tmp_path):
    out = str(tmp_path / "o.mp4")
    res = runner.invoke(app, ["video", str(video), "-m", str(yolov5n_pt), "--encoder", "x264", "-o", out])
    assert res.exit_code == 2 and "unknown --encoder" in res.output and "Traceback" not in res.output


def test_nvenc_probe_names_the_reason():
    """The reason a GPU run encodes on the CPU, in words: NVENC's 'no encode device' (error 2, what a
    GPU without video encoders such as the H200 answers) or the missing package."""
    from yolo_accel._deps import available
    from yolo_accel.video import sinks

    h200 = RuntimeError(
        "PyNvEncoderCaps : \nError code : 2\nError Type : m_nvenc.nvEncOpenEncodeSessionEx(...) returned error 2"
    )
    assert sinks._nvenc_reason(h200) == "this GPU has no video encoder (NVENC)"
    if not available("PyNvVideoCodec"):  # the probe's child process says what is missing
        assert "PyNvVideoCodec" in sinks.nvenc_problem(0)
