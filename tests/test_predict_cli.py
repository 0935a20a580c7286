"""`yolo-accel predict`: folder and glob sources, JSON and annotated images, class filter, ONNX cache."""

from __future__ import annotations

import json

import cv2
import numpy as np
from typer.testing import CliRunner

from yolo_accel import Detector
from yolo_accel.cli import app

runner = CliRunner()


def test_predict_folder_json_and_images(tmp_path, assets_root, yolov5n_pt):
    folder = assets_root / "images"
    save_dir, save_json = tmp_path / "annotated", tmp_path / "dets.json"
    res = runner.invoke(
        app,
        [
            "predict",
            str(folder),
            "--model",
            str(yolov5n_pt),
            "--save-dir",
            str(save_dir),
            "--save-json",
            str(save_json),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "bus.jpg" in res.output and "zidane.jpg" in res.output
    data = json.loads(save_json.read_text())
    assert [rec["image"].split("/")[-1] for rec in data["images"]] == ["bus.jpg", "zidane.jpg"]
    with Detector(yolov5n_pt) as det:
        for rec in data["images"]:
            img = cv2.imread(rec["image"])
            assert (rec["height"], rec["width"]) == img.shape[:2]
            want = det.predict(img)[0]
            got = np.array([d["xyxy"] for d in rec["detections"]])
            np.testing.assert_allclose(got, want.xyxy, atol=0.01)
            assert [d["class_name"] for d in rec["detections"]] == want.class_names
            assert set(rec["timings_ms"]) == {"pre", "infer", "post"}
            # every box lies inside the original image
            assert (got[:, [0, 2]] <= rec["width"]).all() and (got[:, [1, 3]] <= rec["height"]).all()
            annotated = cv2.imread(str(save_dir / rec["image"].split("/")[-1]))
            assert annotated.shape == img.shape and not np.array_equal(annotated, img)


def test_predict_glob_with_class_names_filter(tmp_path, assets_root, yolov5n_pt):
    pattern = str(assets_root / "datasets" / "coco128" / "images" / "train2017" / "0000000000[0-4]*.jpg")
    save_json = tmp_path / "d.json"
    res = runner.invoke(
        app,
        [
            "predict",
            pattern,
            "--model",
            str(yolov5n_pt),
            "--classes",
            "person,2",
            "--conf",
            "0.3",
            "--max-det",
            "3",
            "--save-json",
            str(save_json),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(save_json.read_text())
    assert len(data["images"]) >= 5
    assert data["settings"]["classes"] == [0, 2]
    all_dets = [d for rec in data["images"] for d in rec["detections"]]
    assert all_dets, "the filter should leave some persons"
    assert {d["class_name"] for d in all_dets} <= {"person", "car"}
    assert all(len(rec["detections"]) <= 3 for rec in data["images"])
    assert all(d["confidence"] > 0.3 for d in all_dets)


def test_onnxruntime_backend_from_pt_uses_the_cache(tmp_path, sample_images, yolov5n_pt, monkeypatch):
    from yolo_accel.assets import cache_dir

    args = ["predict", str(sample_images[1]), "--model", str(yolov5n_pt), "--backend", "onnxruntime", "--imgsz", "416"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "CPUExecutionProvider" in res.output  # the provider that really ran is reported
    cached = sorted((cache_dir() / "onnx").glob("yolov5n-*.onnx"))
    assert cached
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    monkeypatch.setattr(
        "yolo_accel.export.onnx.export_onnx", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-exported"))
    )
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert {p: p.stat().st_mtime_ns for p in cached} == stamps


def test_names_file_for_foreign_onnx(tmp_path, yolov5n_onnx, sample_images):
    """An ONNX file without our metadata: names come from --names (or COCO's when nc = 80)."""
    import onnx

    proto = onnx.load(str(yolov5n_onnx))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"thing{i}" for i in range(80)))
    with Detector(bare) as det:
        assert det.info.layout == "v5" and det.names[5] == "bus"
        d = det.predict(sample_images[0])[0]
        assert "bus" in d.class_names
    with Detector(bare, names_file=names) as det:
        assert "thing5" in det.predict(sample_images[0])[0].class_names
