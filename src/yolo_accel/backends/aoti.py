"""Loading AOTInductor packages (`.pt2`): our metadata, the device and torch checks, a child-process trial.

`export/compiled.py` makes these packages; this module only reads and loads them, so that the
backend that runs them needs nothing from the exporter.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

from .._deps import quiet, require
from ..device import Device
from ..errors import ModelError, SettingsError
from ..model import check_model_path, file_sha256, info_from_metadata

METADATA_NAME = "yolo_accel.json"  # stored as <archive>/extra/yolo_accel.json


def gpu_name(dev: Device) -> str:
    import torch

    return torch.cuda.get_device_name(dev.index) if dev.is_cuda else "cpu"


def read_compiled_metadata(path: str | Path) -> dict:
    """Our metadata from a `.pt2` package, or ModelError when it is not one of ours."""
    p = check_model_path(path, (".pt2",))
    try:
        with zipfile.ZipFile(p) as z:
            name = next((n for n in z.namelist() if n.endswith(f"extra/{METADATA_NAME}")), None)
            if name is None:
                raise ModelError(f"{p}: a .pt2 package without yolo-accel metadata; export it with yolo-accel")
            return json.loads(z.read(name))
    except zipfile.BadZipFile as e:
        raise ModelError(f"{p}: not a .pt2 package (not a zip archive)") from e


# what the child process runs: torch alone, the same loader call as load_compiled
CHILD_LOAD = "import sys, torch; torch._inductor.aoti_load_package(sys.argv[1], device_index=int(sys.argv[2]))"


def check_loads_in_child(path: Path, device_index: int, timeout_s: float = 600.0, shown: str | None = None) -> None:
    """Load the package once in a child process before this process does; ModelError if the child fails.

    Why: on the project's H100 torch's AOTInductor loader killed whole processes with SIGSEGV
    inside the package (the std::regex of torch's `parse_device_str`, run while the model is
    constructed): the package had been built by a compiler that links libstdc++ statically
    (export/cxx.py now avoids that, but a `.pt2` from elsewhere may still be one). A crash cannot
    be caught in Python: a child takes the risk, and a bench or a video run gets one error line
    instead of dying. The verdict is cached per package content, torch, interpreter and
    device, so the check costs one child start per package and environment. `shown`: the name to put in
    messages (an export checks its temporary file under the final name).
    """
    from ..assets import cache_dir

    torch = require("torch")
    key_parts = [file_sha256(path), torch.__version__, sys.executable, device_index]
    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()[:16]
    marker = cache_dir() / "compiled" / "load-checks" / f"{key}.ok"
    if marker.is_file():
        return
    name = shown or path.name
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD_LOAD, str(path), str(device_index)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as e:
        raise ModelError(f"{name}: loading it in a test process took over {timeout_s:.0f} s") from e
    if child.returncode < 0:
        try:
            why = signal.Signals(-child.returncode).name
        except ValueError:
            why = f"signal {-child.returncode}"
        raise ModelError(
            f"{name}: torch's AOTInductor loader crashed ({why}) loading it in a test process, so this "
            "process does not load it; packages built by a C++ compiler that links libstdc++ statically do "
            "this: export it again here (`yolo-accel doctor` names the compiler) or run the .pt with --cuda-graph"
        )
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise ModelError(f"{name}: torch {torch.__version__} cannot load it: {last}")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"package": str(path), "torch": torch.__version__, "python": sys.executable}))


def load_compiled(path: str | Path, device: Device):
    """(callable, ModelInfo) for a `.pt2` package; the device and torch version must be the package's."""
    torch = require("torch")
    p = check_model_path(path, (".pt2",))
    meta = read_compiled_metadata(p)
    if meta["device_type"] != device.kind:
        raise SettingsError(
            f"{p.name} was compiled for {meta['device_type']}; run it with --device {meta['device_type']} "
            f"or export again with --device {device}"
        )
    built, running = meta["torch_version"].split("+")[0], torch.__version__.split("+")[0]
    if built.split(".")[:2] != running.split(".")[:2]:
        raise ModelError(
            f"{p.name} was compiled with torch {built}; this is torch {running}: export it again here "
            "(compiled packages are tied to the torch version)"
        )
    if device.is_cuda and meta.get("gpu") != gpu_name(device):
        import warnings

        warnings.warn(
            f"{p.name} was compiled on {meta.get('gpu')}, this is {gpu_name(device)}: export again if it fails",
            stacklevel=2,
        )
    index = device.index if device.is_cuda else -1
    check_loads_in_child(p, index)
    with quiet():
        fn = torch._inductor.aoti_load_package(str(p), device_index=index)
    return fn, info_from_metadata(p, "pt2", {**meta, "batch": None}, half=bool(meta.get("half")))
