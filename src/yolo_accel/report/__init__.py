"""Reports: JSON (for machines), Markdown and a self-contained HTML page with matplotlib plots."""

from .bench import write_bench_report
from .validation import write_validation_report

__all__ = ["rerender", "write_bench_report", "write_validation_report"]


def rerender(folder) -> dict:
    """Re-render the Markdown and HTML of a report folder (or JSON file) from its JSON."""
    import json
    from pathlib import Path

    from ..errors import DataError

    p = Path(folder)
    candidates = [p] if p.is_file() else [p / "bench.json", p / "report.json"]
    src = next((c for c in candidates if c.is_file()), None)
    if src is None:
        raise DataError(f"no bench.json or report.json in {p}")
    try:
        report = json.loads(src.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{src}: not valid JSON ({e})") from e
    kind = report.get("kind") if isinstance(report, dict) else None
    if kind == "bench":
        return write_bench_report(report, src.parent, write_json=False)
    if kind == "validation":
        return write_validation_report(report, src.parent, write_json=False)
    raise DataError(f"{src}: not a yolo-accel report (kind {kind!r})")
