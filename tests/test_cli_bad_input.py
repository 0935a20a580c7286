"""Bad input: one red line, exit code 2, no traceback, nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from yolo_accel.cli import app

runner = CliRunner()


def _one_error_line(res):
    text = res.output.strip()
    assert res.exit_code == 2, text
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines[-1].startswith("error:"), text
    return lines[-1]


@pytest.fixture
def bad_files(tmp_path, yolov5n_pt):
    text_pt = tmp_path / "notes.pt"
    text_pt.write_text("this is not a checkpoint\n")
    truncated = tmp_path / "half.pt"
    data = yolov5n_pt.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    rnd = tmp_path / "random.onnx"
    rnd.write_bytes(np.random.default_rng(0).bytes(4096))
    # a valid ONNX model whose input is 2-D: not an image detector
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    flat = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(flat))
    empty_img = tmp_path / "empty.jpg"
    empty_img.write_bytes(b"")
    junk_img = tmp_path / "junk.jpg"
    junk_img.write_bytes(b"\xff\xd8 not really a jpeg")
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    return {
        "text_pt": text_pt,
        "truncated": truncated,
        "random_onnx": rnd,
        "flat_onnx": flat,
        "empty_img": empty_img,
        "junk_img": junk_img,
        "empty_dir": empty_dir,
    }


@pytest.mark.parametrize(
    "case,expect",
    [
        ("missing_model", "model file not found"),
        ("text_pt", "not a valid PyTorch checkpoint"),
        ("truncated", "not a valid PyTorch checkpoint"),
        ("random_onnx", "not a valid ONNX file"),
        ("flat_onnx", "2 dimensions"),
        ("empty_img", "empty (0 bytes)"),
        ("junk_img", "cannot decode image"),
        ("empty_dir", "no images in folder"),
        ("missing_source", "source not found"),
        ("unknown_class", "unknown class name 'spaceship'"),
        ("class_id_range", "class id 80 is out of range"),
        ("unknown_backend", "known backends: torch, onnxruntime"),
        ("bad_device", "unknown device"),
        ("half_on_cpu", "--half needs a CUDA device"),
    ],
)
def test_predict_bad_input(case, expect, bad_files, yolov5n_pt, sample_images, tmp_path):
    model, source, extra = str(yolov5n_pt), str(sample_images[0]), []
    if case == "missing_model":
        model = str(tmp_path / "nope.pt")
    elif case in ("text_pt", "truncated", "random_onnx", "flat_onnx"):
        model = str(bad_files[case])
    elif case in ("empty_img", "junk_img", "empty_dir"):
        source = str(bad_files[case])
    elif case == "missing_source":
        source = str(tmp_path / "missing.jpg")
    elif case == "unknown_class":
        extra = ["--classes", "car,spaceship"]
    elif case == "class_id_range":
        extra = ["--classes", "80"]
    elif case == "unknown_backend":
        extra = ["--backend", "tensorflow"]
    elif case == "bad_device":
        extra = ["--device", "tpu"]
    elif case == "half_on_cpu":
        extra = ["--half"]
    save = tmp_path / "out.json"
    res = runner.invoke(app, ["predict", source, "--model", model, "--save-json", str(save), *extra])
    line = _one_error_line(res)
    assert expect in line
    assert not save.exists()


def test_cuda_without_cuda_is_one_line(yolov5n_pt, sample_images):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for backend in ("torch", "onnxruntime"):
        res = runner.invoke(
            app,
            ["predict", str(sample_images[0]), "--model", str(yolov5n_pt), "--backend", backend, "--device", "cuda"],
        )
        line = _one_error_line(res)
        assert "CUDA" in line


def test_export_bad_input(bad_files, tmp_path, yolov5n_pt):
    for model, expect in (
        (bad_files["truncated"], "not a valid PyTorch checkpoint"),
        (tmp_path / "nope.pt", "model file not found"),
    ):
        out = tmp_path / "x.onnx"
        res = runner.invoke(app, ["export", str(model), "--output", str(out)])
        assert expect in _one_error_line(res)
        assert not out.exists()
    res = runner.invoke(app, ["export", str(yolov5n_pt), "--half", "--output", str(tmp_path / "h.onnx")])
    assert "needs a CUDA device" in _one_error_line(res)
    res = runner.invoke(app, ["export", str(yolov5n_pt), "--format", "tflite"])
    assert "unknown --format" in _one_error_line(res)


def test_imgsz_not_stride_multiple_rounds_up_with_warning(yolov5n_pt, sample_images, tmp_path):
    import json

    save = tmp_path / "p.json"
    res = runner.invoke(
        app, ["predict", str(sample_images[0]), "--model", str(yolov5n_pt), "--imgsz", "300", "--save-json", str(save)]
    )
    assert res.exit_code == 0, res.output
    assert "not a multiple of the model stride 32: using 320" in res.output
    assert json.loads(save.read_text())["settings"]["imgsz"] == [320, 320]


def test_real_process_prints_no_traceback(tmp_path, bad_files):
    """The installed console script, end to end: stderr is exactly one line."""
    exe = os.path.join(os.path.dirname(sys.executable), "yolo-accel")
    proc = subprocess.run(
        [exe, "predict", "x.jpg", "--model", str(bad_files["truncated"])], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.strip()] == [proc.stderr.strip()]
    assert proc.stderr.startswith("error:")


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "IMAGE", "--imgsz", "100000"],
        ["video", "VIDEO", "--imgsz", "100000"],
        ["validate", "--data", "DATA", "--imgsz", "100000"],
        ["bench", "--imgsz", "100000"],
        ["serve", "--imgsz", "100000"],
        ["bench", "--frame-size", "100000x100000"],
    ],
)
def test_a_huge_input_size_is_one_line_before_any_work(command, yolov5n_pt, sample_images, assets_root, tmp_path):
    """Before the cap, --imgsz 100000 was a traceback (predict, validate, bench) or a hang (video, serve)."""
    subs = {
        "IMAGE": str(sample_images[0]),
        "VIDEO": str(assets_root / "videos" / "highway_traffic_720p.mp4"),
        "DATA": str(assets_root / "datasets" / "coco8" / "data.yaml"),
    }
    args = [subs.get(a, a) for a in command] + ["-m", str(yolov5n_pt)]
    if command[0] == "serve":
        args += ["--data-dir", str(tmp_path / "d")]
    line = _one_error_line(runner.invoke(app, args))
    assert "at most 8192 pixels" in line or "at most 16384 pixels a side" in line


@pytest.mark.parametrize("hw", [(100_000, 1), (1, 100_000), (3, 20_000)])
@pytest.mark.parametrize("square", [False, True])
def test_an_extreme_aspect_ratio_is_letterboxed(hw, square, yolov5n_pt, tmp_path):
    """A 1 x 100,000 image (its short side rounds to 0 pixels at 640, where OpenCV's resize and
    Ultralytics' letterbox fail) is kept one pixel wide: the input has the planned shape with
    non-negative padding, predict exits 0, and any box it gives lies inside the image."""
    import json

    import cv2

    from yolo_accel.ops.letterbox import letterbox, rect_shape

    img = np.full((*hw, 3), 114, np.uint8)
    shape = (640, 640) if square else rect_shape([hw], (640, 640), 32)
    out, info = letterbox(img, shape)
    assert out.shape[:2] == shape and min(out.shape[:2]) >= 32 and info.ratio > 0
    top, left = info.pad[1], info.pad[0]
    assert top >= 0 and left >= 0 and top <= shape[0] and left <= shape[1]
    path = tmp_path / "extreme.png"
    cv2.imwrite(str(path), img)
    extra = ["--square"] if square else []
    res = runner.invoke(
        app, ["predict", str(path), "-m", str(yolov5n_pt), "--save-json", str(tmp_path / "d.json"), *extra]
    )
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "d.json").read_text())
    (image,) = report["images"]
    for det in image["detections"]:
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 <= x2 <= hw[1] and 0 <= y1 <= y2 <= hw[0]


@pytest.mark.parametrize("fmt", ["onnx", "compiled"])
def test_int8_on_a_format_without_it_is_refused(fmt, yolov5n_pt, tmp_path):
    """`export --int8` with ONNX used to export FP32 and exit 0."""
    out = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", str(yolov5n_pt), "--format", fmt, "--int8", "-o", str(out)])
    assert "--int8 applies to --format engine and openvino" in _one_error_line(res) and not out.exists()


def _partial_assets(root, assets_root, parts):
    for rel in parts:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(assets_root / rel)
    return root


def test_demo_with_a_partial_assets_folder_names_what_is_missing_and_writes_nothing(assets_root, tmp_path, monkeypatch):
    partial = _partial_assets(tmp_path / "assets", assets_root, ["models/yolov5n.pt", "images"])
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(runner.invoke(app, ["demo", "--assets", str(partial)]))
    assert "datasets/coco128/data.yaml" in line and "videos/highway_traffic_720p.mp4" in line
    assert "models/yolov5n.pt" not in line.split(" in ")[0]  # what is there is not called missing
    assert not (tmp_path / "runs").exists()


def test_demo_failing_mid_run_leaves_no_half_filled_run_folder(assets_root, tmp_path, monkeypatch):
    import shutil

    partial = _partial_assets(
        tmp_path / "assets", assets_root, ["models/yolov5n.pt", "images", "videos/highway_traffic_720p.mp4"]
    )
    # a coco128 without one label: the export and both predictions run and write, then validate refuses it
    data = partial / "datasets" / "coco128"
    (data / "images").mkdir(parents=True)
    shutil.copy(assets_root / "images" / "bus.jpg", data / "images" / "bus.jpg")
    (data / "data.yaml").write_text(f"path: {data}\nval: images\nnames: {{0: person}}\n")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["demo", "--assets", str(partial)])
    line = _one_error_line(res)
    assert "label" in line
    assert "exported" in res.output  # the failure came after files were written
    assert list((tmp_path / "runs" / "demo").iterdir()) == []


def test_duplicate_coco_image_ids_are_one_line(yolov5n_pt, assets_root, tmp_path):
    import json

    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("bus.jpg", "zidane.jpg"):
        (folder / name).symlink_to(assets_root / "images" / name)
    ann = {
        "images": [{"id": 7, "file_name": "bus.jpg"}, {"id": 7, "file_name": "zidane.jpg"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 0, "bbox": [10, 10, 50, 80], "iscrowd": 0}],
        "categories": [{"id": 0, "name": "person"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    out = tmp_path / "report"
    res = runner.invoke(
        app, ["validate", "--model", str(yolov5n_pt), "--data", str(tmp_path / "ann.json"), "--report-dir", str(out)]
    )
    line = _one_error_line(res)
    assert "same `id` 7" in line
    assert not out.exists()


def test_a_video_without_frames_is_one_line_and_writes_nothing(yolov5n_pt, tmp_path):
    import cv2

    empty = tmp_path / "zero.avi"  # a real container OpenCV opens, with no frame in it
    w = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    w.release()
    assert cv2.VideoCapture(str(empty)).isOpened()
    out = tmp_path / "out"
    out.mkdir()
    res = runner.invoke(
        app,
        ["video", str(empty), "-m", str(yolov5n_pt), "-o", str(out / "o.mp4"), "--summary", str(out / "s.json")],
    )
    assert "has no frames" in _one_error_line(res)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    "option,value,expect",
    [
        ("--line", "inf,0,100,100", "finite pixels"),
        ("--line", "1e400,0,100,100", "finite pixels"),
        ("--zone", "0,0,inf,0,0,100", "finite pixels"),
        ("--line", "5000,5000,6000,6000", "outside the 1280x720 frame"),
        ("--zone", "2000,0,3000,0,3000,100", "outside the 1280x720 frame"),
    ],
)
def test_video_lines_and_zones_must_be_finite_and_in_the_frame(
    option, value, expect, yolov5n_pt, assets_root, tmp_path
):
    video = assets_root / "videos" / "highway_traffic_720p.mp4"
    summary = tmp_path / "s.json"
    res = runner.invoke(
        app, ["video", str(video), "-m", str(yolov5n_pt), "--max-frames", "2", option, value, "--summary", str(summary)]
    )
    assert expect in _one_error_line(res)
    assert not summary.exists()


def test_a_line_across_the_frame_edge_or_a_zone_holding_the_frame_is_kept(yolov5n_pt, assets_root, tmp_path):
    video = assets_root / "videos" / "highway_traffic_720p.mp4"
    summary = tmp_path / "s.json"
    res = runner.invoke(
        app,
        [
            *["video", str(video), "-m", str(yolov5n_pt), "--max-frames", "1", "--summary", str(summary)],
            *["--line", "-10,360,2000,360", "--zone", "-10,-10,5000,-10,5000,5000,-10,5000"],
        ],
    )
    assert res.exit_code == 0, res.output
    import json

    settings = json.loads(summary.read_text())["settings"]
    assert settings["lines"] == ["-10,360,2000,360"] and settings["zones"] == ["-10,-10,5000,-10,5000,5000,-10,5000"]
