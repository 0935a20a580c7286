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
    keep = ("PYTHONPATH", "YOLO_ACCEL_ASSETS", "YOLO_ACCEL_CACHE", "YOLO_OFFLINE", "YOLO_ACCEL_CXX")
    return {"env_vars": {k: os.environ[k] for k in keep if k in os.environ}}


def gpu_count(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def cpu_count(ray) -> int:
    return int(ray.cluster_resources().get("CPU", 0))
