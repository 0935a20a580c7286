"""The YAML files a user gives (data.yaml, a gates file, a names file, deploy.yaml) are read with
bounds: a small file whose aliases expand to a billion values, an oversized file, and gates that no
backend could meet (or that every backend meets) are one line, before any work."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from yolo_accel.cli import app
from yolo_accel.deploy import load_deploy
from yolo_accel.errors import DataError
from yolo_accel.evaluate.datasets import load_dataset
from yolo_accel.evaluate.gates import load_gates
from yolo_accel.names import load_names_file
from yolo_accel.yamlfile import MAX_NODES, read_yaml


def _laughs(levels: int = 9) -> str:
    """The classic: each level a list of ten aliases of the one before (10**9 values at 9 levels)."""
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_is_refused_by_every_reader(tmp_path):
    bomb = _laughs()
    assert len(bomb) < 1500
    data = tmp_path / "data.yaml"
    data.write_text(f"{bomb}names: *a9\nval: images\n")
    with pytest.raises(DataError, match=r"aliases expand to \d,\d{3},\d{3},\d{3} values"):
        load_dataset(data)
    names = tmp_path / "names.yaml"
    names.write_text(f"{bomb}names: *a9\n")
    with pytest.raises(DataError, match="over 1,000,000"):
        load_names_file(names)
    gates = tmp_path / "gates.yaml"
    gates.write_text(bomb)
    with pytest.raises(DataError, match="aliases expand"):
        load_gates(gates)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "deploy.yaml").write_text(f"{bomb}format: yolo-accel-deploy/1\n")
    with pytest.raises(DataError, match="aliases expand"):
        load_deploy(tmp_path / "b")


def test_aliases_within_the_bound_still_load(tmp_path):
    """The bound is on the expanded size, not on aliases: a file that reuses a block loads as before,
    and so does one just under the limit."""
    f = tmp_path / "x.yaml"
    f.write_text("base: &b {conf: 0.25}\nfirst: *b\nsecond: *b\n")
    assert read_yaml(f) == {"base": {"conf": 0.25}, "first": {"conf": 0.25}, "second": {"conf": 0.25}}
    f.write_text(_laughs(5))  # about 235,000 values expanded: under MAX_NODES
    doc = read_yaml(f)
    assert len(doc["a5"]) == 10 and len(doc["a5"][0][0][0][0]) == 10 and doc["a5"][0][0][0][0][0] == ["lol"]
    assert MAX_NODES == 1_000_000


def test_a_huge_or_binary_yaml_is_one_line(tmp_path):
    big = tmp_path / "data.yaml"
    big.write_text("names: [" + "x, " * 2_000_000 + "]\n")
    with pytest.raises(DataError, match="over 4 MiB"):
        read_yaml(big)
    binary = tmp_path / "gates.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(DataError, match="not a text file"):
        load_gates(binary)


@pytest.mark.parametrize(
    "text, expect",
    [
        ("min_similarity: 500\n", "min_similarity must be a share from 0 to 1"),
        ("min_speedup: -3\n", "min_speedup must be a speedup from 0 to 1000"),
        ("min_speedup: .nan\n", "min_speedup must be"),
        ("max_map_loss_pct: 1000\n", "max_map_loss_pct must be a percentage from 0 to 100"),
        ("max_map_loss_pct: -1\n", "max_map_loss_pct must be"),
    ],
)
def test_gates_no_backend_could_meet_are_refused(tmp_path, text, expect):
    f = tmp_path / "gates.yaml"
    f.write_text(text)
    with pytest.raises(DataError, match=expect):
        load_gates(f)


def test_gates_in_range_load_and_a_percentage_is_a_share(tmp_path):
    f = tmp_path / "gates.yaml"
    f.write_text("min_similarity: 98\nmin_speedup: 1.2\nmax_map_loss_pct: 0.5\n")
    g = load_gates(f)
    assert (g.min_similarity, g.min_speedup, g.max_map_loss_pct) == (0.98, 1.2, 0.5)


def test_validate_refuses_a_bomb_and_a_bad_gate_before_the_model_loads(tmp_path, yolov5n_pt, assets_root):
    data = tmp_path / "data.yaml"
    data.write_text(f"{_laughs()}names: *a9\nval: images\n")
    gates = tmp_path / "gates.yaml"
    gates.write_text("min_similarity: 500\n")
    coco8 = assets_root / "datasets" / "coco8" / "data.yaml"
    for args, expect in (
        (["--data", str(data)], "aliases expand"),
        (["--data", str(coco8), "--gates", str(gates)], "min_similarity must be"),
    ):
        res = CliRunner().invoke(app, ["validate", "-m", str(yolov5n_pt), *args, "--report-dir", str(tmp_path / "r")])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1 and expect in lines[0], res.output
    assert not (tmp_path / "r").exists()
