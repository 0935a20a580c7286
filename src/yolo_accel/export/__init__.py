"""Exports of a PyTorch checkpoint to deployable artifacts."""
