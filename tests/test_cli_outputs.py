"""Where commands write: every output path is checked before any work, a bad one is one `error:` line
(exit 2), nothing is silently overwritten and nothing half-written is left, also when a write fails
during the run."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from yolo_accel.cli import app

runner = CliRunner()


def _snapshot(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def unwritable() -> Path:
    """A folder this process cannot create files in (root ignores file modes: /sys refuses even root)."""
    import tempfile

    if os.geteuid() != 0:
        d = Path(tempfile.mkdtemp())
        d.chmod(0o555)
        return d
    d = Path("/sys")
    try:
        fd, name = tempfile.mkstemp(dir=d)
    except OSError:
        return d
    os.close(fd)
    os.unlink(name)
    pytest.skip("no folder here refuses writes")


@pytest.fixture
def paths(tmp_path, unwritable):
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a folder\n")
    a_dir = tmp_path / "a-folder"
    a_dir.mkdir()
    existing = {name: tmp_path / name for name in ("d.json", "o.mp4", "e.jsonl", "s.json", "x.onnx", "j.json")}
    for p in existing.values():
        p.write_text("keep me\n")
    return {"file": a_file, "dir": a_dir, "ro": unwritable, "tmp": tmp_path, **existing}


def _one_error_line(res, code: int = 2) -> str:
    text = res.output.strip()
    assert res.exit_code == code, text
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines[-1].startswith("error:"), text
    return lines[-1]


def _args(command: str, p: dict, model: Path, image: Path, video: Path, option: str, value: str) -> list[str]:
    if command == "predict":
        return ["predict", str(image), "--model", str(model), option, value]
    if command == "validate":
        return ["validate", "--model", str(model), "--data", str(p["tmp"]), option, value]
    if command == "bench":
        return ["bench", "--model", str(model), option, value]
    if command == "video":
        return ["video", str(video), "--model", str(model), "--max-frames", "2", option, value]
    if command == "export":
        return ["export", str(model), option, value]
    if command == "optimize":
        data = Path(str(image)).parents[1] / "datasets" / "coco8" / "data.yaml"
        return ["optimize", str(model), "--data", str(data), "--device", "cpu", option, value]
    raise AssertionError(command)


# (command, option, path given as a template, expected words): every one must fail before any work
CASES = [
    ("predict", "--save-json", "{ro}/d.json", "cannot write in"),
    ("predict", "--save-json", "{dir}", "is a folder"),
    ("predict", "--save-json", "{file}/d.json", "is a file, not a folder"),
    ("predict", "--save-json", "{d.json}", "exists; pass --force"),
    ("predict", "--save-json", "{ro}/deep/er/d.json", "cannot write in"),
    ("predict", "--save-dir", "{file}", "is a file, not a folder"),
    ("predict", "--save-dir", "{ro}/annotated", "cannot write in"),
    ("predict", "--save-dir", "{file}/annotated", "is a file, not a folder"),
    ("predict", "--imgsz", "0", "positive"),
    ("predict", "--imgsz", "-64", "positive"),
    ("validate", "--report-dir", "{ro}/rep", "cannot write in"),
    ("validate", "--report-dir", "{file}", "is a file, not a folder"),
    ("validate", "--report-dir", "{file}/rep", "is a file, not a folder"),
    ("validate", "--imgsz", "0", "positive"),
    ("bench", "--report-dir", "{ro}/b", "cannot write in"),
    ("bench", "--report-dir", "{file}", "is a file, not a folder"),
    ("bench", "--report-dir", "{file}/b", "is a file, not a folder"),
    ("bench", "--imgsz", "0", "positive"),
    ("video", "--output", "{ro}/out.mp4", "cannot write in"),
    ("video", "--output", "{dir}", "is a folder"),
    ("video", "--output", "{o.mp4}", "exists; pass --force"),
    ("video", "--output", "{file}/out.mp4", "is a file, not a folder"),
    ("video", "--summary", "{ro}/s.json", "cannot write in"),
    ("video", "--summary", "{dir}", "is a folder"),
    ("video", "--summary", "{s.json}", "exists; pass --force"),
    ("video", "--events", "{ro}/e.jsonl", "cannot write in"),
    ("video", "--events", "{file}/e.jsonl", "is a file, not a folder"),
    ("video", "--events", "{e.jsonl}", "exists; pass --force"),
    ("video", "--save-frames", "{file}", "is a file, not a folder"),
    ("video", "--save-frames", "{ro}/frames", "cannot write in"),
    ("video", "--imgsz", "0", "positive"),
    ("video", "--duration", "0", "--duration must be positive"),
    ("video", "--duration", "-5", "--duration must be positive"),
    ("video", "--workers", "-1", "--workers must be 0 or more"),
    ("video", "--max-wait-ms", "-1", "--max-wait-ms at least 0"),
    ("video", "--batch", "0", "--batch must be at least 1"),
    ("export", "--output", "{ro}/x.onnx", "cannot write in"),
    ("export", "--output", "{dir}", "is a folder"),
    ("export", "--output", "{x.onnx}", "exists; pass --force"),
    ("export", "--output", "{file}/x.onnx", "is a file, not a folder"),
    ("export", "--json", "{ro}/j.json", "cannot write in"),
    ("export", "--json", "{dir}", "is a folder"),
    ("export", "--json", "{j.json}", "exists; pass --force"),
    ("export", "--imgsz", "0", "positive"),
    ("export", "--imgsz", "-1", "positive"),
    ("optimize", "--out", "{ro}/deploy", "cannot write in"),
    ("optimize", "--out", "{file}", "is a file"),
    ("optimize", "--out", "{file}/deploy", "is a file, not a folder"),
]


@pytest.mark.parametrize("command,option,template,expect", CASES, ids=[f"{c[0]}{c[1]}={c[2]}" for c in CASES])
def test_bad_output_paths_fail_before_any_work(command, option, template, expect, paths, yolov5n_pt, assets_root):
    value = template
    for key, path in paths.items():
        value = value.replace("{" + key + "}", str(path))
    image = assets_root / "images" / "bus.jpg"
    video = assets_root / "videos" / "highway_traffic_720p.mp4"
    before = _snapshot(paths["tmp"])
    kept = {k: paths[k].read_text() for k in ("d.json", "o.mp4", "e.jsonl", "s.json", "x.onnx", "j.json")}
    res = runner.invoke(app, _args(command, paths, yolov5n_pt, image, video, option, value))
    assert expect in _one_error_line(res)
    assert _snapshot(paths["tmp"]) == before  # nothing created, nothing left behind
    assert {k: paths[k].read_text() for k in kept} == kept  # nothing overwritten


@pytest.mark.parametrize("option", ["--save-json", "--output"])
def test_a_read_only_existing_file_with_force_is_refused(option, paths, yolov5n_pt, assets_root):
    """--force may replace a file, but not one in a folder that cannot be written (/proc/version as root)."""
    target = Path("/proc/version") if os.geteuid() == 0 else paths["ro"] / "existing"
    if not target.exists():
        pytest.skip("no read-only existing file here")
    if option == "--save-json":
        args = ["predict", str(assets_root / "images" / "bus.jpg"), "--model", str(yolov5n_pt)]
    else:
        args = ["video", str(assets_root / "videos" / "highway_traffic_720p.mp4"), "--model", str(yolov5n_pt)]
    res = runner.invoke(app, [*args, option, str(target), "--force"])
    assert "cannot write in" in _one_error_line(res)


def test_predict_keeps_an_existing_json_unless_forced(tmp_path, yolov5n_pt, sample_images):
    out = tmp_path / "d.json"
    out.write_text("my notes\n")
    res = runner.invoke(app, ["predict", str(sample_images[0]), "--model", str(yolov5n_pt), "--save-json", str(out)])
    assert "exists; pass --force" in _one_error_line(res)
    assert out.read_text() == "my notes\n"
    res = runner.invoke(
        app, ["predict", str(sample_images[0]), "--model", str(yolov5n_pt), "--save-json", str(out), "--force"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["images"][0]["detections"]


def test_reports_are_not_replaced_without_force(tmp_path, yolov5n_pt):
    (tmp_path / "bench.json").write_text("{}")
    res = runner.invoke(app, ["bench", "--model", str(yolov5n_pt), "--report-dir", str(tmp_path)])
    assert "bench.json exists; pass --force" in _one_error_line(res)
    (tmp_path / "report.md").write_text("mine")
    res = runner.invoke(
        app, ["validate", "--model", str(yolov5n_pt), "--data", str(tmp_path), "--report-dir", str(tmp_path)]
    )
    assert "report.md exists; pass --force" in _one_error_line(res)


REPORT_CASES = {
    "random-bytes": (np.random.default_rng(1).bytes(300), "not a text file"),
    "truncated-json": (b'{"kind": "bench", "rows": [', "not valid JSON"),
    "a-list": (b"[1, 2, 3]", "not a yolo-accel report"),
    "another-kind": (b'{"kind": "cats"}', "not a yolo-accel report"),
    "no-rows": (b'{"kind": "bench"}', "not a complete bench report"),
    "rows-not-a-list": (b'{"kind": "bench", "rows": 5, "settings": {}, "environment": {}}', "not a complete bench"),
    "validation-empty": (b'{"kind": "validation"}', "not a complete validation report"),
    "deep-nesting": (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    "utf16": ('{"kind": "bench"}'.encode("utf-16"), "not a text file"),
}


@pytest.mark.parametrize("case", sorted(REPORT_CASES))
def test_report_of_a_bad_json_is_one_line(tmp_path, case):
    data, expect = REPORT_CASES[case]
    (tmp_path / "bench.json").write_bytes(data)
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert expect in _one_error_line(res)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # nothing written


def test_report_needs_force_to_replace_its_pages(tmp_path):
    report = Path(__file__).parent.parent / "bench" / "results" / "cpu2-yolov5n.json"
    (tmp_path / "bench.json").write_text(report.read_text())
    assert runner.invoke(app, ["report", str(tmp_path)]).exit_code == 0
    (tmp_path / "bench.md").write_text("edited by hand")
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert "bench.md exists; pass --force" in _one_error_line(res)
    assert (tmp_path / "bench.md").read_text() == "edited by hand"
    assert runner.invoke(app, ["report", str(tmp_path), "--force"]).exit_code == 0
    assert (tmp_path / "bench.md").read_text().startswith("#")


def test_bench_where_every_row_failed_exits_1(tmp_path, yolov5n_pt, monkeypatch):
    """Every row failing (here: out of memory at every batch) is not a success: exit 1, reports still written."""
    from yolo_accel.backends.pytorch import TorchBackend

    def out_of_memory(self, batch):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(TorchBackend, "model_runner", out_of_memory)
    args = ["bench", "--model", str(yolov5n_pt), "--backends", "torch", "--batch", "1", "--iters", "3"]
    res = runner.invoke(app, [*args, "--warmup", "1", "--e2e-iters", "3", "--report-dir", str(tmp_path)])
    assert "no row was measured" in _one_error_line(res, code=1)
    assert json.loads((tmp_path / "bench.json").read_text())["rows"][0]["ok"] is False


def test_bench_of_random_bytes_exits_1_with_the_reason(tmp_path):
    bad = tmp_path / "random.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    args = ["bench", "--model", str(bad), "--backends", "onnxruntime", "--report-dir", str(tmp_path / "b")]
    res = runner.invoke(app, args)
    assert "no row was measured" in _one_error_line(res, code=1)
    assert "not a valid ONNX file" in json.loads((tmp_path / "b" / "bench.json").read_text())["rows"][0]["error"]


def test_demo_with_a_missing_model_leaves_no_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["demo", "--model", str(tmp_path / "nope" / "x.pt")])
    assert "model file not found" in _one_error_line(res)
    assert not (tmp_path / "runs" / "demo").exists() or not any((tmp_path / "runs" / "demo").iterdir())


def test_a_write_that_fails_during_validate_prints_the_results_first(tmp_path, yolov5n_pt, assets_root, monkeypatch):
    """The disk fills while the reports are written: the results are on screen, one error line, no partial file."""
    from yolo_accel import runs

    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted((assets_root / "datasets" / "coco8" / "images" / "val").glob("*.jpg"))[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
        lab = assets_root / "datasets" / "coco8" / "labels" / "val" / (p.stem + ".txt")
        (folder / lab.name).write_text(lab.read_text())

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runs, "write_text_atomic", full)
    import yolo_accel.report.files as report_files

    monkeypatch.setattr(report_files, "write_text_atomic", full)
    rep = tmp_path / "rep"
    res = runner.invoke(
        app,
        [
            "validate",
            "--model",
            str(yolov5n_pt),
            "--data",
            str(folder),
            "--backends",
            "torch",
            "--speed-iters",
            "5",  # the write that fails is the test, not the timing
            "--report-dir",
            str(rep),
        ],
    )
    line = _one_error_line(res)
    assert "No space left on device" in line
    assert "mAP50-95" in res.output  # the results came first
    assert not list(tmp_path.rglob("*.partial")) and not (rep / "report.md").exists()


def test_a_video_sink_that_fails_mid_run_fails_its_stream_only(tmp_path, yolov5n_pt, assets_root, monkeypatch):
    """The disk fills while one stream writes its MP4: that stream reports the error and leaves no file;
    the other stream finishes; nothing half-written."""
    from yolo_accel import Detector
    from yolo_accel.video import sinks
    from yolo_accel.video.engine import EngineSettings, VideoEngine
    from yolo_accel.video.processor import StreamSettings
    from yolo_accel.video.sources import open_source

    real = sinks.Mp4Writer.write

    def write(self, image):
        if self.path.name == "bad.mp4" and self.frames >= 10:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp))
        return real(self, image)

    monkeypatch.setattr(sinks.Mp4Writer, "write", write)
    clip = str(assets_root / "videos" / "highway_traffic_720p.mp4")
    det = Detector(yolov5n_pt, backend="onnxruntime", imgsz=320, classes="car,truck", rect=False)
    settings = [StreamSettings(output=str(tmp_path / name)) for name in ("bad.mp4", "good.mp4")]
    result = VideoEngine(
        det, [open_source(clip, max_frames=30) for _ in range(2)], settings, EngineSettings(batch=2, workers=0)
    ).run()
    bad, good = result["streams"]
    assert "No space left on device" in bad["error"] and good["error"] is None
    assert not (tmp_path / "bad.mp4").exists() and good["output"]["video_frames"] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.mp4"]


def test_predict_whose_image_writes_fail_mid_run_prints_its_results_first(
    tmp_path, yolov5n_pt, sample_images, monkeypatch
):
    import cv2

    calls = []

    def full_after_one(path, img, *a):
        calls.append(path)
        return len(calls) == 1  # the second write fails, as on a full disk

    monkeypatch.setattr(cv2, "imwrite", full_after_one)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sample_images:
        (folder / p.name).write_bytes(p.read_bytes())
    args = ["predict", str(folder), "--model", str(yolov5n_pt), "--save-dir", str(tmp_path / "out")]
    res = runner.invoke(app, [*args, "--save-json", str(tmp_path / "d.json")])
    assert "cannot write" in _one_error_line(res)
    assert "bus.jpg" in res.output  # the table of what was computed came first
    assert not (tmp_path / "d.json").exists()
