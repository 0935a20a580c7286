"""Outputs that would overwrite or collide: two inputs with one name, an existing annotated image, an
output that is an input, two options naming one file. Each is refused before any work (or, for the
names, mirrored), and nothing the user had is touched."""

from __future__ import annotations

import shutil

import cv2
import pytest
from typer.testing import CliRunner

from yolo_accel.cli import app

runner = CliRunner()


@pytest.fixture
def same_names(tmp_path, sample_images):
    """bus.jpg and zidane.jpg, both called img.jpg, in two folders."""
    for folder, src in zip(("a", "b"), sample_images[:2], strict=True):
        (tmp_path / "dup" / folder).mkdir(parents=True)
        shutil.copy(src, tmp_path / "dup" / folder / "img.jpg")
    return tmp_path / "dup"


def _last_error(res) -> str:
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and lines and lines[-1].startswith("error:"), res.output
    return lines[-1]


def test_two_inputs_with_one_name_get_their_own_annotated_images(same_names, tmp_path, yolov5n_pt, sample_images):
    ann = tmp_path / "ann"
    res = runner.invoke(
        app, ["predict", str(same_names / "*" / "img.jpg"), "-m", str(yolov5n_pt), "--save-dir", str(ann)]
    )
    assert res.exit_code == 0, res.output
    assert sorted(str(p.relative_to(ann)) for p in ann.rglob("*.jpg")) == ["a/img.jpg", "b/img.jpg"]
    for folder in ("a", "b"):  # each is its own input, annotated: same size as the input it came from
        want = cv2.imread(str(same_names / folder / "img.jpg")).shape
        assert cv2.imread(str(ann / folder / "img.jpg")).shape == want
    assert cv2.imread(str(ann / "a" / "img.jpg")).shape != cv2.imread(str(ann / "b" / "img.jpg")).shape


def test_an_existing_annotated_image_needs_force(tmp_path, yolov5n_pt, sample_images):
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / sample_images[0].name).write_bytes(b"mine")
    res = runner.invoke(app, ["predict", str(sample_images[0]), "-m", str(yolov5n_pt), "--save-dir", str(ann)])
    assert "exists; pass --force" in _last_error(res)
    assert (ann / sample_images[0].name).read_bytes() == b"mine"


@pytest.mark.parametrize("option", ["--save-dir", "--save-json"])
def test_an_output_that_is_an_input_is_refused_even_with_force(tmp_path, yolov5n_pt, sample_images, option):
    image = tmp_path / "in" / sample_images[0].name
    image.parent.mkdir()
    shutil.copy(sample_images[0], image)
    before = image.read_bytes()
    target = image.parent if option == "--save-dir" else image
    res = runner.invoke(app, ["predict", str(image), "-m", str(yolov5n_pt), option, str(target), "--force"])
    assert "is an input of this run" in _last_error(res)
    assert image.read_bytes() == before


def test_two_options_naming_one_file_are_refused(tmp_path, yolov5n_pt, assets_root, same_names):
    ann = tmp_path / "ann"  # the JSON where one of the two annotated img.jpg would go
    args = ["predict", str(same_names / "*" / "img.jpg"), "-m", str(yolov5n_pt), "--save-dir", str(ann)]
    res = runner.invoke(app, [*args, "--save-json", str(ann / "b" / "img.jpg")])
    assert "--save-json and --save-dir (b/img.jpg) both name" in _last_error(res) and not ann.exists()
    out = tmp_path / "o.onnx"
    res = runner.invoke(app, ["export", str(yolov5n_pt), "-o", str(out), "--json", str(out)])
    assert "--output and --json both name" in _last_error(res) and not out.exists()
    clip = assets_root / "videos" / "highway_traffic_720p.mp4"
    x = tmp_path / "x.json"
    res = runner.invoke(app, ["video", str(clip), "-m", str(yolov5n_pt), "--events", str(x), "--summary", str(x)])
    assert "--summary and --events both name" in _last_error(res) and not x.exists()
    res = runner.invoke(app, ["video", str(clip), "-m", str(yolov5n_pt), "-o", str(clip), "--force"])
    assert "is an input of this run" in _last_error(res)


def test_two_exports_to_one_output_at_once_never_replace_each_other(tmp_path, yolov5n_pt):
    """Two real processes export to one -o at the same moment: one writes it, the other is one line and
    exit 2 (whichever check sees the file first: at the start, or when its export is done)."""
    import os
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "yolo-accel")
    target = tmp_path / "m.onnx"
    cmd = [exe, "export", str(yolov5n_pt), "-o", str(target), "--no-check", "--imgsz", "320"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)]
    assert loser.strip().splitlines()[-1].startswith("error:") and "pass --force" in loser, loser
    assert "Traceback" not in loser
    import onnx

    onnx.checker.check_model(onnx.load(str(target)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no partial file left by the loser


def test_an_export_finishing_after_another_keeps_the_first_file(tmp_path):
    """The end of an export without --force: a file that appeared at the target meanwhile stays."""
    from yolo_accel.errors import OutputExistsError
    from yolo_accel.export.common import ExportResult, keep_if_parity

    target, tmp = tmp_path / "m.onnx", tmp_path / ".m.123.partial.onnx"
    target.write_bytes(b"the other export's model")
    tmp.write_bytes(b"this export's model")
    result = ExportResult(path=None, target=target, info=None, settings=None, seconds=0.0)
    with pytest.raises(OutputExistsError, match="another run"):
        keep_if_parity(result, tmp, 0.0, force=False)
    assert target.read_bytes() == b"the other export's model" and not tmp.exists()
    tmp.write_bytes(b"this export's model")
    keep_if_parity(result, tmp, 0.0, force=True)  # --force: replaced, as asked
    assert target.read_bytes() == b"this export's model" and not tmp.exists()
