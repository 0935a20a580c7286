"""Reports: JSON (for machines), Markdown and a self-contained HTML page with matplotlib plots."""

from .validation import write_validation_report

__all__ = ["write_validation_report"]
