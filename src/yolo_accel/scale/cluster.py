"""Starting or joining a Ray cluster, and what it holds."""

from __future__ import annotations

import os

from ..errors import SettingsError

RAY_HELP = (
    "Run on Ray: 'local' starts a Ray instance on this machine, 'auto' joins the cluster `ray start` made here, "
    "HOST:PORT or ray://HOST:10001 joins that cluster (the ray extra: pip install 'yolo-accel[ray]')."
)


def connect(address: str, num_cpus: int | None = None):
    """Ray, initialised: a local instance ('local') or the cluster at `address` ('auto' or HOST:PORT)."""
    from .._deps import require

    ray = require("ray")
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    common = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
    if not address:
        raise SettingsError("--ray needs a value: local, auto, or the cluster's HOST:PORT")
    quiet_ray_logs()
    try:
        if address == "local":
            # one CPU more than the machine has: CPU engines hold one each, and Ray Data's read and
            # write tasks still need one to run beside them
            cpus = num_cpus if num_cpus is not None else (os.cpu_count() or 1) + 1
            ray.init(num_cpus=cpus, runtime_env=_runtime_env(), **common)
        else:
            ray.init(address=address, runtime_env=_runtime_env(), **common)
    except ConnectionError as e:
        raise SettingsError(f"--ray {address}: no Ray cluster there ({str(e).splitlines()[0][:160]})") from None
    return ray


def _runtime_env() -> dict:
    """The environment actors need to find this package and its caches the way the driver does."""
    keep = (
        "PYTHONPATH",
        "YOLO_ACCEL_ASSETS",
        "YOLO_ACCEL_CACHE",
        "YOLO_OFFLINE",
        "YOLO_ACCEL_CXX",
        "YOLO_ACCEL_THREADS",
    )
    return {"env_vars": {k: os.environ[k] for k in keep if k in os.environ}}


def gpu_count(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def cpu_count(ray) -> int:
    return int(ray.cluster_resources().get("CPU", 0))


def check_model_here(model) -> None:
    """A missing, empty or corrupt model file is one line here, before Ray starts anything (on the
    cluster it would fail in every worker, each with a page of Ray's logging)."""
    from pathlib import Path

    from ..backends.base import BACKENDS
    from ..model import check_model_path, checkpoint_family

    p = check_model_path(model, tuple(sorted({x for s in BACKENDS.values() for x in s.suffixes})))
    if p.suffix.lower() == ".pt":
        checkpoint_family(Path(p))


def failure_line(e: BaseException) -> str:
    """The cause of a Ray error in one line: Ray wraps the actor's or task's own exception in pages of
    context, whose last line names it."""
    import re

    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else type(e).__name__
    m = re.match(r"^([\w.]+)\.(\w+): (.*)$", line)  # module.path.SomeError: what
    if m:
        line = m.group(3) if m.group(1).startswith("yolo_accel") else f"{m.group(2)}: {m.group(3)}"
    return line[:300]


def quiet_ray_logs() -> None:
    """Ray and Ray Data log progress and whole tracebacks to the terminal; the command prints its own
    progress and one line for an error (Ray's logs stay in /tmp/ray/session_latest/logs)."""
    import logging

    for name in ("ray", "ray.data", "ray.data.exceptions", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
