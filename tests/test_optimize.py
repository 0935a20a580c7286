"""`yolo-accel optimize`: the candidates a machine lists, a damaged artifact rejected by the gates, the
bundle's round trip through --deploy, the time budget, and a crashing candidate kept as a row.

The end-to-end runs go through the command in a process of its own (OpenVINO may be imported there;
see test_openvino.py for why never in pytest's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from yolo_accel.errors import DataError, SettingsError
from yolo_accel.optimize import candidates as cand
from yolo_accel.optimize import search


def _cli(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    exe = os.path.join(os.path.dirname(sys.executable), "yolo-accel")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)


# -- candidates ---------------------------------------------------------------------------------


def test_a_cpu_machine_lists_cpu_candidates_and_skips_the_gpu_ones_with_a_reason():
    listed = {c.name: c for c in cand.list_candidates("cpu")}
    assert next(iter(listed)) == "torch"  # the reference first
    for name in ("torch-fp16", "torch-fp16-cl-compile-graph", "onnxruntime-fp16-iobind", "tensorrt-fp16"):
        assert "--device cuda" in listed[name].skip
    for name in ("torch-cl", "onnxruntime"):  # installed in the test environment
        assert listed[name].skip is None
    assert listed["openvino-int8"].int8 and listed["openvino-bf16"].variant == "openvino-fp16"


def test_missing_extras_and_compiler_are_skip_reasons_naming_the_install(monkeypatch):
    real = cand._available
    monkeypatch.setattr(cand, "_available", lambda m: False if m in ("openvino", "nncf") else real(m))
    monkeypatch.setattr(cand, "_has_cxx", lambda: False)
    listed = {c.name: c for c in cand.list_candidates("cpu")}
    for name in ("openvino", "openvino-bf16", "openvino-int8"):
        assert "pip install 'yolo-accel[openvino]'" in listed[name].skip
    for name in ("torch-compile", "compiled"):
        assert "g++" in listed[name].skip
    assert listed["onnxruntime"].skip is None


def test_cuda_on_a_machine_without_a_gpu_and_unknown_names_are_one_line_errors(monkeypatch):
    monkeypatch.setattr(cand, "_cuda_available", lambda: False)
    with pytest.raises(SettingsError, match="no CUDA GPU"):
        cand.list_candidates("cuda")
    with pytest.raises(SettingsError, match="unknown candidate 'onnx'"):
        cand.list_candidates("cpu", only=["onnx"])
    kept = cand.list_candidates("cpu", only=["onnxruntime"])
    assert [c.name for c in kept] == ["torch", "onnxruntime"]


def test_a_gpu_machine_lists_the_cuda_configurations(monkeypatch):
    monkeypatch.setattr(cand, "_cuda_available", lambda: True)
    monkeypatch.setattr(cand, "_ort_has_cuda", lambda: False)
    listed = {c.name: c for c in cand.list_candidates("cuda")}
    assert listed["torch-fp16-cl-compile-graph"].skip is None
    assert "onnxruntime-gpu" in listed["onnxruntime-fp16-iobind"].skip
    assert "--device cpu" in listed["openvino-int8"].skip


# -- the search, with a clock it controls -------------------------------------------------------


def _fake_entry(name: str, ms: float, passed: bool) -> dict:
    speed = {"model_ms": {"median": ms, "p95": ms * 1.1}, "e2e_ms": {"median": ms + 5}, "speedup": 40.0 / ms}
    entry = {
        "artifact": f"/cache/{name}",
        "artifact_bytes": 1,
        "runtime": name,
        "accuracy": {"map50_95": 0.36, "map50": 0.55},
        "speed": speed,
    }
    if name != "torch":
        crit = {"criterion": "similarity", "passed": passed, "advice": "" if passed else "x"}
        entry.update(
            similarity={"match_rate": 0.99}, map_loss_pct=0.1, map_drop_points=0.0, gates=[crit], passed=passed
        )
    return entry


def test_the_time_budget_is_honoured_cheapest_first_and_a_crash_is_a_row(monkeypatch, yolov5n_pt):
    now = [0.0]
    started: list[tuple[str, float]] = []
    validate_s = 10.0

    def prepare(c, src, data, s):
        now[0] += cand.EXPORT_COST_S[c.export]
        if c.name == "onnxruntime":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return None

    def validate(src, data, c, artifact, s, progress):
        started.append((c.name, now[0]))
        now[0] += validate_s
        ms = {"torch": 40.0, "torch-cl": 30.0, "openvino": 20.0}.get(c.name, 25.0)
        return {
            "backends": {c.variant: _fake_entry(c.variant if c.name != "torch" else "torch", ms, True)},
            "model": {},
            "data": {"images": 8},
            "settings": {"imgsz": [640, 640]},
        }

    monkeypatch.setattr(search, "prepare_artifact", prepare)
    monkeypatch.setattr(search, "_validate", validate)
    monkeypatch.setattr(search, "_names", lambda src: {0: "person"})
    listed = cand.list_candidates("cpu", only=["torch-cl", "onnxruntime", "openvino", "compiled", "torch-compile"])
    listed = [cand.Candidate(c.name, c.variant, c.export, c.int8, None, c.about, None) for c in listed]
    s = search.OptimizeSettings(time_budget_min=1.5, iters=5)  # 90 s of the fake clock
    report = search.run_optimize(yolov5n_pt, "data", listed, s, clock=lambda: now[0])
    rows = {r["name"]: r for r in report["candidates"]}
    # cheapest first: no export, then ONNX (20 s), then OpenVINO (30 s); torch.compile and AOTInductor
    # (150 s and 300 s estimated) do not fit in what is left and are not started
    assert [n for n, _ in started] == ["torch", "torch-cl", "openvino"]
    assert rows["onnxruntime"]["status"] == "error" and "out of memory" in rows["onnxruntime"]["reason"]
    for name in ("torch-compile", "compiled"):
        assert rows[name]["status"] == "skipped" and rows[name]["reason"].startswith("time budget")
    for _name, t in started[1:]:  # every candidate started with its estimate inside the budget
        assert t <= 90.0
    assert report["elapsed_s"] <= 90.0
    assert report["chosen"] == "openvino" and rows["openvino"]["rank"] == 1 and rows["torch-cl"]["rank"] == 2


def test_nothing_passes_nothing_is_chosen(monkeypatch, yolov5n_pt):
    def validate(src, data, c, artifact, s, progress):
        e = _fake_entry(c.variant, 10.0, False)
        return {"backends": {c.variant: e}, "model": {}, "data": {"images": 8}, "settings": {"imgsz": [640, 640]}}

    monkeypatch.setattr(search, "prepare_artifact", lambda *a: None)
    monkeypatch.setattr(search, "_validate", validate)
    monkeypatch.setattr(search, "_names", lambda src: {0: "person"})
    listed = cand.list_candidates("cpu", only=["torch-cl"])
    report = search.run_optimize(yolov5n_pt, "data", listed, search.OptimizeSettings(iters=5))
    assert report["chosen"] is None
    assert report["candidates"][1]["status"] == "fail" and report["candidates"][1]["reason"] == "failed similarity"


# -- end to end: a damaged artifact among the candidates, and the bundle's round trip ------------


@pytest.fixture(scope="module")
def damaged_onnx(tmp_path_factory, yolov5n_pt) -> Path:
    """The model's own ONNX export with the first convolution's weights halved: it runs, at the same
    speed, and detects worse."""
    import onnx
    from onnx import numpy_helper

    from yolo_accel.export.onnx import cached_onnx

    m = onnx.load(str(cached_onnx(yolov5n_pt)))
    first_conv = next(n for n in m.graph.node if n.op_type == "Conv")
    init = next(i for i in m.graph.initializer if i.name == first_conv.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 0.5, init.name))
    out = tmp_path_factory.mktemp("damaged") / "damaged.onnx"
    onnx.save(m, str(out))
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, yolov5n_pt, assets_root, damaged_onnx) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("opt")
    gates = folder / "gates.yaml"  # the onnx profile's accuracy gates; speed is not this test's subject
    gates.write_text("base: onnx\nmin_speedup: 0.5\n")
    out = folder / "deploy"
    args = [
        "optimize",
        str(yolov5n_pt),
        "--data",
        str(assets_root / "datasets" / "coco8"),
        "--candidates",
        "onnxruntime",
        "--onnx",
        str(damaged_onnx),
        "--gates",
        str(gates),
        "--iters",
        "5",
        "--out",
        str(out),
    ]
    res = _cli(args)
    assert res.returncode == 0, res.stdout + res.stderr
    return out, json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_the_damaged_artifact_is_rejected_and_the_good_one_chosen(bundle):
    out, report = bundle
    rows = {r["name"]: r for r in report["candidates"]}
    bad, good, ref = rows["onnx:damaged.onnx"], rows["onnxruntime"], rows["torch"]
    assert bad["status"] == "fail" and "similarity" in bad["failed_gates"]
    assert bad["map50_95"] < ref["map50_95"] - 0.01  # it really is worse, by the independent mAP
    assert good["status"] == "chosen" and report["chosen"] == "onnxruntime"
    assert abs(good["map50_95"] - ref["map50_95"]) < 0.005
    # the bundle: the chosen export (not the damaged file), deploy.yaml, the reports, nothing half-written
    assert sorted(p.name for p in out.iterdir()) == [
        "deploy.yaml",
        "model.onnx",
        "report.html",
        "report.json",
        "report.md",
    ]
    assert not list(out.parent.glob(".deploy.partial-*"))
    from yolo_accel.model import file_sha256

    assert file_sha256(out / "model.onnx") == file_sha256(good["artifact"])
    doc = yaml.safe_load((out / "deploy.yaml").read_text())
    assert doc["variant"] == "onnxruntime" and doc["device"] == "cpu" and doc["imgsz"] == [640, 640]
    assert doc["names"][0] == "person" and doc["thresholds"]["conf"] == 0.25
    assert doc["figures"]["map50_95"] == pytest.approx(good["map50_95"], abs=1e-4)
    page = (out / "report.html").read_text()
    assert "damaged.onnx" in page and "data:image/png;base64," in page  # the speed-vs-mAP plot


@pytest.mark.slow
def test_an_existing_bundle_is_not_replaced_without_force(bundle, yolov5n_pt, assets_root):
    out, _ = bundle
    before = (out / "deploy.yaml").read_bytes()
    res = _cli(["optimize", str(yolov5n_pt), "--data", str(assets_root / "datasets" / "coco8"), "--out", str(out)])
    assert res.returncode == 2 and "--force" in res.stderr and "Traceback" not in res.stderr
    assert (out / "deploy.yaml").read_bytes() == before


@pytest.mark.slow
def test_predict_with_deploy_gives_the_chosen_candidates_detections(bundle, assets_root, tmp_path):
    from yolo_accel.detector import Detector

    out, report = bundle
    images = sorted((assets_root / "datasets" / "coco8" / "images" / "val").glob("*.jpg"))
    res = _cli(["predict", str(images[0].parent), "--deploy", str(out), "--save-json", str(tmp_path / "d.json")])
    assert res.returncode == 0, res.stderr
    got = json.loads((tmp_path / "d.json").read_text())
    assert got["backend"] == "onnxruntime" and got["settings"]["rect"] is False
    chosen = next(r for r in report["candidates"] if r["name"] == report["chosen"])
    # the chosen candidate as the search ran it: its artifact, square letterbox, deployment thresholds
    det = Detector(chosen["artifact"], backend="onnxruntime", conf=0.25, iou=0.45, rect=False)
    for rec, path in zip(got["images"], images):
        ref = det.predict(str(path))[0]
        boxes = np.array([d["xyxy"] for d in rec["detections"]]).reshape(-1, 4)
        assert len(rec["detections"]) == len(ref)
        np.testing.assert_allclose(boxes, ref.xyxy, atol=0.006)


@pytest.mark.slow
def test_validate_with_deploy_reproduces_the_chosen_figures(bundle, assets_root, tmp_path):
    out, report = bundle
    chosen = next(r for r in report["candidates"] if r["name"] == report["chosen"])
    res = _cli(
        [
            "validate",
            "--deploy",
            str(out),
            "--data",
            str(assets_root / "datasets" / "coco8"),
            "--speed-iters",
            "5",
            "--gates",
            str(out.parent / "gates.yaml"),
            "--report-dir",
            str(tmp_path / "v"),
        ]
    )
    assert res.returncode == 0, res.stdout + res.stderr
    v = json.loads((tmp_path / "v" / "report.json").read_text())
    entry = v["backends"]["onnxruntime"]
    assert entry["artifact"] == str(out / "model.onnx")
    assert entry["accuracy"]["map50_95"] == pytest.approx(chosen["map50_95"], abs=1e-9)
    assert entry["similarity"]["match_rate"] == pytest.approx(chosen["similarity"], abs=1e-9)


@pytest.mark.slow
def test_video_with_deploy_runs_the_bundle(bundle, assets_root, tmp_path):
    out, _ = bundle
    clip = assets_root / "videos" / "highway_traffic_720p.mp4"
    summaries = {}
    for name, how in (("deploy", ["--deploy", str(out)]), ("model", ["--model", str(out / "model.onnx")])):
        target = tmp_path / f"{name}.json"
        args = ["video", str(clip), *how, "--max-frames", "20", "--summary", str(target), "--conf", "0.25"]
        res = _cli([*args, "--iou", "0.45"])
        assert res.returncode == 0, res.stdout + res.stderr
        summaries[name] = json.loads(target.read_text())
    a, b = summaries["deploy"], summaries["model"]
    assert a["frames"] == b["frames"] == 20
    assert a["detections"] == b["detections"] > 0 and a["tracks"] == b["tracks"]


def test_bad_bundles_are_one_line_errors(tmp_path, bundle):
    from yolo_accel.deploy import load_deploy

    out, _ = bundle
    with pytest.raises(DataError, match=r"no deploy\.yaml"):
        load_deploy(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "deploy.yaml").write_text((out / "deploy.yaml").read_text())
    with pytest.raises(DataError, match=r"model\.onnx is missing"):
        load_deploy(broken)
    (broken / "deploy.yaml").write_text("format: something-else\n")
    with pytest.raises(DataError, match=r"not a yolo-accel deploy\.yaml"):
        load_deploy(broken)
    cfg = load_deploy(out)
    assert cfg.detector_kwargs()["model"] == out / "model.onnx" and cfg.backend == "onnxruntime"
    from yolo_accel.serve.manager import ServeSettings

    s = ServeSettings(model="ignored.pt", data_dir=tmp_path, deploy=str(out))
    assert s.detector_kwargs()["model"] == out / "model.onnx"


@pytest.mark.slow
def test_bench_with_deploy_times_the_bundles_configuration(bundle, tmp_path):
    out, _ = bundle
    res = _cli(["bench", "--deploy", str(out), "--iters", "5", "--e2e-iters", "3", "--report-dir", str(tmp_path / "b")])
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    (row,) = report["rows"]
    assert row["ok"] and row["backend"] == "onnxruntime" and row["batch"] == 1
    assert report["model"]["path"] == str(out / "model.onnx")
