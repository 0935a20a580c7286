"""Reading back what `video` writes: the events file (JSON lines) and the summary (JSON).

Both are checked field by field, so a program that re-reads them (a dashboard, the web app) gets
either the records or one DataError that names the file and line, never a half-understood record.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import DataError

EVENT_FIELDS = ("frame", "time_s", "counter", "track_id", "class_id", "class_name", "direction")


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file (a {what} is JSON)") from None


def check_event(ev, where: str) -> dict:
    """One crossing event, as `video --events` writes it; DataError naming `where` otherwise."""
    if not isinstance(ev, dict):
        raise DataError(f"{where}: an event is a JSON object")
    missing = [k for k in EVENT_FIELDS if k not in ev]
    if missing:
        raise DataError(f"{where}: the event lacks {', '.join(missing)}")
    if not (_int(ev["frame"]) and ev["frame"] >= 0 and _number(ev["time_s"]) and ev["time_s"] >= 0):
        raise DataError(f"{where}: `frame` must be a whole number >= 0 and `time_s` a number >= 0")
    if not (_int(ev["track_id"]) and _int(ev["class_id"]) and ev["class_id"] >= 0):
        raise DataError(f"{where}: `track_id` and `class_id` must be whole numbers")
    if not (isinstance(ev["counter"], str) and isinstance(ev["class_name"], str)):
        raise DataError(f"{where}: `counter` and `class_name` must be text")
    if ev["direction"] not in ("in", "out"):
        raise DataError(f"{where}: `direction` must be 'in' or 'out'")
    return ev


def read_events(path: str | Path) -> list[dict]:
    """Every event of an events file (one JSON object per line; blank lines skipped)."""
    p = Path(path)
    out = []
    for n, line in enumerate(_read_text(p, "events file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise DataError(f"{p}:{n}: not a JSON line") from None
        out.append(check_event(ev, f"{p}:{n}"))
    return out


def _check_stream(s, where: str) -> None:
    if not isinstance(s, dict):
        raise DataError(f"{where}: a stream summary is a JSON object")
    for key in ("frames", "dropped_frames", "detections", "tracks"):
        if not (_int(s.get(key)) and s[key] >= 0):
            raise DataError(f"{where}: `{key}` must be a whole number >= 0")
    if not _number(s.get("fps")):
        raise DataError(f"{where}: `fps` must be a number")
    counts = s.get("counts")
    if not isinstance(counts, dict):
        raise DataError(f"{where}: `counts` must map counters to classes to in/out numbers")
    for counter, per in counts.items():
        if not isinstance(per, dict):
            raise DataError(f"{where}: counts of {str(counter)[:40]!r} must map classes to in/out numbers")
        for name, v in per.items():
            if not (isinstance(v, dict) and all(_int(v.get(k)) and v[k] >= 0 for k in ("in", "out"))):
                raise DataError(f"{where}: counts of {str(counter)[:40]}/{str(name)[:40]} need whole numbers in, out")
    stages = s.get("stages")
    if not isinstance(stages, list) or not all(
        isinstance(t, dict) and isinstance(t.get("stage"), str) and _number(t.get("mean_ms")) for t in stages
    ):
        raise DataError(f"{where}: `stages` must be a list of {{stage, mean_ms, ...}}")
    if s.get("error") is not None and not isinstance(s["error"], str):
        raise DataError(f"{where}: `error` must be text or null")


def read_summary(path: str | Path) -> dict:
    """A `video --summary` file: one stream's summary, or several under `streams` with the totals."""
    p = Path(path)
    try:
        data = json.loads(_read_text(p, "summary"))
    except (json.JSONDecodeError, RecursionError):
        raise DataError(f"{p}: not valid JSON") from None
    if not isinstance(data, dict):
        raise DataError(f"{p}: a summary is a JSON object")
    if "streams" in data:
        streams = data["streams"]
        if not isinstance(streams, list) or not streams:
            raise DataError(f"{p}: `streams` must be a non-empty list")
        for i, s in enumerate(streams):
            _check_stream(s, f"{p}: stream {i}")
        if not (_int(data.get("frames")) and _number(data.get("fps"))):
            raise DataError(f"{p}: the totals need whole-number `frames` and a number `fps`")
    else:
        _check_stream(data, str(p))
    return data
