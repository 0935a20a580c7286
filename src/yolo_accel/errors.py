"""Errors that the user can fix. The CLI turns each into one red line and exit code 2.

Anything else that escapes is a bug in yolo-accel and keeps its traceback.
"""

from __future__ import annotations


def summary(e: BaseException) -> str:
    """`TypeName: first line of the message` (at most 300 characters of it), for one-line reports of
    errors raised by the libraries underneath."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"


def message(e: BaseException) -> str:
    """One line for an error that stops one part of a run (a stream, a benchmark row): our own errors'
    messages as they are, anything else as `summary` gives it."""
    return str(e) if isinstance(e, YoloAccelError) else summary(e)


class YoloAccelError(Exception):
    """Base class: bad input or a broken environment, with a message that says what and where."""

    exit_code = 2


class ModelError(YoloAccelError):
    """A model file that is missing, unreadable, truncated or of an unexpected shape."""


class DataError(YoloAccelError):
    """An image, folder, dataset or label that cannot be used."""


class DeviceError(YoloAccelError):
    """A device or execution provider that was asked for but is not available."""


class MissingDependencyError(YoloAccelError):
    """An optional dependency (an extra) is not installed."""

    def __init__(self, what: str, extra: str | None = None, package: str | None = None):
        if extra:
            hint = f"pip install 'yolo-accel[{extra}]'"
        else:
            hint = f"pip install {package or what}"
        super().__init__(f"{what} is not installed: {hint}")


class ExportError(YoloAccelError):
    """An export that could not be completed (nothing is left behind)."""


class OutputExistsError(YoloAccelError):
    """An output file exists and --force was not given."""


class OutputPathError(YoloAccelError):
    """An output path that cannot be written: a folder where a file goes, a read-only folder, a full disk."""


def os_error_line(e: OSError) -> str:
    """An operating-system error as one line a user can act on: what failed, and on which path."""
    what = e.strerror or str(e) or type(e).__name__
    names = [str(n) for n in (e.filename, e.filename2) if n]
    return f"{what}: {' -> '.join(names)}" if names else what


class SettingsError(YoloAccelError):
    """An option value that cannot be used."""


class YoloAccelWarning(UserWarning):
    """A setting was adjusted (e.g. an image size rounded up to the stride)."""
