"""Trackers from the `trackers` library (ByteTrack, SORT), on supervision Detections."""

from __future__ import annotations

import numpy as np

from .._deps import require
from ..detections import Detections
from ..errors import SettingsError

TRACKERS = ("bytetrack", "sort", "none")


def to_supervision(d: Detections):
    """Our Detections -> supervision's (what trackers, zones and annotators take)."""
    sv = require("supervision")
    return sv.Detections(
        xyxy=d.xyxy.astype(np.float32), confidence=d.confidence.astype(np.float32), class_id=d.class_id.astype(int)
    )


def make_tracker(name: str, fps: float):
    """A tracker object with .update(sv.Detections) -> sv.Detections (tracker_id set), or None."""
    key = name.lower()
    if key == "none":
        return None
    trackers = require("trackers")
    if key == "bytetrack":
        return trackers.ByteTrackTracker(frame_rate=fps)
    if key == "sort":
        return trackers.SORTTracker(frame_rate=fps)
    raise SettingsError(f"unknown tracker {name!r}; use one of {', '.join(TRACKERS)}")
