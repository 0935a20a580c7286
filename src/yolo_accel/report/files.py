"""Writing a report's three files: JSON (unless re-rendering), Markdown and HTML, each atomically."""

from __future__ import annotations

from pathlib import Path

from ..runs import write_json_atomic, write_text_atomic


def write_report_files(
    report: dict, folder: str | Path, stem: str, md: str, page: str, write_json: bool = True
) -> dict[str, Path]:
    """STEM.json, STEM.md and STEM.html in `folder` (the pages are rendered before this is called, so a
    rendering error writes nothing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json_atomic(folder / f"{stem}.json", report)} if write_json else {}
    paths["md"] = write_text_atomic(folder / f"{stem}.md", md)
    paths["html"] = write_text_atomic(folder / f"{stem}.html", page)
    return paths
