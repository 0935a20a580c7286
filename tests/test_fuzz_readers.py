"""Every reader of user files, fed random and mutated inputs (hypothesis): a YoloAccelError or a valid
result, never another exception. Readers: YOLO label files, data.yaml, COCO JSON, images, ONNX
metadata, our own JSON reports (`report`), and the events and summary files `video` writes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolo_accel.errors import YoloAccelError

FUZZ = settings(
    max_examples=int(os.environ.get("YOLO_ACCEL_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _accepts_or_refuses(fn, *args, **kwargs):
    """Run a reader: a YoloAccelError (refused, with a message) or a result; anything else fails the test."""
    try:
        return fn(*args, **kwargs)
    except YoloAccelError as e:
        assert str(e), "an error without a message"
        return None


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, value in edits:
        if b:
            b[pos % len(b)] = value
    return bytes(b)


edits = st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=8)


# -- YOLO labels and data.yaml ------------------------------------------------------------------
label_line = st.one_of(
    st.text(max_size=40),
    st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 100), st.text(max_size=4)),
        min_size=0,
        max_size=7,
    ).map(lambda xs: " ".join(str(x) for x in xs)),
)


@pytest.fixture(scope="module")
def label_folder(tmp_path_factory, sample_images):
    folder = tmp_path_factory.mktemp("labels")
    shutil.copy(sample_images[0], folder / "a.jpg")
    return folder


@FUZZ
@given(lines=st.lists(label_line, max_size=6))
def test_yolo_label_files(label_folder, lines):
    from yolo_accel.evaluate.datasets import load_dataset

    (label_folder / "a.txt").write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    ds = _accepts_or_refuses(load_dataset, label_folder)
    if ds is not None:
        rows = ds.items[0].labels
        assert rows.shape[1] == 5 and np.isfinite(rows).all() and (rows[:, 1:] >= 0).all() and (rows[:, 1:] <= 1).all()


@FUZZ
@given(cfg=json_values, raw=st.binary(max_size=200), use_raw=st.booleans())
def test_data_yaml(tmp_path_factory, label_folder, cfg, raw, use_raw):
    import yaml

    from yolo_accel.evaluate.datasets import load_dataset

    d = tmp_path_factory.mktemp("yaml")
    path = d / "data.yaml"
    if use_raw:
        path.write_bytes(raw)
    else:
        if isinstance(cfg, dict):
            cfg.setdefault("names", ["car"])
            cfg.setdefault("val", str(label_folder))
        path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    ds = _accepts_or_refuses(load_dataset, path)
    if ds is not None:
        assert ds.names and all(isinstance(n, str) for n in ds.names.values())


# -- COCO JSON ------------------------------------------------------------------------------------
def _valid_coco() -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 40], "iscrowd": 0}],
        "categories": [{"id": 3, "name": "car"}],
    }


def _poke(obj, path: list[int], value):
    """Replace one nested value of a JSON structure (chosen by `path`) by `value`."""
    node = obj
    for k in path:
        if isinstance(node, dict) and node:
            key = sorted(node)[k % len(node)]
            if not isinstance(node[key], (dict, list)):
                node[key] = value
                return obj
            node = node[key]
        elif isinstance(node, list) and node:
            i = k % len(node)
            if not isinstance(node[i], (dict, list)):
                node[i] = value
                return obj
            node = node[i]
        else:
            break
    return obj


@FUZZ
@given(path=st.lists(st.integers(0, 20), min_size=1, max_size=5), value=json_values, whole=json_values)
def test_coco_json(tmp_path_factory, path, value, whole):
    from yolo_accel.evaluate.datasets import load_dataset

    d = tmp_path_factory.mktemp("coco")
    for i, doc in enumerate((_poke(_valid_coco(), path, value), whole)):
        f = d / f"ann{i}.json"
        f.write_text(json.dumps(doc), encoding="utf-8")
        ds = _accepts_or_refuses(load_dataset, f)
        if ds is not None:
            assert all(np.isfinite(it.labels).all() for it in ds.items)


# -- images and ONNX ------------------------------------------------------------------------------
@FUZZ
@given(cut=st.floats(0, 1), mutation=edits, raw=st.binary(max_size=300))
def test_images(tmp_path_factory, sample_images, cut, mutation, raw):
    from yolo_accel.images import read_image

    d = tmp_path_factory.mktemp("img")
    data = sample_images[1].read_bytes()
    for i, blob in enumerate((data[: int(len(data) * cut)], _mutate(data, mutation), raw)):
        f = d / f"x{i}.jpg"
        f.write_bytes(blob)
        img = _accepts_or_refuses(read_image, f)
        if img is not None:
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, 4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [84, 3, 1, 1], np.zeros(84 * 3, np.float32))
    conv = helper.make_node("Conv", ["images", "w"], ["c"], strides=[8, 8])
    flat = helper.make_node("Reshape", ["c", "shape"], ["output0"])
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, 84, 4])
    graph = helper.make_graph([conv, flat], "g", [x], [y], initializer=[w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="names", value=json.dumps({str(i): f"c{i}" for i in range(80)}))
    return model.SerializeToString()


@FUZZ
@given(mutation=edits, raw=st.binary(max_size=300), cut=st.floats(0, 1))
def test_onnx_metadata(tmp_path_factory, small_onnx, mutation, raw, cut):
    from yolo_accel.model import read_onnx

    d = tmp_path_factory.mktemp("onnx")
    for i, blob in enumerate((_mutate(small_onnx, mutation), raw, small_onnx[: int(len(small_onnx) * cut)])):
        f = d / f"m{i}.onnx"
        f.write_bytes(blob)
        got = _accepts_or_refuses(read_onnx, f)
        if got is not None:
            _, info = got  # (the ONNX proto, ModelInfo)
            assert info.names and all(isinstance(n, str) for n in info.names.values())


# -- our own files ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bench_report() -> dict:
    from yolo_accel.assets import find_asset

    root = find_asset("models/yolov5n.pt").parent.parent.parent.parent
    path = Path(__file__).parent.parent / "bench" / "results" / "cpu2-yolov5n.json"
    assert path.is_file(), root
    return json.loads(path.read_text())


@FUZZ
@given(path=st.lists(st.integers(0, 40), min_size=1, max_size=6), value=json_values, drop=st.integers(0, 40))
@pytest.mark.slow
def test_report_json(tmp_path_factory, bench_report, path, value, drop):
    from yolo_accel.report import rerender

    d = tmp_path_factory.mktemp("report")
    doc = _poke(json.loads(json.dumps(bench_report)), path, value)
    if isinstance(doc, dict) and doc:
        doc.pop(sorted(doc)[drop % len(doc)], None) if drop % 3 == 0 else None
    (d / "bench.json").write_text(json.dumps(doc), encoding="utf-8")
    paths = _accepts_or_refuses(rerender, d)
    if paths is None:
        assert not (d / "bench.md").exists() and not (d / "bench.html").exists()  # nothing half-written
    else:
        assert paths["md"].stat().st_size > 0 and paths["html"].stat().st_size > 0


@FUZZ
@given(raw=st.binary(max_size=200))
def test_report_random_bytes(tmp_path_factory, raw):
    from yolo_accel.report import rerender

    d = tmp_path_factory.mktemp("rawreport")
    (d / "bench.json").write_bytes(raw)
    assert _accepts_or_refuses(rerender, d) is None


def _event() -> dict:
    return {
        "frame": 12,
        "time_s": 0.48,
        "counter": "line1",
        "track_id": 3,
        "class_id": 2,
        "class_name": "car",
        "direction": "in",
    }


@FUZZ
@given(
    key=st.sampled_from(sorted(_event())), value=json_values, extra=st.text(max_size=30), raw=st.binary(max_size=100)
)
def test_events_file(tmp_path_factory, key, value, extra, raw):
    from yolo_accel.video.records import read_events

    d = tmp_path_factory.mktemp("events")
    bad = {**_event(), key: value}
    for i, blob in enumerate(
        (
            (json.dumps(_event()) + "\n" + json.dumps(bad) + "\n").encode(),
            (json.dumps(_event()) + "\n" + extra + "\n").encode("utf-8", "surrogatepass"),
            raw,
        )
    ):
        f = d / f"e{i}.jsonl"
        f.write_bytes(blob)
        events = _accepts_or_refuses(read_events, f)
        if events is not None:
            assert all(e["direction"] in ("in", "out") and isinstance(e["frame"], int) for e in events)


@pytest.fixture(scope="module")
def summaries() -> list[dict]:
    here = Path(__file__).parent.parent / "bench" / "results"
    return [json.loads((here / n).read_text()) for n in ("cpu2-video/one-720p-416.json", "h200-video/many16-h264.json")]


@FUZZ
@given(which=st.integers(0, 1), path=st.lists(st.integers(0, 40), min_size=1, max_size=6), value=json_values)
def test_summary_file(tmp_path_factory, summaries, which, path, value):
    from yolo_accel.video.records import read_summary

    d = tmp_path_factory.mktemp("summary")
    f = d / "s.json"
    f.write_text(json.dumps(_poke(json.loads(json.dumps(summaries[which])), path, value)), encoding="utf-8")
    s = _accepts_or_refuses(read_summary, f)
    if s is not None:
        assert isinstance(s["frames"], int)


def test_the_readers_accept_the_real_files(assets_root, summaries, tmp_path):
    """The same readers take the genuine files: the fuzzing above is not passing by refusing everything."""
    from yolo_accel.evaluate.datasets import load_dataset
    from yolo_accel.video.records import read_events, read_summary

    assert len(load_dataset(assets_root / "datasets" / "coco128" / "data.yaml").items) == 128
    for s in summaries:
        f = tmp_path / "s.json"
        f.write_text(json.dumps(s))
        assert read_summary(f)["frames"] == s["frames"]
    ev = tmp_path / "e.jsonl"
    ev.write_text(json.dumps(_event()) + "\n\n" + json.dumps({**_event(), "direction": "out"}) + "\n")
    assert [e["direction"] for e in read_events(ev)] == ["in", "out"]
    coco = tmp_path / "ann.json"
    coco.write_text(json.dumps(_valid_coco()))
    ds = load_dataset(coco)
    assert ds.names == {0: "car"} and ds.items[0].labels.tolist() == [[0, 10, 20, 40, 60]]
