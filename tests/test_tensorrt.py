"""TensorRT: what can be checked without TensorRT (it cannot be installed on this project's machines).

Nothing here shows that an engine builds or runs: these tests cover the command line handed to
trtexec, the INT8 calibration batches, the engine naming, the metadata and the error paths.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from tests.conftest import read_bgr
from typer.testing import CliRunner

from yolo_accel._deps import available
from yolo_accel.backends.tensorrt import engine_info
from yolo_accel.cli import app
from yolo_accel.errors import MissingDependencyError, ModelError, SettingsError
from yolo_accel.export.tensorrt import (
    EngineExportSettings,
    calibration_batches,
    choose_builder,
    engine_name,
    trtexec_command,
)
from yolo_accel.ops import preprocess

runner = CliRunner()
no_tensorrt = pytest.mark.skipif(
    available("tensorrt") or shutil.which("trtexec") is not None, reason="TensorRT is installed here"
)


def test_trtexec_command_matches_the_onnx_input(tmp_path, yolov5n_onnx):
    name = onnx.load(str(yolov5n_onnx)).graph.input[0].name  # the profile must name the real input
    static = trtexec_command(yolov5n_onnx, tmp_path / "m.engine", EngineExportSettings(), (640, 640), tmp_path / "t")
    assert (
        static[0] == "trtexec"
        and f"--onnx={yolov5n_onnx}" in static
        and f"--saveEngine={tmp_path / 'm.engine'}" in static
    )
    assert (
        "--fp16" in static
        and "--memPoolSize=workspace:4096M" in static
        and f"--timingCacheFile={tmp_path / 't'}" in static
    )
    assert f"--minShapes={name}:1x3x640x640" in static and f"--maxShapes={name}:1x3x640x640" in static
    dyn = EngineExportSettings(half=False, dynamic=True, min_batch=2, opt_batch=8, max_batch=16, workspace_gb=1.5)
    cmd = trtexec_command(yolov5n_onnx, tmp_path / "m.engine", dyn, (384, 640), tmp_path / "t")
    assert "--fp16" not in cmd and "--memPoolSize=workspace:1536M" in cmd
    assert [c for c in cmd if "Shapes=" in c] == [
        f"--minShapes={name}:2x3x384x640",
        f"--optShapes={name}:8x3x384x640",
        f"--maxShapes={name}:16x3x384x640",
    ]


def test_engine_names_record_tensorrt_and_the_gpu():
    s = EngineExportSettings(dynamic=True, max_batch=64)
    a = engine_name("yolov5n", s, "10.3.0", "NVIDIA H100 80GB HBM3", "sm90")
    b = engine_name("yolov5n", s, "10.4.0", "NVIDIA H100 80GB HBM3", "sm90")
    c = engine_name("yolov5n", s, "10.3.0", "NVIDIA A100-SXM4-40GB", "sm80")
    assert len({a, b, c}) == 3  # engines are not portable: another TensorRT or GPU is another file
    assert a.endswith(".engine") and "trt10.3.0" in a and "H100" in a and "sm90" in a and "b1-64" in a
    assert " " not in a and "/" not in a
    int8 = engine_name("yolov5n", EngineExportSettings(int8=True, calib_data="x"), "10.3.0", "G", "sm90")
    assert "-int8-b1-" in int8


def test_calibration_batches_are_inference_inputs(assets_root):
    data = assets_root / "datasets" / "coco8" / "data.yaml"
    from yolo_accel.evaluate.datasets import load_dataset

    items = load_dataset(data).items  # coco8's val split: 4 images
    batches = list(calibration_batches(data, n_images=3, batch=2, imgsz=(640, 640)))
    assert len(items) >= 3 and len(batches) == 1  # 3 images in batches of 2: the short last batch is dropped
    batches = list(calibration_batches(data, n_images=8, batch=2, imgsz=(640, 640)))
    assert len(batches) == len(items) // 2
    for k, b in enumerate(batches):
        assert b.shape == (2, 3, 640, 640) and b.dtype == np.float32 and b.min() >= 0.0 and b.max() <= 1.0
        # exactly what the Detector feeds a square-input backend
        ref, _ = preprocess([read_bgr(it.path) for it in items[2 * k : 2 * k + 2]], (640, 640), 32, rect=False)
        assert np.array_equal(b, ref)
    with pytest.raises(SettingsError, match="fewer than one batch"):
        calibration_batches(data, n_images=2, batch=4, imgsz=(640, 640))


def test_settings_are_checked():
    with pytest.raises(SettingsError, match="--calib-data"):
        EngineExportSettings(int8=True).validate()
    with pytest.raises(SettingsError, match="--min-batch"):
        EngineExportSettings(dynamic=True, min_batch=8, opt_batch=4, max_batch=16).validate()
    with pytest.raises(SettingsError, match="--builder"):
        EngineExportSettings(builder="onnx2trt").validate()


@no_tensorrt
def test_missing_tensorrt_is_one_line(tmp_path, yolov5n_pt, monkeypatch):
    with pytest.raises(MissingDependencyError, match="pip install tensorrt"):
        choose_builder("auto", int8=False)
    with pytest.raises(MissingDependencyError, match="Python module"):
        choose_builder("python", int8=False)
    # with trtexec on PATH, INT8 still needs the Python module (the calibrator runs through it)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "trtexec").write_text("#!/bin/sh\nexit 0\n")
    (fake / "trtexec").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{__import__('os').environ['PATH']}")
    assert choose_builder("auto", int8=False) == "trtexec"
    with pytest.raises(MissingDependencyError, match="INT8 calibration"):
        choose_builder("auto", int8=True)


@no_tensorrt
@pytest.mark.parametrize(
    "args",
    [
        ["export", "{pt}", "--format", "engine", "--device", "cuda", "-o", "{out}"],
        ["predict", "{img}", "-m", "{pt}", "--backend", "tensorrt", "--device", "cuda"],
        ["bench", "-m", "{pt}", "--backends", "torch,tensorrt", "--report-dir", "{out}.d"],
        [
            "validate",
            "-m",
            "{pt}",
            "--data",
            "{data}",
            "--backends",
            "tensorrt",
            "--gates",
            "tensorrt",
            "--report-dir",
            "{out}.d",
        ],
    ],
    ids=["export", "predict", "bench", "validate"],
)
def test_every_entry_point_says_tensorrt_is_missing(args, tmp_path, yolov5n_pt, sample_images, assets_root):
    out = tmp_path / "m.engine"
    fill = {
        "pt": yolov5n_pt,
        "out": out,
        "img": sample_images[0],
        "data": assets_root / "datasets" / "coco8" / "data.yaml",
    }
    res = runner.invoke(app, [a.format(**fill) for a in args])
    text = res.output.strip()
    assert res.exit_code == 2, text
    assert "Traceback" not in text
    assert text.splitlines()[-1].startswith("error:") and "pip install tensorrt" in text.splitlines()[-1]
    assert not out.exists() and not list(tmp_path.glob("*.partial*"))


def test_engine_metadata(tmp_path):
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match=r"m\.engine\.json"):
        engine_info(eng, {})
    meta = {
        "names": {"0": "person", "1": "car"},
        "imgsz": [640, 640],
        "layout": "v5",
        "batch": None,
        "precision": "fp16",
    }
    info = engine_info(eng, meta)
    assert info.names == {0: "person", 1: "car"} and info.imgsz == (640, 640) and info.layout == "v5"
    assert info.batch is None and info.half is False  # engines take FP32 input; FP16 is inside


def test_doctor_reports_tensorrt():
    res = runner.invoke(app, ["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(res.output)["checks"]}
    row = checks["tensorrt (Python)"]
    assert row["status"] == ("OK" if available("tensorrt") else "WARN")  # optional: a warning, not an error
    assert available("tensorrt") or "pip install tensorrt" in row["fix"]
    assert "trtexec" in checks
