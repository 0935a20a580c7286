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
