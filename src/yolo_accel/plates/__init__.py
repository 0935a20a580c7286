"""Licence plates: reading them from vehicle crops, and a synthetic test set to measure it on."""
