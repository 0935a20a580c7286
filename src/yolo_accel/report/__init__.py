"""Reports: JSON (for machines), Markdown and a self-contained HTML page with matplotlib plots."""

from .bench import write_bench_report
from .optimize import write_optimize_report
from .validation import write_validation_report

__all__ = ["rerender", "write_bench_report", "write_optimize_report", "write_validation_report"]


def rerender(folder, force: bool = False) -> dict:
    """Re-render the Markdown and HTML of a report folder (or JSON file) from its JSON.

    A file that is not one of our reports (not JSON, not text, another kind, fields missing or of
    the wrong type) is a DataError, and nothing is written; the Markdown and HTML already there
    are replaced only with `force`.
    """
    import json
    from pathlib import Path

    from ..errors import DataError, OutputExistsError

    p = Path(folder)
    candidates = [p] if p.is_file() else [p / "bench.json", p / "report.json"]
    src = next((c for c in candidates if c.is_file()), None)
    if src is None:
        raise DataError(f"no bench.json or report.json in {p}")
    try:
        report = json.loads(src.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{src}: not a text file (a yolo-accel report is JSON)") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise DataError(f"{src}: not valid JSON ({str(e)[:120]})") from None
    kind = report.get("kind") if isinstance(report, dict) else None
    writers = {
        "bench": (write_bench_report, "bench"),
        "validation": (write_validation_report, "report"),
        "optimize": (write_optimize_report, "report"),
    }
    if isinstance(kind, str) and kind in writers:
        write, stem = writers[kind]
        if not force:
            for suffix in (".md", ".html"):
                if (src.parent / f"{stem}{suffix}").exists():
                    raise OutputExistsError(f"{src.parent / (stem + suffix)} exists; pass --force to replace it")
        try:
            return write(report, src.parent, write_json=False)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as e:
            # the report's fields are read while rendering, before anything is written
            raise DataError(f"{src}: not a complete {kind} report ({type(e).__name__}: {str(e)[:120]})") from None
    raise DataError(f"{src}: not a yolo-accel report (kind {str(kind)[:40]!r})")
