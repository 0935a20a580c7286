"""The C++ compiler for AOTInductor packages (export/cxx.py): never one that links libstdc++ statically."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import static_libstdcxx_compiler
from typer.testing import CliRunner

from yolo_accel.cli import app
from yolo_accel.errors import ExportError
from yolo_accel.export import cxx

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

# the regex that torch's AOTInductor runtime (model_base.h, parse_device_str) compiles, in a library
REGEX_SOURCE = Path(__file__).parent / "data" / "regex_probe.cpp"
LOAD_AFTER_TORCH = "import ctypes, sys, torch; print(ctypes.CDLL(sys.argv[1]).probe_regex(b'cuda:3'))"


@pytest.mark.slow
def test_the_premise_a_static_libstdcxx_in_a_shared_object_breaks_std_regex_after_torch(tmp_path):
    """Why the module exists: the package's regex, linked with its own libstdc++, dies beside torch's."""
    src = REGEX_SOURCE
    outcomes = {}
    for name, compiler in (("static", static_libstdcxx_compiler(tmp_path)), ("dynamic", "g++")):
        lib = tmp_path / f"{name}.so"
        subprocess.run([str(compiler), "-O2", "-std=c++17", "-fPIC", "-shared", str(src), "-o", str(lib)], check=True)
        outcomes[name] = subprocess.run([sys.executable, "-c", LOAD_AFTER_TORCH, str(lib)], capture_output=True)
    assert outcomes["dynamic"].returncode == 0 and outcomes["dynamic"].stdout.strip() == b"3"
    assert outcomes["static"].returncode != 0  # std::bad_cast abort on the CPU machine (H100 packages: SIGSEGV)


def test_the_compiler_check_tells_shared_from_static(tmp_path):
    assert cxx.links_libstdcxx_dynamically("g++") is True
    assert cxx.links_libstdcxx_dynamically(str(static_libstdcxx_compiler(tmp_path))) is False
    assert cxx.links_libstdcxx_dynamically(str(tmp_path / "no-such-g++")) is None
    assert cxx.links_libstdcxx_dynamically("env g++") is True  # $CXX may be a command line (ccache g++)


def test_a_static_cxx_is_replaced_and_said(tmp_path, monkeypatch):
    monkeypatch.delenv(cxx.ENV, raising=False)
    monkeypatch.delenv("CXX", raising=False)
    assert cxx.package_compiler() == cxx.CompilerChoice("g++")
    static = static_libstdcxx_compiler(tmp_path)
    monkeypatch.setenv("CXX", str(static))
    choice = cxx.package_compiler()
    assert choice.cxx == shutil.which("g++")
    assert str(static) in choice.note and "statically" in choice.note and cxx.ENV in choice.note


def test_an_explicit_choice_wins_and_no_fit_is_one_error(tmp_path, monkeypatch):
    static = static_libstdcxx_compiler(tmp_path)
    monkeypatch.setenv(cxx.ENV, str(static))
    assert cxx.package_compiler() == cxx.CompilerChoice(str(static))  # the user's word, as given
    monkeypatch.setenv(cxx.ENV, str(tmp_path / "missing"))
    with pytest.raises(ExportError, match="does not run"):
        cxx.package_compiler()
    monkeypatch.delenv(cxx.ENV)
    monkeypatch.setenv("CXX", str(static))
    monkeypatch.setattr(cxx, "FALLBACKS", ())
    with pytest.raises(ExportError, match=f"links libstdc\\+\\+ statically.*set {cxx.ENV}"):
        cxx.package_compiler()


def test_doctor_names_the_compiler(tmp_path, monkeypatch):
    monkeypatch.delenv(cxx.ENV, raising=False)
    monkeypatch.setenv("CXX", str(static_libstdcxx_compiler(tmp_path)))
    res = CliRunner().invoke(app, ["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(res.output)["checks"]}
    line = checks["C++ compiler (compiled packages)"]
    assert line["status"] == "WARN" and shutil.which("g++") in line["detail"]
