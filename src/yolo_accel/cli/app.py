"""The Typer app and the `command` decorator every command uses: one red line and an exit code for
every error a user can cause, never a traceback."""

from __future__ import annotations

import functools
import warnings

import typer
from rich.markup import escape

from ..console import err
from ..errors import YoloAccelError

app = typer.Typer(
    name="yolo-accel",
    help="Make YOLO detectors fast in production and prove that they are still right.\n\n"
    "Exit codes: 0 success, 1 an acceptance gate (parity) failed, 2 bad input or environment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"yolo-accel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Make YOLO detectors fast in production and prove that they are still right.

    Exit codes: 0 success, 1 an acceptance gate (parity) failed, 2 bad input or environment.
    """


def _show_warning(message, category, filename, lineno, file=None, line=None):
    err.print(f"[yellow]warning:[/] {message}", highlight=False)


def command(*args, **kwargs):
    """app.command that turns YoloAccelError into one red line and exit code 2."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*a, **kw):
            old = warnings.showwarning
            warnings.showwarning = _show_warning
            try:
                return fn(*a, **kw)
            except YoloAccelError as e:
                err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
                raise typer.Exit(e.exit_code) from None
            except OSError as e:  # a last resort: paths are checked before work starts
                from ..errors import os_error_line

                err.print(f"[bold red]error:[/] {escape(os_error_line(e))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except UnicodeError as e:  # a file that should be text is not
                why = escape(str(getattr(e, "reason", e)))
                err.print(f"[bold red]error:[/] a file is not valid text ({why})", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                err.print("[bold red]interrupted[/]")
                raise typer.Exit(130) from None
            finally:
                warnings.showwarning = old

        return app.command(*args, **kwargs)(run)

    return wrap
