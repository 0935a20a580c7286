"""Package-level promises: cheap import, doctor, demo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from yolo_accel.cli import app

runner = CliRunner()


def test_import_is_cheap():
    code = (
        "import sys, yolo_accel; heavy = [m for m in ('torch', 'onnxruntime', 'ultralytics', 'cv2', 'onnx') "
        "if m in sys.modules]; print(heavy); assert not heavy; yolo_accel.Detector"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_doctor_json_reports_the_real_environment():
    import onnxruntime as ort
    import torch

    res = runner.invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["torch"]["status"] == "OK" and torch.__version__ in checks["torch"]["detail"]
    assert checks["torch CUDA"]["status"] == ("OK" if torch.cuda.is_available() else "WARN")
    assert ", ".join(ort.get_available_providers()) in checks["onnxruntime"]["detail"]
    cuda_ep = "CUDAExecutionProvider" in ort.get_available_providers()
    assert checks["onnxruntime CUDA provider"]["status"] == ("OK" if cuda_ep else "WARN")
    assert checks["trtexec"]["status"] in ("OK", "WARN")
    for c in data["checks"]:
        assert c["status"] == "OK" or c["fix"], c  # every problem comes with its fix


def test_doctor_flags_both_onnxruntime_builds(monkeypatch):
    from yolo_accel import doctor

    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda d: "1.0.0" if d == "onnxruntime-gpu" else real(d))
    checks = {c.name: c for c in doctor.run_checks()}
    both = checks["onnxruntime + onnxruntime-gpu"]
    assert both.status == "WARN" and "pip uninstall" in both.fix


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, monkeypatch):
    """The whole demo once, beside an earlier run's folder: it writes a new one and leaves that one alone
    (one run proves both; a second full demo only to see the folder named run2 cost as much again)."""
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "runs" / "demo" / "run"
    earlier.mkdir(parents=True)
    (earlier / "demo.json").write_text('{"earlier": true}')
    res = runner.invoke(app, ["demo"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in earlier.iterdir()) == ["demo.json"]  # the earlier run is not overwritten
    assert json.loads((earlier / "demo.json").read_text()) == {"earlier": True}
    run = tmp_path / "runs" / "demo" / "run2"
    summary = json.loads((run / "demo.json").read_text())
    assert summary["parity"]["passed"] and summary["parity"]["match_rate"] >= 0.98
    assert (run / "yolov5n.onnx").is_file()
    for backend in ("torch", "onnxruntime"):
        rows = summary["predict"][backend]
        assert [r["image"] for r in rows] == ["bus.jpg", "zidane.jpg"]
        assert (run / f"predict-{backend}" / "bus.jpg").is_file()
        names = [d["class_name"] for d in rows[0]["detections"]]
        assert "bus" in names and names.count("person") >= 3  # what YOLOv5n sees in bus.jpg
    assert summary["validate"]["verdict"] in ("PASS", "FAIL")  # speed depends on the machine; the rest is checked
    val = json.loads((run / "validate" / "report.json").read_text())
    assert val["backends"]["onnxruntime"]["similarity"]["match_rate"] >= 0.99
    assert (run / "validate" / "report.html").is_file() and "report.html" in res.output
    assert summary["video"]["frames"] == 150 and (run / "traffic.mp4").stat().st_size > 100_000
