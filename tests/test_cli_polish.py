"""What a user sees at the command line: version and help flags, the video hint, predict's warm-up,
bench's spread warning and its report for a single batch size."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from typer.testing import CliRunner

from yolo_accel.cli import app
from yolo_accel.speed import NOISY_CV, Stats, spread_note

runner = CliRunner()


def test_version_and_short_help():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"yolo-accel {metadata.version('yolo-accel')}"
    root = runner.invoke(app, ["-h"])
    assert root.exit_code == 0
    # the commands are listed in the order of the job
    order = [root.output.index(f" {c} ") for c in ("export", "predict", "validate", "bench", "video", "report")]
    assert order == sorted(order)
    sub = runner.invoke(app, ["validate", "-h"])
    assert sub.exit_code == 0 and "--speed-metric" in sub.output


def _help(*cmd: str) -> str:
    """--help as one line of words (Rich's box drawing and line wrapping removed)."""
    return " ".join(runner.invoke(app, [*cmd, "--help"]).output.replace("│", " ").split())


def test_help_names_every_backend_and_says_why_defaults_differ():
    for cmd in ("predict", "video"):
        text = _help(cmd)
        for name in ("torch (.pt)", "onnxruntime (.onnx)", "compiled (.pt2", "tensorrt (.engine)"):
            assert name in text, (cmd, name)
    text = _help("validate")
    assert "tensorrt (.engine)" in text and "-iobind" in text and "not predict's 0.45" in text


@pytest.mark.parametrize("source", ["clip.mp4", "cam.MKV", "rtsp://10.0.0.2/stream1"])
def test_predict_given_a_video_points_to_the_video_command(source, tmp_path, yolov5n_pt):
    if "://" not in source:
        (tmp_path / source).write_bytes(b"\0" * 64)
        source = str(tmp_path / source)
    res = runner.invoke(app, ["predict", source, "-m", str(yolov5n_pt)])
    assert res.exit_code == 2
    assert "yolo-accel video" in res.output and "Traceback" not in res.output


def test_predict_warms_up_before_it_times(monkeypatch, sample_images, yolov5n_pt):
    from yolo_accel.detector import Detector

    calls = []
    real = Detector.predict

    def spy(self, images):
        calls.append(1)
        return real(self, images)

    monkeypatch.setattr(Detector, "predict", spy)
    res = runner.invoke(app, ["predict", str(sample_images[0]), "-m", str(yolov5n_pt), "--warmup", "3"])
    assert res.exit_code == 0, res.output
    assert len(calls) == 1 + 3
    calls.clear()
    res = runner.invoke(app, ["predict", str(sample_images[0]), "-m", str(yolov5n_pt), "--warmup", "0"])
    assert res.exit_code == 0 and len(calls) == 1


def test_spread_note_flags_a_noisy_sample_only():
    steady = Stats.of([10.0 + 0.01 * (i % 3) for i in range(50)])
    noisy = Stats.of([10.0] * 45 + [30.0] * 5)
    assert steady.cv < NOISY_CV and spread_note(steady, "model-only") is None
    assert noisy.cv > NOISY_CV
    note = spread_note(noisy, "model-only")
    assert note and f"{noisy.cv:.0%}" in note


def test_bench_with_one_batch_size_draws_no_throughput_curve_and_lists_spread_warnings(
    tmp_path, yolov5n_pt, monkeypatch
):
    import yolo_accel.speed as speed

    monkeypatch.setattr(speed, "NOISY_CV", -1.0)  # every row counts as noisy: the warning path runs
    args = ["-m", str(yolov5n_pt), "--backends", "torch", "--iters", "3", "--warmup", "1", "--e2e-iters", "3"]
    res = runner.invoke(app, ["bench", *args, "--report-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "warning: torch batch 1: model-only times spread widely" in " ".join(res.output.split())
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["rows"][0]["warnings"]
    page = (tmp_path / "bench.html").read_text()
    assert "alt='throughput'" not in page and "alt='latency'" in page
    assert "<h2>Warnings</h2>" in page and "Warnings:" in (tmp_path / "bench.md").read_text()
    # each timing definition is stated once in the report's header
    md = (tmp_path / "bench.md").read_text()
    assert md.count("End-to-end:") == 1 and md.count("Model-only:") == 1


def test_bench_table_fits_80_columns_with_the_longest_variant_name_whole():
    """On the H200 report in bench/results (every torch variant, three batch sizes)."""
    from pathlib import Path

    from rich.console import Console

    from yolo_accel.console import bench_table

    report = json.loads((Path(__file__).parents[1] / "bench/results/h200-backends/h200-yolov8n.json").read_text())
    console = Console(width=80, record=True)
    console.print(bench_table(report))
    text = console.export_text()
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert text.count("torch-fp16-cl-compile-graph ") == 3 and "12,625" in text


def test_fps_overlay_is_optional(sample_images):
    """With --no-fps-overlay the annotated frame depends only on the frame and its detections; with it
    the FPS shows."""
    import numpy as np
    import supervision as sv

    from yolo_accel.images import read_image
    from yolo_accel.video.counting import Counter, parse_line
    from yolo_accel.video.processor import Annotator

    img = read_image(sample_images[0])
    d = sv.Detections(
        xyxy=np.array([[100, 300, 300, 600], [110, 305, 310, 610]], np.float32),
        confidence=np.array([0.9, 0.8], np.float32),
        class_id=np.array([0, 0]),
        tracker_id=np.array([1, 2]),
    )
    names = {0: "person"}

    def draw(hud_fps: bool, fps: float) -> np.ndarray:
        counter = Counter([parse_line("0,500,810,500", 1)], [], names)
        return Annotator(names, counter, hud=True, hud_fps=hud_fps).draw(img.copy(), d, fps)

    assert np.array_equal(draw(False, 12.3), draw(False, 456.7))
    assert not np.array_equal(draw(True, 12.3), draw(True, 456.7))
