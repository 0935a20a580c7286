"""`yolo-accel bench`: statistics, the harness times what it says, a real CPU run, bad input."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from yolo_accel.backends.variants import parse_variant
from yolo_accel.bench.timing import PeakRSS, Stats, measure
from yolo_accel.cli import app
from yolo_accel.errors import SettingsError

runner = CliRunner()


def test_stats_of_a_known_sequence():
    s = Stats.of(list(range(1, 102)))  # 1..101
    assert (s.n, s.min, s.max, s.median, s.mean) == (101, 1, 101, 51, 51)
    assert s.p95 == pytest.approx(96.0) and s.p99 == pytest.approx(100.0)
    assert s.std == pytest.approx(np.sqrt((101**2 - 1) / 12))  # population std of 1..n


def test_warmup_is_excluded_and_sleep_is_measured():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.2 if len(calls) <= 3 else 0.01)  # three slow "first" runs, then 10 ms each

    times = measure(fn, warmup=3, iters=20)
    assert len(calls) == 23 and len(times) == 20
    assert max(times) < 100  # none of the 200 ms warm-up runs is in the sample
    assert Stats.of(times).median == pytest.approx(10.0, abs=3.0)


def test_duration_caps_a_row():
    times = measure(lambda: time.sleep(0.05), warmup=0, iters=1000, duration_s=0.3)
    assert 3 <= len(times) <= 10


def test_peak_rss_sees_an_allocation():
    with PeakRSS() as before:
        pass
    with PeakRSS() as rss:
        block = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
        time.sleep(0.1)
        del block
    assert rss.peak - before.peak > 200 * 2**20


@pytest.mark.parametrize(
    "text,key,half,iob,cpu",
    [
        ("torch", "torch", False, False, False),
        ("torch-fp16", "torch-fp16", True, False, False),
        ("ONNXRuntime-iobind-fp16", "onnxruntime-fp16-iobind", True, True, False),
        ("ort-cpu", "onnxruntime-cpu", False, False, True),
        ("ort-graph-fp16", "onnxruntime-fp16-iobind-graph", True, True, False),  # the graph needs IO binding
        ("torch-graph-half-cl", "torch-fp16-cl-graph", True, False, False),
        ("pt2-fp16", "compiled-fp16", True, False, False),
    ],
)
def test_variant_names(text, key, half, iob, cpu):
    v = parse_variant(text)
    assert (v.key, v.half, v.io_binding, v.cpu) == (key, half, iob, cpu)
    assert v.cuda_graph == ("graph" in key)
    assert v.torch_options().channels_last == ("-cl" in key)


def test_bad_variant_names():
    with pytest.raises(SettingsError, match="known backends: torch, onnxruntime"):
        parse_variant("tensorflow")
    with pytest.raises(SettingsError, match="-fp16, -cl, -compile, -iobind, -graph, -cpu"):
        parse_variant("torch-int8")
    with pytest.raises(SettingsError, match="onnxruntime backend only"):
        parse_variant("torch-iobind")
    with pytest.raises(SettingsError, match="-graph applies to the torch and onnxruntime backend only"):
        parse_variant("compiled-fp16-graph")  # capture of a package failed on the H100
    with pytest.raises(SettingsError, match="torch backend only"):
        parse_variant("onnxruntime-compile")


def _bench_cpu(model, out, iters):
    """bench torch and onnxruntime at batch 1 and 2 on the CPU; returns the CLI result."""
    return runner.invoke(
        app,
        [
            "bench",
            "--model",
            str(model),
            "--backends",
            "torch,onnxruntime",
            "--batch",
            "1,2",
            "--iters",
            str(iters),
            "--warmup",
            "1",
            "--e2e-iters",
            "4",
            "--report-dir",
            str(out),
        ],
    )


@pytest.mark.slow
def test_cpu_run_two_backends_two_batches(tmp_path, yolov5n_pt):
    res = _bench_cpu(yolov5n_pt, tmp_path, 5)
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["kind"] == "bench" and report["baseline"] == "torch"
    assert [(r["backend"], r["batch"]) for r in report["rows"]] == [
        ("torch", 1),
        ("torch", 2),
        ("onnxruntime", 1),
        ("onnxruntime", 2),
    ]
    for r in report["rows"]:
        assert r["ok"], r
        for part in ("model_ms", "e2e_ms"):
            st = r[part]
            assert set(st) == {"n", "mean", "std", "median", "p95", "p99", "min", "max", "cv"}
            assert st["cv"] == pytest.approx(st["std"] / st["mean"], abs=1e-4)
            assert 0 < st["min"] <= st["median"] <= st["p95"] <= st["p99"] <= st["max"]
        assert r["model_ms"]["n"] == 5 and r["e2e_ms"]["n"] == 4
        assert r["throughput_ips"] == pytest.approx(r["batch"] / r["model_ms"]["median"] * 1000)
        assert set(r["stages_ms"]) == {"pre", "infer", "post"} and all(v > 0 for v in r["stages_ms"].values())
        assert r["peak_host_rss_bytes"] > 100 * 2**20 and r["artifact_bytes"] > 1_000_000
        assert r["speedup"] > 0
    assert report["rows"][0]["speedup"] == 1.0
    env = report["environment"]
    assert env["cpu"] and env["cpu_threads"] and env["packages"]["onnxruntime"]
    assert (tmp_path / "bench.md").read_text().count("\n| ") >= 5
    assert (tmp_path / "bench.html").read_text().count("data:image/png") == 3
    page = (tmp_path / "bench.html").read_text()
    assert "Machine and versions" in page and env["packages"]["onnxruntime"] in page
    # the terminal table fits 80 columns with every backend name whole
    table = [line for line in res.output.splitlines() if line.strip().startswith(("torch", "onnxruntime"))]
    assert len(table) == 4 and all(len(line) <= 80 for line in res.output.splitlines())
    # `report` re-renders Markdown and HTML from the JSON alone
    (tmp_path / "bench.md").unlink()
    (tmp_path / "bench.html").unlink()
    assert runner.invoke(app, ["report", str(tmp_path)]).exit_code == 0
    assert (tmp_path / "bench.md").is_file() and (tmp_path / "bench.html").is_file()


def test_static_batch_needs_dynamic_export(tmp_path, yolov5n_onnx):
    res = runner.invoke(app, ["bench", "--model", str(yolov5n_onnx), "--backends", "onnxruntime", "--batch", "1,8"])
    assert res.exit_code == 2
    line = res.output.strip().splitlines()[-1]
    assert "fixed batch size of 1" in line and "--dynamic" in line


@pytest.mark.parametrize(
    "args,expect",
    [
        (["--backends", "torch,jax"], "known backends"),
        (["--batch", "1,x"], "comma-separated whole numbers"),
        (["--batch", "0"], "at least 1"),
    ],
)
def test_bench_bad_input(yolov5n_pt, args, expect):
    res = runner.invoke(app, ["bench", "--model", str(yolov5n_pt), *args])
    assert res.exit_code == 2, res.output
    assert expect in res.output.strip().splitlines()[-1]


def test_report_of_a_folder_without_json(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no bench.json or report.json" in res.output


def test_out_of_memory_becomes_a_row_and_the_run_goes_on(tmp_path, yolov5n_pt, monkeypatch):
    from yolo_accel.backends.pytorch import TorchBackend

    real = TorchBackend.model_runner

    def runner_that_runs_out(self, batch):
        if len(batch) >= 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, batch)

    monkeypatch.setattr(TorchBackend, "model_runner", runner_that_runs_out)
    res = _bench_cpu(yolov5n_pt, tmp_path, 3)
    assert res.exit_code == 0, res.output
    rows = {(r["backend"], r["batch"]): r for r in json.loads((tmp_path / "bench.json").read_text())["rows"]}
    assert rows[("torch", 2)]["ok"] is False and rows[("torch", 2)]["error"] == "out of memory at batch 2"
    assert rows[("torch", 1)]["ok"] and rows[("onnxruntime", 2)]["ok"]
    assert "speedup" not in rows[("onnxruntime", 2)]  # no baseline at that batch size
    assert "out of memory at batch 2" in res.output
    assert "FAILED: out of memory" in (tmp_path / "bench.md").read_text()


def test_a_backend_that_cannot_open_gives_error_rows_and_the_run_goes_on(tmp_path, yolov5n_pt, monkeypatch):
    from yolo_accel.errors import ExportError
    from yolo_accel.export import compiled

    def refused(*a, **k):
        raise ExportError("the compiled package of yolov5n.pt failed its parity check (12.0% of detections matched)")

    monkeypatch.setattr(compiled, "cached_compiled", refused)
    args = ["bench", "--model", str(yolov5n_pt), "--backends", "compiled,torch", "--batch", "1,2"]
    res = runner.invoke(
        app, [*args, "--iters", "3", "--warmup", "1", "--e2e-iters", "3", "--report-dir", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    rows = {(r["backend"], r["batch"]): r for r in json.loads((tmp_path / "bench.json").read_text())["rows"]}
    for b in (1, 2):
        assert rows[("compiled", b)]["ok"] is False and "failed its parity check" in rows[("compiled", b)]["error"]
        assert rows[("torch", b)]["ok"] and "speedup" not in rows[("torch", b)]  # the baseline row failed
    assert "compiled batch 2: the compiled package of yolov5n.pt failed" in " ".join(res.output.split())
    # a wrong option is not a row: it stops the run with one line (FP16 packages are compiled for CUDA)
    monkeypatch.undo()
    res = runner.invoke(app, ["bench", "--model", str(yolov5n_pt), "--backends", "compiled-fp16,torch"])
    assert res.exit_code == 2 and "--half needs --device cuda" in res.output.strip().splitlines()[-1]
