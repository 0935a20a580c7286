"""`serve`'s start-up: every bad option, database or port is one `error:` line and exit 2 before the
model loads; `--port 0` serves on a free port and says which. Click's own usage errors (a value out of
range, an unknown option) are that one line too, on every command."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from yolo_accel.cli import app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--port", "70000"], "'--port': 70000 is not in the range 0<=x<=65535"),
        (["--port", "-1"], "'--port': -1 is not in the range"),
        (["--db", "garbage://x"], "--db garbage://x: not a database URL"),
        (["--db", "sqlite:////nonexistent/dir/x.db"], "cannot open it (unable to open database file)"),
        (["--db", "postgresql://u:secret@127.0.0.1:FREE/x"], "--db postgresql://u:***@127.0.0.1:"),
        (["--port", "IN_USE"], "in use on 127.0.0.1 (another server?)"),
        (["--host", "no-such-host.invalid", "--token", "t" * 20], "--host no-such-host.invalid: not an address"),
        (["--max-upload-mb", "0"], "'--max-upload-mb': 0 is not in the range x>=1"),
        (["--preview-fps", "-1"], "'--preview-fps': -1.0 is not in the range x>=0"),
        (["--ray-gpu-share", "0"], "'--ray-gpu-share': 0.0 is not in the range"),
        (["--bogus"], "No such option '--bogus'"),
    ],
)
def test_a_bad_start_is_one_line_before_the_model_loads(tmp_path, yolov5n_pt, port_in_use, args, expect, monkeypatch):
    import yolo_accel.detector

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the bad option was found")

    monkeypatch.setattr(yolo_accel.detector, "Detector", no_model)
    args = [a.replace("IN_USE", str(port_in_use)).replace("FREE", str(_free_port())) for a in args]
    res = CliRunner().invoke(app, ["serve", "-m", str(yolov5n_pt), "--data-dir", str(tmp_path / "d"), *args])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert expect in lines[0]
    assert "secret" not in res.output  # a password in --db is not printed


@pytest.mark.parametrize(
    "args, expect",
    [
        (["predict", "--bogus"], "No such option '--bogus'"),
        (["predict"], "Missing argument 'SOURCE'. (see yolo-accel predict -h)"),
        (["bench", "--iters", "x"], "'x' is not a valid integer"),
        (["bench", "-m", "m.pt", "--iters", "0"], "'--iters': 0 is not in the range x>=1"),
        (["bench", "-m", "m.pt", "--warmup", "-1"], "'--warmup': -1 is not in the range x>=0"),
        (["bench", "-m", "m.pt", "--duration", "0"], "'--duration': 0.0 is not in the range"),
        (["bench", "-m", "m.pt", "--duration", "nan"], "'--duration': nan is not a finite number"),
        (["bench", "-m", "m.pt", "--e2e-iters", "0"], "'--e2e-iters': 0 is not in the range x>=1"),
        (["bench", "-m", "m.pt", "--threads", "-1"], "'--threads': -1 is not in the range x>=0"),
        (["video", "a.mp4", "-m", "m.pt", "--max-frames", "-1"], "'--max-frames': -1 is not in the range x>=1"),
        (["video", "a.mp4", "-m", "m.pt", "--max-frames", "0"], "'--max-frames': 0 is not in the range x>=1"),
        (["video", "a.mp4", "-m", "m.pt", "--duration", "nan"], "'--duration': nan is not a finite number"),
        (["export", "m.pt", "--format", "compiled", "--max-batch", "0"], "'--max-batch': 0 is not in the range x>=1"),
    ],
)
def test_click_usage_errors_are_one_line(args, expect):
    res = CliRunner().invoke(app, args)
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], res.output


def test_no_arguments_still_shows_the_help():
    res = CliRunner().invoke(app, [])
    assert "Commands" in res.output and "serve" in res.output


@pytest.mark.slow
def test_port_0_serves_on_a_free_port_and_says_which(tmp_path, yolov5n_pt):
    cmd = [sys.executable, "-m", "yolo_accel", "serve", "-m", str(yolov5n_pt), "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--data-dir", str(tmp_path / "d")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        seen = [proc.stdout.readline() for _ in range(1)]
        while not seen[-1].startswith("serving on") and seen[-1] and len(seen) < 20:
            seen.append(proc.stdout.readline())
        line = seen[-1]
        assert line.startswith("serving on http://127.0.0.1:"), seen
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        assert port != 0
        deadline = time.time() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
                break
            except httpx.TransportError:
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
