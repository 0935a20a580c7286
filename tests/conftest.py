"""Shared fixtures: the real assets from ../shared/assets, a private cache, reference models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

_GROUP = pytest.StashKey[str]()


# Groups that run longest, started first so that the two workers of `make test` finish together
# (longest first: what is left at the end is short). Every other test runs in its module's group.
LONGEST_FIRST = (  # measured on the 2-core machine, seconds of one worker
    "test_video_engine.py::soak",  # 136
    "test_validate.py",  # 120
    "test_openvino.py",  # 115
    "test_serve.py::faults",  # 90
    "test_ray.py::data",  # 80
    "test_compiled.py::torch-compile-yolov8n",  # 75
    "test_serve.py",  # 80
    "test_ray.py",  # 75
    "test_ray.py::kill",  # 65
    "test_video_engine.py",  # 65
    "test_compiled.py::torch-compile-yolov5n",  # 63
    "test_torch_ops.py",  # 60
    "test_plates.py",  # 55
    "test_serve_browser.py",  # 51
    "test_package.py",  # 50
    "test_compiled.py",  # 50: the AOTInductor package and the tests that load it
    "test_video.py",  # 45
    "test_optimize.py",  # 45
    "test_serve.py::kill-9",  # 36
    "test_serve_rtsp.py",  # 27
)


def pytest_configure(config):
    # every test session gets its own ONNX/engine cache, never the user's; under pytest-xdist the
    # controller makes it before the workers start, so they share it (the cache locks each entry)
    if "YOLO_ACCEL_CACHE" not in os.environ:
        import tempfile

        os.environ["YOLO_ACCEL_CACHE"] = tempfile.mkdtemp(prefix="yolo-accel-test-cache-")
    os.environ.setdefault("YOLO_OFFLINE", "True")
    if getattr(config.option, "numprocesses", None):
        # N workers on N cores: one inference thread each (torch, ONNX Runtime, OpenVINO, OpenBLAS),
        # inherited by the workers and by the commands they start. Runtimes that start a busy-waiting
        # thread per core in every worker made two workers slower than one.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "YOLO_ACCEL_THREADS"):
            os.environ.setdefault(var, "1")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    # one pytest-xdist group per module (its module fixtures are built once), unless a test names its own
    # group; the longest groups first. Without xdist the marks do nothing and only the order changes.
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    for item in items:
        marker = item.get_closest_marker("xdist_group")  # a test's own group names its module: "test_x.py::name"
        if marker is None:
            group = item.path.name
            item.add_marker(pytest.mark.xdist_group(group))
        else:
            group = marker.args[0] if marker.args else marker.kwargs["name"]
        item.stash[_GROUP] = group
    items.sort(key=lambda it: rank.get(it.stash[_GROUP], len(rank)))
    cuda = False
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        pass
    if not cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the GPU machine)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def pytest_xdist_node_collection_finished(node, ids):
    # pytest-xdist groups tests by renaming each test's node id (test@group) through a private attribute;
    # pytest 9.2 renamed it, and the groups silently vanished: each test became its own unit, module
    # fixtures were built on both workers, the suite ran 40 % longer. Stop rather than run that way.
    if node.config.getvalue("dist") == "loadgroup":
        ungrouped = [nodeid for nodeid in ids if "@" not in nodeid]
        if ungrouped:
            pytest.exit(
                f"pytest {pytest.__version__} with pytest-xdist: --dist loadgroup did not group {ungrouped[0]} "
                "(install the pytest that pyproject.toml's test extra names)",
                returncode=4,
            )


@pytest.fixture(scope="session")
def assets_root() -> Path:
    from yolo_accel.assets import DEFAULT_MODEL, find_asset

    # fail (not skip) when the shared assets are missing: every test here runs on real data
    return find_asset(DEFAULT_MODEL).parent.parent


@pytest.fixture(scope="session")
def yolov5n_pt(assets_root) -> Path:
    return assets_root / "models" / "yolov5n.pt"


@pytest.fixture(scope="session")
def sample_images(assets_root) -> list[Path]:
    return [assets_root / "images" / "bus.jpg", assets_root / "images" / "zidane.jpg"]


@pytest.fixture(scope="session")
def coco128_images(assets_root) -> list[Path]:
    return sorted((assets_root / "datasets" / "coco128" / "images" / "train2017").glob("*.jpg"))


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The folder `name`, filled by `build(folder)` once per test run: under pytest-xdist the first worker
    to ask builds it (the others wait on a lock, then read it), so a shared fixture is not made twice."""
    from yolo_accel.runs import file_lock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with file_lock(root / f"shared-{name}.lock"):
        if not done.exists():
            folder.mkdir(exist_ok=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def yolov5n_onnx(tmp_path_factory, yolov5n_pt) -> Path:
    """A static 640 FP32 export of the real YOLOv5n."""
    from yolo_accel.export.onnx import OnnxExportSettings, export_onnx

    def build(folder):
        assert export_onnx(yolov5n_pt, folder / "yolov5n.onnx", OnnxExportSettings()).ok

    return built_once(tmp_path_factory, "onnx", build) / "yolov5n.onnx"


@pytest.fixture(scope="session")
def ultralytics_pts(tmp_path_factory, coco128_images) -> dict[str, Path]:
    """YOLOv8n and YOLO11n built from Ultralytics' own YAMLs (offline, random weights), saved as .pt.

    Fresh Ultralytics models give nearly constant outputs (their BatchNorm statistics are the
    identity), which would make every comparison trivially pass. Re-estimating the BatchNorm
    statistics on 16 real images gives outputs that vary with the image, as a trained model's do.
    """
    import torch

    from yolo_accel._deps import quiet
    from yolo_accel.ops import preprocess

    names = ("yolov8n", "yolo11n")

    def build(folder):
        images = [read_bgr(p) for p in coco128_images[:16]]
        x = torch.from_numpy(preprocess(images, (640, 640))[0])
        with quiet():
            from ultralytics import YOLO

            for name in names:
                torch.manual_seed(0)
                model = YOLO(f"{name}.yaml")
                net = model.model
                bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
                for m in bns:
                    m.reset_running_stats()
                    m.momentum = None  # cumulative average over the calibration batches
                net.train()
                with torch.no_grad():
                    for i in range(0, len(x), 4):
                        net(x[i : i + 4])
                for m in bns:
                    m.momentum = 0.03
                net.eval()
                model.save(folder / f"{name}.pt")

    folder = built_once(tmp_path_factory, "ultralytics", build)
    return {name: folder / f"{name}.pt" for name in names}


@pytest.fixture(scope="session")
def autoshape():
    """The YOLOv5 package's own inference wrapper (AutoShape) around the real YOLOv5n."""
    import torch

    from yolo_accel._deps import quiet

    def load(path: Path):
        with quiet():
            import yolov5.models.yolo  # noqa: F401  (puts the YOLOv5 code where the pickle looks)
            from yolov5.models.common import AutoShape

            ckpt = torch.load(path, map_location="cpu", weights_only=False)
            return AutoShape(ckpt["model"].float().fuse().eval())

    return load


def read_bgr(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path))
    assert img is not None, path
    return img


def static_libstdcxx_compiler(folder: Path) -> Path:
    """A g++ like the H100's $CXX (/opt/gcc/bin/g++): no libstdc++.so, so shared objects get the archive.

    It answers `-print-file-name=libstdc++.so` with the bare name, as gcc does when the file is not
    on its library path, and links every shared object with -static-libstdc++.
    """
    cxx = folder / "static-g++"
    cxx.write_text(
        "#!/usr/bin/env bash\n"
        'for a in "$@"; do\n'
        '  [ "$a" = -print-file-name=libstdc++.so ] && { echo libstdc++.so; exit 0; }\n'
        '  [ "$a" = -shared ] && exec g++ "$@" -static-libstdc++\n'
        "done\n"
        'exec g++ "$@"\n'
    )
    cxx.chmod(0o755)
    return cxx


def make_remuxed_clip(video: Path, out: Path, packets: int, faststart: bool = False) -> Path:
    """The first `packets` packets of `video` copied into `out` as they are (no decoding, no encoding):
    a shorter clip of the same real video. `faststart` puts the index first."""
    import av

    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(video)) as src, av.open(str(out), "w", options=options) as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        for i, packet in enumerate(src.demux(s_in)):
            if packet.dts is None or i >= packets:
                continue
            packet.stream = s_out
            dst.mux(packet)
    return out


def make_cut_clip(video: Path, folder: Path, packets: int = 200, keep: float = 0.6) -> Path:
    """The first `packets` packets of `video` with the index first (faststart), then cut to `keep` of its
    bytes: a truncated file that still opens, and whose decoder stops early."""
    data = make_remuxed_clip(video, folder / "faststart.mp4", packets, faststart=True).read_bytes()
    cut = folder / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


def make_plate_clip(assets_root: Path, out: Path, frames: int = 60) -> tuple[Path, str, int]:
    """A 1280x720 clip of one of the shared real plate photos sliding down the frame (the car crosses
    y=360 half way), so that a detector, a tracker, a counting line and a plate reader all have work.
    Returns the clip, the plate's text and the photo's first row on the frame's last step."""
    import cv2

    label = (assets_root / "plates" / "us" / "wts-lg-000084.txt").read_text().split()
    photo = cv2.imread(str(assets_root / "plates" / "us" / label[0]))
    h, w = photo.shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (1280, 720))
    for i in range(frames):
        canvas = np.full((720, 1280, 3), 90, np.uint8)
        dy = int(-360 + 720 * i / (frames - 1))  # the photo moves from 360 px up to 360 px down
        src = photo[max(0, -dy) : min(h, 720 - dy), : min(w, 1280)]
        canvas[max(0, dy) : max(0, dy) + src.shape[0], : src.shape[1]] = src
        writer.write(canvas)
    writer.release()
    return out, label[5], frames


def wait_in_page(page, expression: str, timeout: float = 30_000) -> None:
    """Playwright's wait_for_function, for pages under a Content-Security-Policy: that one evaluates its
    predicate with eval(), which the app's CSP refuses; page.evaluate goes through the debugger instead."""
    import time

    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(f"() => Boolean({expression})"):
        assert time.monotonic() < deadline, f"not true within {timeout / 1000:g} s: {expression}"
        time.sleep(0.1)


def wait_until_serving(port: int, proc, seconds: float = 90) -> None:
    """Until the `serve` process `proc` answers /healthz on `port`; its output in the failure otherwise."""
    import time

    import httpx

    deadline = time.time() + seconds
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(proc.stdout.read().decode()) from None
            time.sleep(0.3)
