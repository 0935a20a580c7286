"""A deploy bundle is checked before anything in it is loaded: its artifact inside it, with the bytes
its deploy.yaml hashes, every field of the right type and range. A `.pt` artifact is a pickle, which
runs code when it is loaded, so a bundle that lies must not get that far."""

from __future__ import annotations

import hashlib
import math
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from yolo_accel.cli import app
from yolo_accel.deploy import FORMAT, check_source_model, load_deploy
from yolo_accel.errors import DataError

ARTIFACT = b"an exported model's bytes"


def _document(**changes) -> dict:
    doc = {
        "format": FORMAT,
        "artifact": "model.onnx",
        "files": {"model.onnx": hashlib.sha256(ARTIFACT).hexdigest()},
        "variant": "onnxruntime",
        "device": "cpu",
        "imgsz": [640, 640],
        "batch": 1,
        "thresholds": {"conf": 0.25, "iou": 0.45, "max_det": 300},
        "source_model": "yolov5n.pt",
        "source_sha256": "0" * 64,
    }
    doc.update(changes)
    return doc


def _bundle(folder, doc: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(ARTIFACT)
    (folder / "deploy.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return folder


def test_a_bundle_that_says_the_truth_loads(tmp_path):
    cfg = load_deploy(_bundle(tmp_path / "b", _document()))
    assert cfg.artifact == tmp_path / "b" / "model.onnx" and cfg.imgsz == (640, 640) and cfg.max_det == 300


def _outside(tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "model.onnx").write_bytes(ARTIFACT)
    return other / "model.onnx"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"artifact": "../elsewhere/model.onnx"}, "a file name inside the bundle"),
        ({"artifact": "ABSOLUTE"}, "a file name inside the bundle"),
        ({"artifact": ".."}, "a file name inside the bundle"),
        ({"files": None}, "no `files` with the artifact's SHA-256"),
        ({"files": {"model.onnx": "f" * 64}}, "not the file the bundle was written with"),
        ({"files": {"other.onnx": "f" * 64}}, "no SHA-256 for model.onnx"),
        ({"files": {"model.onnx": "not a hash"}}, "no SHA-256 for model.onnx"),
        ({"imgsz": "640"}, "imgsz must be a list"),
        ({"imgsz": [640, "640"]}, "imgsz must be two whole numbers"),
        ({"imgsz": [True, 640]}, "imgsz must be two whole numbers"),
        ({"imgsz": [640]}, "imgsz must be two whole numbers"),
        ({"imgsz": [100000, 640]}, "imgsz must be two whole numbers from 32 to 8192"),
        ({"batch": -1}, "batch must be from 1 to 1024"),
        ({"batch": "1"}, "batch must be a whole number"),
        ({"variant": 123}, "variant must be text"),
        ({"variant": "tensorflow"}, "variant 'tensorflow'"),
        ({"device": ["cpu"]}, "device must be text"),
        ({"thresholds": {"conf": "0.25", "iou": 0.45}}, "thresholds.conf must be a number"),
        ({"thresholds": {"conf": math.nan, "iou": 0.45}}, "thresholds.conf must be from 0 to 1"),
        ({"thresholds": {"conf": 0.25, "iou": 4}}, "thresholds.iou must be from 0 to 1"),
        ({"thresholds": {"conf": 0.25, "iou": 0.45, "max_det": 0}}, "thresholds.max_det must be from 1"),
        ({"thresholds": [0.25, 0.45]}, "thresholds must be a mapping"),
        ({"source_sha256": "xyz"}, "source_sha256 is not a SHA-256"),
        ({"source_model": 7}, "source_model must be text"),
    ],
)
def test_a_bundle_that_lies_is_one_line(tmp_path, change, message):
    if change.get("artifact") == "ABSOLUTE":
        change = {"artifact": str(_outside(tmp_path))}
    folder = _bundle(tmp_path / "b", _document(**change))
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(".", r"\.")) as err:
        load_deploy(folder)
    assert "\n" not in str(err.value)


def test_replaced_bytes_and_a_symlink_out_are_refused(tmp_path):
    folder = _bundle(tmp_path / "b", _document())
    (folder / "model.onnx").write_bytes(b"another export's bytes")  # the artifact swapped
    with pytest.raises(DataError, match="not the file the bundle was written with"):
        load_deploy(folder)
    (folder / "model.onnx").unlink()
    os.symlink(_outside(tmp_path), folder / "model.onnx")  # same bytes, but outside the bundle
    with pytest.raises(DataError, match="points outside the bundle"):
        load_deploy(folder)


def test_validate_refuses_a_source_model_that_is_not_the_bundles(tmp_path, yolov5n_pt):
    folder = _bundle(tmp_path / "b", _document(source_model=str(yolov5n_pt), source_sha256="0" * 64))
    with pytest.raises(DataError, match="not the model the bundle was made from"):
        check_source_model(load_deploy(folder), yolov5n_pt)
    res = CliRunner().invoke(app, ["validate", "--deploy", str(folder), "--data", str(tmp_path)])
    assert res.exit_code == 2 and "not the model the bundle was made from" in res.output.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["predict", "video"])
def test_the_commands_refuse_an_artifact_outside_before_loading_it(tmp_path, sample_images, command):
    folder = _bundle(tmp_path / "b", _document(artifact="../elsewhere/model.onnx"))
    _outside(tmp_path)
    res = CliRunner().invoke(app, [command, str(sample_images[0]), "--deploy", str(folder)])
    last = res.output.strip().splitlines()[-1]
    assert res.exit_code == 2 and last.startswith("error:") and "a file name inside the bundle" in last, res.output


BAD_VALUES = {
    "artifact": st.sampled_from(["../model.onnx", "/tmp/model.onnx", "sub/model.onnx", "..", "", "model.pt"])
    | st.integers()
    | st.lists(st.text(max_size=3), max_size=2),
    "files": st.none()
    | st.dictionaries(st.sampled_from(["model.onnx", "x"]), st.text(max_size=70), max_size=2).filter(
        lambda d: d.get("model.onnx") != hashlib.sha256(ARTIFACT).hexdigest()
    )
    | st.text(max_size=5),
    "imgsz": st.text(max_size=5)
    | st.integers()
    | st.lists(st.integers(min_value=8193) | st.integers(max_value=31), min_size=2, max_size=2)
    | st.lists(st.integers(32, 8192), max_size=1)
    | st.lists(st.integers(32, 8192), min_size=3, max_size=4)
    | st.lists(st.booleans() | st.text(max_size=3) | st.floats(), min_size=2, max_size=2),
    "batch": st.integers(max_value=0) | st.integers(min_value=1025) | st.text(max_size=3) | st.booleans(),
    "variant": st.integers() | st.lists(st.text(max_size=3), max_size=2) | st.sampled_from(["", "tensorflow", "x-y"]),
    "device": st.integers() | st.lists(st.text(max_size=3), min_size=1, max_size=2),
    "thresholds": st.none()
    | st.text(max_size=3)
    | st.fixed_dictionaries(
        {
            "conf": st.floats(min_value=1.001) | st.floats(max_value=-0.001) | st.just(math.nan) | st.text(max_size=3),
            "iou": st.floats(0, 1),
        }
    )
    | st.fixed_dictionaries(
        {"conf": st.floats(0, 1), "iou": st.floats(0, 1), "max_det": st.integers(max_value=0) | st.text(max_size=2)}
    ),
    "source_sha256": st.text(max_size=70).filter(lambda v: not (len(v) == 64 and set(v) <= set("0123456789abcdef")))
    | st.integers(),
    "source_model": st.integers() | st.lists(st.text(max_size=3), min_size=1, max_size=2),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(st.sampled_from(sorted(BAD_VALUES)), st.none(), min_size=1, max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({k: BAD_VALUES[k] for k in keys})
    )
)
def test_no_generated_lying_bundle_loads(tmp_path, changes):
    """Generated deploy.yaml files, each with one to three fields wrong (types, ranges, paths out of the
    bundle, hashes off): every one is refused with one line, none is loaded."""
    doc = _document(**changes)
    if "files" in changes and changes["files"] is None:
        doc.pop("files")
    folder = _bundle(tmp_path / f"b{abs(hash(repr(changes)))}", doc)
    with pytest.raises(DataError) as err:
        load_deploy(folder)
    assert "\n" not in str(err.value)
