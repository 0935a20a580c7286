"""Scaling out on Ray: video streams over engines on many GPUs, image folders with Ray Data."""
