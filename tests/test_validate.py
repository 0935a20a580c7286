"""`yolo-accel validate`: mAP against pycocotools and YOLOv5's val.py, similarity, gates, reports, bad input."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import read_bgr
from yolo_accel import Detector
from yolo_accel.cli import app
from yolo_accel.errors import DataError
from yolo_accel.evaluate.datasets import load_dataset
from yolo_accel.evaluate.gates import PROFILES, apply_gates, load_gates
from yolo_accel.evaluate.map import CocoAccumulator

runner = CliRunner()


# Where a test is about accuracy, similarity or the report and not about speed: 5 timed runs per backend
# instead of 50 (about 10 s of one core less per validate run; the speed gate is tested on its own below).
SPEED_NOT_TESTED = ("--speed-iters", "5")


@pytest.fixture(scope="module")
def coco128_yaml(assets_root):
    return assets_root / "datasets" / "coco128" / "data.yaml"


@pytest.fixture(scope="module")
def coco128_run(tmp_path_factory, yolov5n_pt, coco128_yaml):
    """One full validate run on coco128 (torch + onnxruntime) at YOLOv5 val.py's settings (NMS IoU 0.6,
    batch 32), with a gates file that drops the speed gate (CI machines vary) and tightens similarity."""
    folder = tmp_path_factory.mktemp("validate")
    gates = folder / "gates.yaml"
    gates.write_text("base: onnx\nmin_speedup: 0\nmin_similarity: 99.5\n")
    res = runner.invoke(
        app,
        [
            "validate",
            "--model",
            str(yolov5n_pt),
            "--data",
            str(coco128_yaml),
            "--gates",
            str(gates),
            "--iou",
            "0.6",
            "--batch",
            "32",
            *SPEED_NOT_TESTED,
            "--report-dir",
            str(folder / "report"),
        ],
    )
    return res, folder / "report"


@pytest.mark.slow
def test_coco128_run_passes_and_writes_reports(coco128_run):
    res, folder = coco128_run
    assert res.exit_code == 0, res.output
    assert "verdict: PASS" in res.output
    report = json.loads((folder / "report.json").read_text())
    assert report["data"]["images"] == 128 and report["data"]["instances"] == 929
    assert report["data"]["backgrounds"] == 2
    assert set(report["backends"]) == {"torch", "onnxruntime"}
    assert report["environment"]["packages"]["torch"] and report["model"]["sha256"]
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4  # mAP, latency, PR curves, IoU histogram
    md = (folder / "report.md").read_text()
    assert "| onnxruntime | similarity |" in md and "Per-class AP" in md
    per_class = report["backends"]["torch"]["accuracy"]["per_class"]
    assert len(per_class) == 71  # classes present in coco128
    assert sum(c["instances"] for c in per_class) == 929
    # the HTML page carries what the Markdown has: per-class AP, similarity details, machine and versions
    assert "<title>yolo-accel validation: yolov5n.pt on coco128</title>" in html
    assert html.count("<tr>") >= 71 + 1 and "Per-class AP (reference)" in html
    assert "reference detections matched" in html and "Machine and versions" in html
    assert report["environment"]["packages"]["torch"] in html


@pytest.mark.slow
def test_torch_map_close_to_yolov5_val(coco128_run):
    """YOLOv5's val.py reports mAP50-95 0.365 / mAP50 0.568 on coco128 (shared/assets/SOURCES.md).

    Same settings as val.py: conf 0.001, NMS IoU 0.6, multi-label, max_det 300, aspect-ratio
    batches of 32 with half a stride of padding. Evaluator: COCO's (faster-coco-eval).
    """
    _, folder = coco128_run
    report = json.loads((folder / "report.json").read_text())
    assert report["settings"]["rect"] is True
    acc = report["backends"]["torch"]["accuracy"]
    print(f"\ntorch mAP50-95 {acc['map50_95']:.4f} (val.py 0.365), mAP50 {acc['map50']:.4f} (val.py 0.568)")
    assert abs(acc["map50_95"] - 0.365) <= 0.010
    assert abs(acc["map50"] - 0.568) <= 0.010


@pytest.mark.slow
def test_onnx_similarity_on_coco128(coco128_run):
    _, folder = coco128_run
    b = json.loads((folder / "report.json").read_text())["backends"]["onnxruntime"]
    sim = b["similarity"]
    print(
        f"\nonnxruntime vs torch on coco128: {sim['matched']}/{sim['reference_detections']} "
        f"({sim['match_rate']:.2%}), raw cosine min {sim['raw_cosine_min']:.6f}"
    )
    assert sim["match_rate"] >= 0.995
    assert sim["reference_detections"] > 500
    assert abs(b["map_drop_points"]) < 0.1
    assert {g["criterion"]: g["passed"] for g in b["gates"]} == {
        "speedup": True,
        "similarity": True,
        "mAP loss %": True,
    }


def _coco_eval_pycocotools(gt: dict, dets: list[dict], max_det: int):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(gt))
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(json.loads(json.dumps(dets))), "bbox")
        ev.params.maxDets = [1, 10, max_det]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    p = ev.eval["precision"][:, :, :, 0, -1]
    return float(p[p > -1].mean()), float(p[0][p[0] > -1].mean()), ev.stats


@pytest.mark.parametrize("max_det", [100, 300])
@pytest.mark.slow
def test_map_agrees_with_pycocotools(yolov5n_pt, coco128_images, assets_root, max_det):
    ds = load_dataset(assets_root / "datasets" / "coco128" / "data.yaml")
    acc = CocoAccumulator(ds.names)
    with Detector(yolov5n_pt, conf=0.001, iou=0.7, rect=False, multi_label=True) as det:
        for it in ds.items[:40]:
            img = read_bgr(it.path)
            acc.add_image(it.image_id, *img.shape[:2], *it.boxes(*img.shape[:2]))
            acc.add_detections("torch", it.image_id, det.predict(img)[0])
    ours = acc.evaluate("torch", max_det)
    map_, map50, stats = _coco_eval_pycocotools(acc.gt_dict(), acc.detections["torch"], max_det)
    print(f"\nfaster-coco-eval {ours.map50_95:.6f}/{ours.map50:.6f}, pycocotools {map_:.6f}/{map50:.6f}")
    assert abs(ours.map50_95 - map_) <= 1e-4
    assert abs(ours.map50 - map50) <= 1e-4
    if max_det == 100:  # pycocotools' own summary line applies at its default maxDets
        assert abs(ours.map50_95 - stats[0]) <= 1e-4


def _damage_first_conv(src, dst, factor=3.0):
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    init = next(i for i in proto.graph.initializer if i.name == conv.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, init.name))
    onnx.save(proto, str(dst))


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory, coco128_images):
    """24 coco128 images with their YOLO label files beside them (the 'folder' dataset form)."""
    folder = tmp_path_factory.mktemp("folder_ds")
    for img in coco128_images[:24]:
        shutil.copy(img, folder / img.name)
        lab = img.parent.parent.parent / "labels" / "train2017" / (img.stem + ".txt")
        if lab.exists():
            shutil.copy(lab, folder / lab.name)
    return folder


def _validate_onnx(model, data, onnx_file, out):
    """validate torch vs the given ONNX file; returns the CLI result and the onnxruntime gates by name."""
    res = runner.invoke(
        app,
        [
            *("validate", "--model", str(model), "--data", str(data), "--onnx", str(onnx_file), *SPEED_NOT_TESTED),
            *("--report-dir", str(out)),
        ],
    )
    report = json.loads((out / "report.json").read_text())
    return res, {g["criterion"]: g for g in report["backends"]["onnxruntime"]["gates"]}


@pytest.mark.slow
def test_gates_really_gate(tmp_path, yolov5n_pt, yolov5n_onnx, labelled_folder):
    damaged = tmp_path / "damaged.onnx"
    _damage_first_conv(yolov5n_onnx, damaged)
    res, gates = _validate_onnx(yolov5n_pt, labelled_folder, damaged, tmp_path / "bad")
    assert res.exit_code == 1, res.output
    assert not gates["similarity"]["passed"] and not gates["mAP loss %"]["passed"]
    assert "FP32 outputs differ" in gates["similarity"]["advice"]
    assert "verdict: FAIL" in res.output

    _, gates = _validate_onnx(yolov5n_pt, labelled_folder, yolov5n_onnx, tmp_path / "good")
    assert gates["similarity"]["passed"] and gates["mAP loss %"]["passed"]


@pytest.mark.slow
def test_coco_json_dataset_gives_the_same_map(tmp_path, yolov5n_pt, assets_root):
    """coco8's YOLO labels written as COCO JSON (converted here, independently) validate identically."""
    import cv2

    root = assets_root / "datasets" / "coco8"
    images, anns = [], []
    for i, img in enumerate(sorted((root / "images" / "val").glob("*.jpg"))):
        h, w = cv2.imread(str(img)).shape[:2]
        images.append({"id": 100 + i, "file_name": img.name, "height": h, "width": w})
        for line in (root / "labels" / "val" / f"{img.stem}.txt").read_text().splitlines():
            c, cx, cy, bw, bh = map(float, line.split())
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 100 + i,
                    "category_id": int(c) + 1,
                    "iscrowd": 0,
                    "bbox": [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h],
                    "area": bw * w * bh * h,
                }
            )
    names = load_dataset(root / "data.yaml").names
    cats = [{"id": k + 1, "name": v} for k, v in names.items()]
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    maps = {}
    for key, args in {
        "yaml": ["--data", str(root / "data.yaml")],
        "coco": ["--data", str(ann_file), "--images", str(root / "images" / "val")],
    }.items():
        res = runner.invoke(
            app,
            [
                *("validate", "--model", str(yolov5n_pt), "--backends", "torch", *args, *SPEED_NOT_TESTED),
                *("--report-dir", str(tmp_path / key)),
            ],
        )
        assert res.exit_code == 0, res.output
        maps[key] = json.loads((tmp_path / key / "report.json").read_text())["backends"]["torch"]["accuracy"]
    assert maps["yaml"]["map50_95"] > 0.2
    assert maps["coco"]["map50_95"] == pytest.approx(maps["yaml"]["map50_95"], abs=1e-6)


# -- bad input ---------------------------------------------------------------------------------
def _bad(tmp_path, labelled_folder, kind):
    folder = tmp_path / "ds"
    shutil.copytree(labelled_folder, folder)
    first = sorted(folder.glob("*.txt"))[0]
    lines = first.read_text().splitlines()
    if kind == "columns":
        lines[1] = lines[1] + " 0.5"
    elif kind == "class":
        lines[1] = "91 " + " ".join(lines[1].split()[1:])
    elif kind == "coords":
        lines[1] = " ".join([*lines[1].split()[:3], "1.7", "0.2"])
    first.write_text("\n".join(lines) + "\n")
    yaml = tmp_path / "data.yaml"
    from yolo_accel.names import COCO_NAMES

    yaml.write_text(f"path: {folder}\nval: .\nnames: {json.dumps(list(COCO_NAMES.values()))}\n")
    return yaml, first


@pytest.mark.parametrize(
    "kind,expect",
    [
        ("columns", ":2: expected 5 columns"),
        ("class", ":2: class id 91 >= "),
        ("coords", ":2: coordinates outside [0, 1]"),
    ],
)
def test_bad_labels_name_file_and_line(tmp_path, yolov5n_pt, labelled_folder, kind, expect):
    yaml, first = _bad(tmp_path, labelled_folder, kind)
    res = runner.invoke(
        app, ["validate", "--model", str(yolov5n_pt), "--data", str(yaml), "--report-dir", str(tmp_path / "r")]
    )
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error:") and first.name in line and expect in line and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()


def test_clip_labels_option(tmp_path, labelled_folder):
    yaml, _ = _bad(tmp_path, labelled_folder, "coords")
    ds = load_dataset(yaml, clip_labels=True)
    assert all((it.labels[:, 1:] <= 1).all() for it in ds.items)


@pytest.mark.parametrize(
    "case,expect", [("nowhere", "points nowhere"), ("empty", "empty split"), ("gates", "unknown key 'min_speed'")]
)
def test_bad_dataset_and_gates(tmp_path, yolov5n_pt, assets_root, case, expect):
    data = assets_root / "datasets" / "coco8" / "data.yaml"
    gates = "onnx"
    if case == "nowhere":
        data = tmp_path / "d.yaml"
        data.write_text("path: /nonexistent/place\nval: images/val\nnames: [a, b]\n")
    elif case == "empty":
        (tmp_path / "images").mkdir()
        data = tmp_path / "d.yaml"
        data.write_text(f"path: {tmp_path}\nval: images\nnames: [a, b]\n")
    else:
        gates = str(tmp_path / "g.yaml")
        (tmp_path / "g.yaml").write_text("min_speed: 2\n")
    res = runner.invoke(app, ["validate", "--model", str(yolov5n_pt), "--data", str(data), "--gates", gates])
    assert res.exit_code == 2, res.output
    assert expect in res.output.strip().splitlines()[-1] and "Traceback" not in res.output


@pytest.mark.slow
def test_corrupt_image_is_skipped_and_counted(tmp_path, yolov5n_pt, labelled_folder):
    folder = tmp_path / "ds"
    shutil.copytree(labelled_folder, folder)
    victim = sorted(folder.glob("*.jpg"))[3]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated JPEG: undecodable
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
            *SPEED_NOT_TESTED,
            "--report-dir",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [s["image"] for s in report["data"]["skipped"]] == [str(victim)]
    assert report["data"]["images"] == 23
    assert "skipping" in res.output


def test_gate_profiles_and_advice(tmp_path):
    assert load_gates("onnx") == PROFILES["onnx"] and load_gates("TensorRT").min_speedup == 2.5
    f = tmp_path / "g.yaml"
    f.write_text("base: tensorrt\nmin_similarity: 0.9\n")
    g = load_gates(f)
    assert g.min_speedup == 2.5 and g.min_similarity == 0.9 and g.max_map_loss_pct == 2.0
    cpu = apply_gates(PROFILES["onnx"], 1.1, 0.99, 0.5, device="cpu", half=False, mean_iou=0.99, max_abs=1e-3)
    assert [r.passed for r in cpu] == [False, True, True] and "CUDA" in cpu[0].advice
    fp16 = apply_gates(PROFILES["onnx"], 3.0, 0.90, 3.0, device="cuda", half=True, mean_iou=0.9, max_abs=2.0)
    assert "FP16" in fp16[1].advice and "low similarity" in fp16[2].advice
    letterbox = apply_gates(PROFILES["onnx"], 3.0, 0.99, 3.0, device="cuda", half=False, mean_iou=0.99, max_abs=0.01)
    assert "letterbox" in letterbox[2].advice


def test_dataset_errors_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="dataset not found"):
        load_dataset(tmp_path / "missing.yaml")
    assert np.all(np.isfinite([0.0]))


@pytest.mark.slow
def test_validate_speedup_is_bench_speedup(tmp_path, yolov5n_pt, assets_root, monkeypatch):
    """One timing harness: validate and bench time each backend through the same `speed.time_detector`,
    on a prepared batch of the same shape with the same warm-up and runs, and each reports as the
    onnxruntime speedup the ratio of the model-only medians that harness measured. The real harness
    runs; the test only watches what goes in and comes out. (Two timings of a shared 2-core machine are
    not compared with each other here: their ratio moved by over 25 % between runs, and speed is
    benchmark work, not a unit test's.)"""
    import yolo_accel.bench.runner as bench_runner
    import yolo_accel.validate as validate_mod
    from yolo_accel.speed import time_detector

    timed: dict[str, dict[str, tuple]] = {"validate": {}, "bench": {}}

    def watch(command: str):
        def watched(det, frames, s):
            speed = time_detector(det, frames, s)
            shape = tuple(det.preprocess(frames)[0].shape)
            timed[command][det.backend.name] = (shape, s.warmup, s.iters, speed.model.median, speed.model.n)
            return speed

        return watched

    monkeypatch.setattr(validate_mod, "time_detector", watch("validate"))
    monkeypatch.setattr(bench_runner, "time_detector", watch("bench"))
    data = assets_root / "datasets" / "coco8" / "data.yaml"
    args = ["validate", "--model", str(yolov5n_pt), "--data", str(data), "--speed-iters", "30"]
    res = runner.invoke(app, [*args, "--report-dir", str(tmp_path / "v")])  # validate warms up 10 runs
    assert res.exit_code in (0, 1), res.output
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    speed = report["backends"]["onnxruntime"]["speed"]
    assert speed["metric"] == "model" and speed["batch"] == 1 and speed["timed_runs"]["model"] >= 30
    assert speed["speedup"] == speed["speedup_model"]
    md = (tmp_path / "v" / "report.md").read_text()
    assert "Speed gate: model-only latency" in md and ", batch 1, " in md
    assert "Speed gate: model-only" in res.output
    args = ["bench", "--model", str(yolov5n_pt), "--backends", "torch,onnxruntime", "--batch", "1", "--iters", "30"]
    res = runner.invoke(app, [*args, "--warmup", "10", "--e2e-iters", "5", "--report-dir", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    bench = next(r for r in rows if r["backend"] == "onnxruntime")["speedup"]
    v, b = timed["validate"], timed["bench"]
    assert set(v) == set(b) == {"torch", "onnxruntime"}
    for name in v:  # the same input shape (batch 1, 640 square), warm-up and number of runs
        assert v[name][:3] == b[name][:3] == ((1, 3, 640, 640), 10, 30), (name, v[name], b[name])
    assert speed["speedup"] == pytest.approx(v["torch"][3] / v["onnxruntime"][3], rel=1e-9)
    assert bench == pytest.approx(b["torch"][3] / b["onnxruntime"][3], rel=1e-9)
    print(f"\nonnxruntime over torch, model-only batch 1: validate {speed['speedup']:.2f}x, bench {bench:.2f}x")


@pytest.mark.slow
def test_speed_metric_e2e_is_what_the_gate_uses(tmp_path, yolov5n_pt, assets_root):
    data = assets_root / "datasets" / "coco8" / "data.yaml"
    args = ["validate", "--model", str(yolov5n_pt), "--data", str(data), "--speed-metric", "e2e", "--speed-batch", "2"]
    res = runner.invoke(app, [*args, "--speed-iters", "5", "--report-dir", str(tmp_path / "v")])
    assert res.exit_code in (0, 1), res.output
    b = json.loads((tmp_path / "v" / "report.json").read_text())["backends"]["onnxruntime"]
    assert b["speed"]["metric"] == "e2e" and b["speed"]["batch"] == 2
    assert b["speed"]["speedup"] == b["speed"]["speedup_e2e"]
    gate = next(g for g in b["gates"] if g["criterion"] == "speedup")
    assert gate["measured"] == b["speed"]["speedup_e2e"]
    assert "fewer than 30 timed runs" in b["speed"]["note"]  # 5 runs: the report says so
    for bad, expect in ((["--speed-metric", "fps"], "model or e2e"), (["--speed-batch", "0"], "--speed-batch")):
        res = runner.invoke(app, ["validate", "--model", str(yolov5n_pt), "--data", str(data), *bad])
        assert res.exit_code == 2 and expect in res.output.strip().splitlines()[-1]


def test_speed_advice_fits_where_the_inputs_live():
    gates = load_gates("onnx")
    common = {"device": "cuda", "half": True, "mean_iou": 0.99, "max_abs": 0.01}
    host = apply_gates(gates, 1.1, 0.99, 0.1, on_device=False, **common)[0]
    device = apply_gates(gates, 1.1, 0.99, 0.1, on_device=True, **common)[0]
    assert not host.passed and "IO binding" in host.advice
    assert not device.passed and "IO binding" not in device.advice and "already stay on the GPU" in device.advice


def test_a_dataset_without_labels_has_no_verdict(tmp_path, yolov5n_pt, sample_images):
    """Images and no labels: every mAP would be -1, and the verdict was PASS. Now one line, exit 2,
    no report."""
    (tmp_path / "images").mkdir()
    for p in sample_images[:2]:
        shutil.copy(p, tmp_path / "images" / p.name)
    res = runner.invoke(
        app,
        ["validate", "-m", str(yolov5n_pt), "--data", str(tmp_path / "images"), "--report-dir", str(tmp_path / "r")],
    )
    last = res.output.strip().splitlines()[-1]
    assert res.exit_code == 2 and last.startswith("error:") and "has a labelled object" in last, res.output
    assert "PASS" not in res.output and not (tmp_path / "r").exists()
