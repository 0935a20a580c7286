"""$YOLO_ACCEL_THREADS: the CPU threads each runtime gets when the command line does not say."""

from __future__ import annotations

import pytest

from yolo_accel.device import cpu_threads
from yolo_accel.errors import SettingsError


def test_the_variable_sets_onnxruntimes_threads_and_an_option_wins(monkeypatch, yolov5n_onnx):
    from yolo_accel import Detector
    from yolo_accel.backends.ort import OrtOptions

    monkeypatch.setenv("YOLO_ACCEL_THREADS", "3")
    with Detector(yolov5n_onnx, backend="onnxruntime") as det:
        assert det.backend.session.get_session_options().intra_op_num_threads == 3
    with Detector(yolov5n_onnx, backend="onnxruntime", ort_options=OrtOptions(intra_op_threads=2)) as det:
        assert det.backend.session.get_session_options().intra_op_num_threads == 2
    monkeypatch.delenv("YOLO_ACCEL_THREADS")
    assert cpu_threads() == 0 and cpu_threads(4) == 4


@pytest.mark.parametrize("value", ["two", "-1", "1.5"])
def test_a_bad_value_is_one_settings_error(monkeypatch, value):
    monkeypatch.setenv("YOLO_ACCEL_THREADS", value)
    with pytest.raises(SettingsError, match="YOLO_ACCEL_THREADS"):
        cpu_threads()


def test_ray_engines_get_the_variable(monkeypatch):
    """Engines on Ray are processes Ray starts: they see the setting only through the job's runtime env."""
    from yolo_accel.scale.cluster import _runtime_env

    monkeypatch.setenv("YOLO_ACCEL_THREADS", "1")
    assert _runtime_env()["env_vars"]["YOLO_ACCEL_THREADS"] == "1"
    monkeypatch.delenv("YOLO_ACCEL_THREADS")
    assert "YOLO_ACCEL_THREADS" not in _runtime_env()["env_vars"]
