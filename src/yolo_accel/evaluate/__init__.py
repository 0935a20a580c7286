"""Evaluation that takes Detections and ground truth only, never a backend."""
