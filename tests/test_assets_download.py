"""A plain install without the assets folder: the sample images come down once into the cache
(checked against their SHA-256), and export takes its parity images from the user instead."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from yolo_accel import assets
from yolo_accel.cli import app
from yolo_accel.errors import DataError

runner = CliRunner()


@pytest.fixture
def no_asset_folders(tmp_path, monkeypatch):
    """Only the (empty) user cache is an asset folder, as after `pip install` outside the repository."""
    monkeypatch.setenv("YOLO_ACCEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(assets, "candidate_roots", lambda: [tmp_path / "cache" / "assets"])
    return tmp_path / "cache" / "assets"


@pytest.fixture
def image_server(tmp_path, assets_root):
    """A local HTTP server with the real sample images; yields (base URL, list of requested paths)."""
    root = tmp_path / "served"
    root.mkdir()
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(assets_root / "images" / name, root / name)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", requests, root
    server.shutdown()


def test_sample_images_are_downloaded_once_and_checked(no_asset_folders, image_server, monkeypatch, assets_root):
    url, requests, _ = image_server
    monkeypatch.setenv("YOLO_ACCEL_SAMPLES_URL", url)
    first = assets.sample_images()
    assert [p.name for p in first] == ["bus.jpg", "zidane.jpg"]
    assert all(p.parent == no_asset_folders / "images" for p in first)
    assert first[0].read_bytes() == (assets_root / "images" / "bus.jpg").read_bytes()
    assert len(requests) == 2
    assert assets.sample_images() == first and len(requests) == 2  # the cache answers the second time


def test_a_wrong_download_keeps_nothing(no_asset_folders, image_server, monkeypatch):
    url, _, root = image_server
    (root / "bus.jpg").write_bytes(b"not the bus")
    monkeypatch.setenv("YOLO_ACCEL_SAMPLES_URL", url)
    with pytest.raises(DataError, match="SHA-256 differs"):
        assets.sample_images()
    assert not (no_asset_folders / "images").exists() or not list((no_asset_folders / "images").iterdir())


def test_offline_without_assets_says_what_to_do(no_asset_folders, monkeypatch):
    monkeypatch.setenv("YOLO_ACCEL_SAMPLES_URL", "http://127.0.0.1:9/")  # nothing listens on the discard port
    with pytest.raises(DataError, match=r"needs the sample image bus.jpg.*YOLO_ACCEL_ASSETS.*--parity-images DIR"):
        assets.sample_images()


def test_export_checks_parity_on_the_images_given(tmp_path, yolov5n_pt, coco128_images, no_asset_folders):
    """No asset folder and no network: --parity-images is all the check needs."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in coco128_images[:3]:
        shutil.copy(p, folder / p.name)
    out = tmp_path / "m.onnx"
    args = ["-o", str(out), "--parity-images", str(folder), "--json", str(tmp_path / "r.json")]
    res = runner.invoke(app, ["export", str(yolov5n_pt), *args])
    assert res.exit_code == 0, res.output
    parity = json.loads((tmp_path / "r.json").read_text())["parity"]
    assert sorted(r["image"] for r in parity["images"]) == sorted(p.name for p in coco128_images[:3])
    assert parity["passed"] and Path(out).is_file()


@pytest.fixture
def offline(no_asset_folders, monkeypatch):
    monkeypatch.setenv("YOLO_ACCEL_SAMPLES_URL", "http://127.0.0.1:9/")  # nothing listens on the discard port
    return no_asset_folders


def test_bench_offline_checks_the_export_on_its_frame(tmp_path, yolov5n_pt, coco128_images, offline):
    """Offline with only a model and one image: the ONNX made on the way checks parity on --frame, and
    both backends are measured (it used to fail at the export, wanting bus.jpg and zidane.jpg)."""
    frame = tmp_path / "street.jpg"
    shutil.copy(coco128_images[0], frame)
    args = ["bench", "-m", str(yolov5n_pt), "--backends", "torch,onnxruntime", "--frame", str(frame)]
    res = runner.invoke(
        app, [*args, "--iters", "3", "--warmup", "1", "--e2e-iters", "3", "--report-dir", str(tmp_path / "r")]
    )
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "r" / "bench.json").read_text())["rows"]
    assert {r["backend"]: r["ok"] for r in rows} == {"torch": True, "onnxruntime": True}, rows


def test_validate_offline_checks_the_export_on_the_dataset(tmp_path, yolov5n_pt, assets_root, offline):
    data = assets_root / "datasets" / "coco8" / "data.yaml"
    args = ["validate", "-m", str(yolov5n_pt), "--data", str(data), "--backends", "onnxruntime"]
    res = runner.invoke(app, [*args, "--speed-iters", "3", "--report-dir", str(tmp_path / "v")])
    assert res.exit_code in (0, 1), res.output  # a verdict either way (speed may fail on a busy machine)
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    assert set(report["backends"]) == {"torch", "onnxruntime"}
    assert report["backends"]["onnxruntime"]["accuracy"]["map50_95"] > 0.2
