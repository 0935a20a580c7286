"""Backends map a prepared batch (NCHW, RGB, [0, 1]) to the raw head output, nothing else."""

from .base import BACKENDS, Backend, BackendSpec, get_backend_spec

__all__ = ["BACKENDS", "Backend", "BackendSpec", "get_backend_spec"]
