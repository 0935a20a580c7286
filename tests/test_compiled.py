"""AOTInductor packages (`export --format compiled`, the `compiled` backend), compiled on the CPU here.

The CUDA FP16 package is tested the same way in test_gpu.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from tests.conftest import read_bgr, static_libstdcxx_compiler
from typer.testing import CliRunner

from yolo_accel import Detector
from yolo_accel.backends import aoti
from yolo_accel.cli import app
from yolo_accel.errors import ModelError, SettingsError
from yolo_accel.evaluate.similarity import match_detections

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def package(tmp_path_factory, yolov5n_pt):
    """The real YOLOv5n compiled for the CPU, batch 1..4, through the command line.

    $CXX names a compiler that links libstdc++ statically, as on the H100: a package built by it
    would crash the loader (test_cxx.py), so every test that loads this package also checks that
    the export chose another compiler.
    """
    folder = tmp_path_factory.mktemp("pt2")
    out = folder / "yolov5n.pt2"
    import torch._inductor.config as inductor_config

    static = str(static_libstdcxx_compiler(tmp_path_factory.mktemp("cxx")))
    # $CXX, and what inductor read from it when torch was imported
    with pytest.MonkeyPatch.context() as mp, inductor_config.patch({"cpp.cxx": (None, static)}):
        mp.setenv("CXX", static)
        mp.delenv("YOLO_ACCEL_CXX", raising=False)
        res = _export_cli(out, yolov5n_pt, folder)
    assert res.exit_code == 0, res.output
    return out, json.loads((folder / "r.json").read_text())


def _export_cli(out, yolov5n_pt, folder):
    return runner.invoke(
        app,
        [
            "export",
            str(yolov5n_pt),
            "--format",
            "compiled",
            "--max-batch",
            "4",
            "-o",
            str(out),
            "--json",
            str(folder / "r.json"),
        ],
    )


def test_export_checks_parity_and_leaves_only_the_package(package, tmp_path):
    path, report = package
    assert report["ok"] and report["parity"]["match_rate"] >= 0.98
    assert any("AOTInductor compile" in n for n in report["notes"])
    assert any("static-g++" in n and "statically" in n for n in report["notes"])  # the compiler swap, said
    with zipfile.ZipFile(path) as z:
        (lib,) = [n for n in z.namelist() if n.endswith("wrapper.so")]
        (tmp_path / "wrapper.so").write_bytes(z.read(lib))
    if shutil.which("readelf"):
        dyn = subprocess.run(["readelf", "-d", str(tmp_path / "wrapper.so")], capture_output=True, text=True)
        assert "[libstdc++.so.6]" in dyn.stdout  # linked against the shared libstdc++, not a copy of it
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json", "yolov5n.pt2"]  # no partial file


def test_package_matches_torch_and_takes_dynamic_batches(package, yolov5n_pt, sample_images, coco128_images):
    path, _ = package
    frames = [read_bgr(p) for p in sample_images + coco128_images[:4]]
    with Detector(yolov5n_pt, rect=False) as ref_det:
        ref = ref_det.predict(frames)
    with Detector(path, batch=3) as det:  # backend chosen from the suffix; batches of 3, 3, then 0 left
        assert det.backend.name == "compiled" and det.info.half is False
        got = det.predict(frames)
        total = sum(len(r) for r in ref)
        matched = sum(match_detections(r, g, 0.9).matched for r, g in zip(ref, got))
        assert total > 10 and matched / total >= 0.98
        with pytest.raises(SettingsError, match=r"batches of 1\.\.4"):
            det.forward(np.zeros((5, 3, 640, 640), np.float32))


def test_package_runs_without_ultralytics_or_yolov5(package, sample_images, yolov5n_pt):
    path, _ = package
    code = (
        "import sys, json\n"
        "for m in ('ultralytics', 'yolov5', 'models', 'utils'): sys.modules[m] = None  # importing them fails\n"
        "from yolo_accel import Detector\n"
        f"d = Detector({str(path)!r}).predict({str(sample_images[0])!r})[0]\n"
        "print(json.dumps([d.xyxy.tolist(), d.class_id.tolist()]))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=os.environ)
    assert res.returncode == 0, res.stderr[-2000:]
    xyxy, cls = json.loads(res.stdout.strip().splitlines()[-1])
    with Detector(yolov5n_pt, rect=False) as ref_det:
        ref = ref_det.predict(sample_images[0])[0]
    assert sorted(cls) == sorted(ref.class_id.tolist())
    assert np.allclose(np.sort(np.asarray(xyxy), 0), np.sort(ref.xyxy, 0), atol=1.0)


def test_package_errors(package, tmp_path):
    path, _ = package
    # a package from another torch version: one line that says to export again
    other = tmp_path / "other.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(other, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("extra/yolo_accel.json"):
                meta = json.loads(data)
                meta["torch_version"] = "1.13.0"
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelError, match=r"compiled with torch 1\.13\.0"):
        Detector(other)
    bare = tmp_path / "bare.pt2"
    with zipfile.ZipFile(bare, "w") as z:
        z.writestr("x/archive_format", "pt2")
    with pytest.raises(ModelError, match="without yolo-accel metadata"):
        Detector(bare)
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip" * 100)
    res = runner.invoke(app, ["predict", str(sample_image_dummy(tmp_path)), "-m", str(junk)])
    assert res.exit_code == 2 and "not a .pt2 package" in res.output and "Traceback" not in res.output
    from yolo_accel.backends.pytorch import TorchOptions

    with pytest.raises(SettingsError, match="compiled already"):
        Detector(path, torch_options=TorchOptions(compile=True))
    with pytest.raises(SettingsError, match="cannot be captured in a CUDA graph"):
        Detector(path, torch_options=TorchOptions(cuda_graph=True))


def test_loader_runs_in_a_child_first_and_remembers_it(package, monkeypatch):
    """torch's AOTInductor loader once killed whole processes (SIGSEGV, H100): a child loads first."""
    from yolo_accel.assets import cache_dir

    path, _ = package
    aoti.check_loads_in_child(path, -1)
    assert list((cache_dir() / "compiled" / "load-checks").glob("*.ok"))  # the verdict is kept

    def no_child(*a, **k):
        raise AssertionError("a second child process for the same package")

    monkeypatch.setattr(aoti.subprocess, "run", no_child)
    with Detector(path) as det:
        assert det.info.path == path


def test_a_loader_crash_in_the_child_is_one_error_line(package, tmp_path, monkeypatch):
    path, _ = package
    monkeypatch.setenv("YOLO_ACCEL_CACHE", str(tmp_path / "cache"))  # no verdict cached yet
    monkeypatch.setattr(aoti, "CHILD_LOAD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    res = runner.invoke(app, ["predict", str(sample_image_dummy(tmp_path)), "-m", str(path)])
    assert res.exit_code == 2, res.output
    assert "crashed (SIGSEGV)" in res.output and "export it again here" in res.output
    assert "Traceback" not in res.output
    monkeypatch.setattr(aoti, "CHILD_LOAD", "import sys; sys.exit('RuntimeError: no kernels for this GPU')")
    with pytest.raises(ModelError, match="cannot load it: RuntimeError: no kernels for this GPU"):
        Detector(path)


def test_an_export_whose_package_crashes_the_loader_keeps_nothing(package, yolov5n_pt, tmp_path, monkeypatch):
    import torch

    path, _ = package

    def fake_compile(ep, package_path):  # the fixture's package, without our metadata (export adds it)
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(package_path, "w") as dst:
            for item in src.infolist():
                if not item.filename.endswith("extra/yolo_accel.json"):
                    dst.writestr(item, src.read(item))
        return package_path

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", fake_compile)
    monkeypatch.setenv("YOLO_ACCEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(aoti, "CHILD_LOAD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    out = tmp_path / "out" / "y.pt2"
    res = runner.invoke(app, ["export", str(yolov5n_pt), "--format", "compiled", "--max-batch", "4", "-o", str(out)])
    assert res.exit_code != 0 and "y.pt2: torch's AOTInductor loader crashed (SIGSEGV)" in res.output, res.output
    assert "Traceback" not in res.output and ".partial" not in res.output
    assert list(out.parent.iterdir()) == []  # no package, no partial file


def sample_image_dummy(tmp_path):
    import cv2

    p = tmp_path / "grey.jpg"
    cv2.imwrite(str(p), np.full((64, 64, 3), 114, np.uint8))
    return p


def test_cache_compiles_once(package, yolov5n_pt, tmp_path, monkeypatch):
    """A .pt on the compiled backend is compiled once per settings, then reused from the cache.

    The compile itself is the package fixture's (a real AOTInductor build through `export`); here the
    cache's export step copies that package instead of building a second one (90 s of one core), so what
    is tested is the cache: which export it asks for, that it keeps the result, that the Detector loads
    the kept package and never exports again."""
    from yolo_accel.export import compiled
    from yolo_accel.export.common import ExportResult

    built, _ = package
    pt = tmp_path / "yolov5n.pt"
    shutil.copy(yolov5n_pt, pt)
    asked = []

    def export_once(src, path, settings, device, force, check):
        asked.append((src, settings, str(device), force, check))
        shutil.copy(built, path)
        return ExportResult(path=path, target=path, info=None, settings=settings, seconds=0.0)

    monkeypatch.setattr(compiled, "export_compiled", export_once)
    first = compiled.cached_compiled(pt, None, False, "cpu")
    ((src, settings, device, force, check),) = asked
    assert src == pt and (settings.imgsz, settings.half) == (None, False) and device == "cpu" and force and check
    assert first.parent.name == "compiled" and first.suffix == ".pt2"
    stamp = first.stat().st_mtime_ns
    with Detector(pt, backend="compiled") as det:  # the kept package, loaded for real
        assert det.info.path == first and len(asked) == 1
        assert det.predict(read_bgr(yolov5n_pt.parent.parent / "images" / "bus.jpg"))[0].class_id.size > 0
    assert compiled.cached_compiled(pt, None, False, "cpu") == first and len(asked) == 1
    assert first.stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "model",  # the two compiles run on one thread each: in groups of their own, on both test workers at once
    [
        pytest.param(m, marks=pytest.mark.xdist_group(f"test_compiled.py::torch-compile-{m}"))
        for m in ("yolov5n", "yolov8n")
    ],
)
def test_torch_compile_is_one_graph_per_shape_and_matches_eager(
    model, yolov5n_pt, ultralytics_pts, coco128_images, monkeypatch
):
    """--compile (torch backend): one dynamo graph for the whole network per input shape, eager's outputs,
    compiled on one inductor thread (no worker pool left to compete with the host side of inference).

    Compiling the checkpoint's module directly gave about 20 graphs per model (graph breaks at
    YOLOv5's warnings context and the Ultralytics head's `.item()`), most layers left to eager.

    YOLOv5n is compiled for two shapes (batch 2, then 1): one graph each, none again on later calls.
    YOLOv8n for one: its graph is the whole Ultralytics network, not compiled again on a second call
    and equal to eager. One shape is enough there because the graph per shape is chosen by the backend
    (keyed on the input's shape), not by the model; a second YOLOv8n compile cost 80 s of one core.
    """
    import torch
    import torch._inductor.config as inductor_config
    from torch._dynamo.utils import counters
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from yolo_accel.assets import cache_dir

    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)
    # what torch itself writes into the environment once it has looked for its cache: not a user's choice
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    real_compile, threads = torch.compile, []

    def compile_and_note_threads(*args, **kwargs):
        fn = real_compile(*args, **kwargs)

        def call(*a):
            threads.append(inductor_config.compile_threads)
            return fn(*a)

        return call

    monkeypatch.setattr(torch, "compile", compile_and_note_threads)

    from yolo_accel.backends.pytorch import TorchOptions
    from yolo_accel.ops import preprocess

    pt = yolov5n_pt if model == "yolov5n" else ultralytics_pts[model]
    x = preprocess([read_bgr(p) for p in coco128_images[:2]], (320, 320))[0]
    torch._dynamo.reset()
    counters.clear()
    two_shapes = model == "yolov5n"
    with Detector(pt, device="cpu", rect=False, imgsz=320) as eager:
        refs = [eager.backend.forward(x), *([eager.backend.forward(x[:1])] if two_shapes else [])]
    with Detector(pt, device="cpu", rect=False, imgsz=320, torch_options=TorchOptions(compile=True)) as det:
        got = [det.backend.forward(x)]
        assert counters["stats"]["unique_graphs"] == 1
        if two_shapes:
            got.append(det.backend.forward(x[:1]))
            det.backend.forward(x[:1])
        det.backend.forward(x)
        assert counters["stats"]["unique_graphs"] == len(refs)  # one per shape, none again on later calls
        shapes = ["2x3x320x320", "1x3x320x320"][: len(refs)]
        assert set(det.backend.setup_seconds) == {f"first_call_{s}" for s in shapes}
    assert threads[:1] == [1] and threads[-1] == inductor_config.compile_threads  # first call compiles
    kernels = cache_dir() / "inductor"  # compiled kernels are kept in yolo-accel's cache, for the next run
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(kernels) and any(kernels.rglob("*.py"))
    for ref, out in zip(refs, got, strict=True):
        assert out.shape == ref.shape
        # boxes in input pixels (0..320), scores in 0..1: float rounding of a fused graph only
        np.testing.assert_allclose(out, ref, rtol=1e-3, atol=2e-3)


def test_torch_compile_failure_is_one_error_line(yolov5n_pt, monkeypatch):
    """A model that torch.export cannot trace: one ModelError naming the way out, not a traceback."""
    import torch

    from yolo_accel.backends.pytorch import TorchOptions

    def cannot_trace(*args, **kwargs):
        raise RuntimeError("Unsupported: data-dependent control flow\nmore detail")

    monkeypatch.setattr(torch.export, "export", cannot_trace)
    message = r"RuntimeError: Unsupported: data-dependent control flow\); leave out --compile$"
    with (
        Detector(yolov5n_pt, device="cpu", imgsz=64, torch_options=TorchOptions(compile=True)) as det,
        pytest.raises(ModelError, match=message),
    ):
        det.backend.forward(np.zeros((1, 3, 64, 64), np.float32))
