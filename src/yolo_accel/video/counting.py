"""Line and zone counting with supervision, per class and direction, with one event per crossing."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .._deps import require
from ..errors import SettingsError


@dataclass
class LineSpec:
    name: str
    start: tuple[int, int]
    end: tuple[int, int]


@dataclass
class ZoneSpec:
    name: str
    polygon: np.ndarray  # (N, 2) int


MAX_COORDINATE = 100_000  # pixels: past any camera's frame, and far from float overflow


def _numbers(text: str, what: str) -> list[int]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SettingsError(f"{what} takes comma-separated pixel coordinates (got {text[:80]!r})") from None
    if not all(abs(v) <= MAX_COORDINATE for v in values):  # also refuses inf and nan
        raise SettingsError(f"{what} {text[:80]!r}: coordinates must be finite pixels within +-{MAX_COORDINATE}")
    return [round(v) for v in values]


def parse_line(text: str, i: int) -> LineSpec:
    v = _numbers(text, "--line")
    if len(v) != 4:
        raise SettingsError(f"--line takes x1,y1,x2,y2 (got {text!r})")
    if v[:2] == v[2:]:
        raise SettingsError(f"--line {text!r}: the two ends are the same point")
    return LineSpec(f"line{i}", (v[0], v[1]), (v[2], v[3]))


def parse_zone(text: str, i: int) -> ZoneSpec:
    v = _numbers(text, "--zone")
    if len(v) < 6 or len(v) % 2:
        raise SettingsError(f"--zone takes at least three x,y points (got {text!r})")
    return ZoneSpec(f"zone{i}", np.asarray(v, np.int64).reshape(-1, 2))


def check_in_frame(lines: list[str], zones: list[str], size: tuple[int, int], where: str) -> None:
    """A line or zone that does not touch the frame (`size` = width, height) counts nothing: refused."""
    import cv2

    w, h = size
    if w <= 0 or h <= 0:  # a source that does not know its size yet (some cameras): checked nowhere
        return
    rect = (0, 0, int(w), int(h))
    for i, text in enumerate(lines):
        spec = parse_line(text, i + 1)
        if not cv2.clipLine(rect, spec.start, spec.end)[0]:
            raise SettingsError(f"--line {text!r} lies outside the {w}x{h} frame of {where}: nothing can cross it")
    for i, text in enumerate(zones):
        poly = parse_zone(text, i + 1).polygon
        edges = zip(poly.tolist(), np.roll(poly, -1, axis=0).tolist())
        touches = any(cv2.clipLine(rect, tuple(a), tuple(b))[0] for a, b in edges)
        # no edge in the frame: the zone is outside it, or holds all of it (then a corner is inside)
        if not touches and cv2.pointPolygonTest(poly.astype(np.float32).reshape(-1, 1, 2), (0.5, 0.5), False) < 0:
            raise SettingsError(f"--zone {text!r} lies outside the {w}x{h} frame of {where}: nothing can enter it")


class Counter:
    """Counts tracked objects crossing lines (in / out) and entering / leaving zones, per class.

    Only tracked detections count (supervision's line counter would treat untracked ones as one
    track); the class of a crossing is the detection's class on the crossing frame.
    """

    def __init__(self, lines: list[LineSpec], zones: list[ZoneSpec], names: dict[int, str]):
        sv = require("supervision")
        anchor = (sv.Position.BOTTOM_CENTER,)  # where a vehicle touches the road
        self.names = names
        self.lines = [
            (spec, sv.LineZone(sv.Point(*spec.start), sv.Point(*spec.end), triggering_anchors=anchor)) for spec in lines
        ]
        self.zones = [(spec, sv.PolygonZone(spec.polygon, triggering_anchors=anchor)) for spec in zones]
        self._inside: dict[str, set[int]] = {spec.name: set() for spec in zones}
        self.counts: dict[str, dict[str, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: {"in": 0, "out": 0})
        )

    def update(self, frame_index: int, time_s: float, dets, record: bool = True) -> list[dict]:
        """Feed one frame's tracked supervision Detections; returns the events of this frame. With
        `record` False the lines and zones follow the tracks, but nothing is counted or returned."""
        if dets.tracker_id is None or len(dets) == 0:
            return []
        dets = dets[dets.tracker_id >= 0]
        events = []

        def emit(counter: str, k: int, direction: str):
            if not record:
                return
            cls = int(dets.class_id[k])
            name = self.names.get(cls, str(cls))
            self.counts[counter][name][direction] += 1
            events.append(
                {
                    "frame": frame_index,
                    "time_s": round(time_s, 3),
                    "counter": counter,
                    "track_id": int(dets.tracker_id[k]),
                    "class_id": cls,
                    "class_name": name,
                    "direction": direction,
                }
            )

        for spec, zone in self.lines:
            crossed_in, crossed_out = zone.trigger(dets)
            for k in np.flatnonzero(crossed_in):
                emit(spec.name, k, "in")
            for k in np.flatnonzero(crossed_out):
                emit(spec.name, k, "out")
        for spec, zone in self.zones:
            inside = zone.trigger(dets)
            seen = self._inside[spec.name]
            for k, tid in enumerate(dets.tracker_id):
                tid = int(tid)
                if inside[k] and tid not in seen:
                    seen.add(tid)
                    emit(spec.name, k, "in")
                elif not inside[k] and tid in seen:
                    seen.discard(tid)
                    emit(spec.name, k, "out")
        return events

    def as_dict(self) -> dict:
        return {c: {n: dict(v) for n, v in per.items()} for c, per in self.counts.items()}
