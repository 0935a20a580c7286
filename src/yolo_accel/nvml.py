"""GPU memory as NVML reports it (nvidia-ml-py, the `gpu` extra); None wherever NVML cannot tell."""

from __future__ import annotations


def nvml_process_memory(device_index: int = 0) -> int | None:
    """GPU memory this process holds on the device, from NVML (None where NVML cannot tell)."""
    try:
        import os

        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if p.pid == os.getpid() and p.usedGpuMemory is not None:
                return int(p.usedGpuMemory)
        return None
    except Exception:  # no NVML, no permission, or a container that hides pids
        return None


def nvml_device_used(device_index: int = 0) -> int | None:
    """Memory in use on the whole device (a fallback where per-process numbers are hidden)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(device_index)).used)
    except Exception:
        return None
