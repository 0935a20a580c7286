"""ONNX export: opsets, dynamic axes, metadata, parity, no overwrite, nothing left behind."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from conftest import read_bgr
from yolo_accel import Detector
from yolo_accel.cli import app
from yolo_accel.errors import ExportError, OutputExistsError
from yolo_accel.export.onnx import OnnxExportSettings, cached_onnx, export_onnx
from yolo_accel.model import file_sha256, load_pytorch

runner = CliRunner()


@pytest.mark.parametrize("opset", [12, 17])
def test_static_export_single_file_metadata_and_parity(tmp_path, yolov5n_pt, opset):
    out = tmp_path / "m.onnx"
    r = export_onnx(yolov5n_pt, out, OnnxExportSettings(opset=opset))
    assert r.ok and r.parity.passed and r.parity.n_ref >= 7  # bus + zidane really have detections
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # one self-contained file
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == opset
    assert [o.name for o in proto.graph.output] == ["output0"]
    meta = {m.key: m.value for m in proto.metadata_props}
    _, info = load_pytorch(yolov5n_pt)
    assert {int(k): v for k, v in json.loads(meta["names"]).items()} == info.names
    assert meta["stride"] == "32" and json.loads(meta["imgsz"]) == [640, 640] and meta["task"] == "detect"
    assert meta["source_sha256"] == file_sha256(yolov5n_pt)
    assert json.loads(meta["export_settings"])["opset"] == opset
    assert meta["yolo_accel_version"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [1, 3, 640, 640]
    assert sess.get_outputs()[0].shape == [1, 25200, 85]


def test_dynamic_export_really_takes_other_sizes(tmp_path, yolov5n_pt, sample_images):
    """Every axis declared dynamic is exercised: batch 2 and a 320x416 input, against PyTorch."""
    out = tmp_path / "dyn.onnx"
    assert export_onnx(yolov5n_pt, out, OnnxExportSettings(dynamic=True)).ok
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    with Detector(yolov5n_pt, imgsz=416) as ref:
        imgs = [read_bgr(p) for p in sample_images]
        for batch in (ref.preprocess(imgs[:1])[0], np.concatenate([ref.preprocess([im])[0] for im in imgs[1:] * 2])):
            want = ref.forward(batch)
            (got,) = sess.run(None, {"images": batch})
            assert got.shape == want.shape
            assert np.abs(got - want).max() < 5e-3
    assert ref.rect  # the 1280x720 zidane went in as 416x256, not padded to a square


@pytest.mark.parametrize("name", ["yolov8n", "yolo11n"])
@pytest.mark.slow
def test_ultralytics_architectures_raw_parity(tmp_path, ultralytics_pts, sample_images, name):
    out = tmp_path / f"{name}.onnx"
    r = export_onnx(ultralytics_pts[name], out, OnnxExportSettings())
    assert r.ok
    meta = {m.key: m.value for m in onnx.load(str(out)).metadata_props}
    assert meta["layout"] == "v8" and meta["family"] == "ultralytics"
    with Detector(ultralytics_pts[name], rect=False) as ref, Detector(out) as test:
        for p in sample_images:
            batch, _ = ref.preprocess([read_bgr(p)])
            a, b = ref.forward(batch), test.forward(batch)
            assert a.shape == b.shape == (1, 84, 8400)
            cos = float((a.ravel() @ b.ravel()) / np.linalg.norm(a) / np.linalg.norm(b))
            print(f"\n{name} {p.name}: max|Δ| {np.abs(a - b).max():.2e} cosine {cos:.8f}")
            assert np.abs(a - b).max() < 1e-2  # boxes are in pixels (0..640)
            assert cos > 0.99999


def test_existing_output_needs_force(tmp_path, yolov5n_pt):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        export_onnx(yolov5n_pt, out, check=False)
    assert out.read_bytes() == b"keep me"
    assert export_onnx(yolov5n_pt, out, force=True, check=False).ok
    assert out.stat().st_size > 1_000_000


def test_failed_export_leaves_nothing(tmp_path, yolov5n_pt, monkeypatch):
    import onnxslim

    def broken(*a, **k):
        raise RuntimeError("simulated failure inside the simplifier")

    monkeypatch.setattr(onnxslim, "slim", broken)
    with pytest.raises(ExportError, match="simulated failure"):
        export_onnx(yolov5n_pt, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def _damage(model_proto, factor=3.0):
    """Scale the first convolution's weights: a plausible corruption that parity must catch."""
    from onnx import numpy_helper

    conv = next(n for n in model_proto.graph.node if n.op_type == "Conv")
    init = next(i for i in model_proto.graph.initializer if i.name == conv.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, init.name))
    return model_proto


def test_parity_failure_exits_1_and_writes_nothing(tmp_path, yolov5n_pt, monkeypatch):
    import onnxslim

    real = onnxslim.slim
    monkeypatch.setattr(onnxslim, "slim", lambda m, *a, **k: _damage(real(m, *a, **k)))
    out = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", str(yolov5n_pt), "--output", str(out), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 1, res.output
    assert "parity FAILED" in res.output
    assert not out.exists()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] is False and report["parity"]["match_rate"] < 0.98


def test_cli_export_prints_parity_table(tmp_path, yolov5n_pt):
    out = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", str(yolov5n_pt), "--output", str(out), "--opset", "12", "--no-simplify"])
    assert res.exit_code == 0, res.output
    assert "bus.jpg" in res.output and "zidane.jpg" in res.output and "100.0%" in res.output
    assert out.is_file()


def test_cached_onnx_exports_once(yolov5n_pt, monkeypatch):
    first = cached_onnx(yolov5n_pt, imgsz=320)
    stamp = first.stat().st_mtime_ns

    def no_second_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr("yolo_accel.export.onnx.export_onnx", no_second_export)
    assert cached_onnx(yolov5n_pt, imgsz=320) == first
    assert first.stat().st_mtime_ns == stamp
    assert "-" in first.stem and file_sha256(yolov5n_pt)[:8] in first.name
