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
