"""The Typer app and the `command` decorator every command uses: one red line and an exit code for
every error a user can cause, never a traceback."""

from __future__ import annotations

import functools
import sys
import warnings

import click
import typer
from rich.markup import escape
from typer.core import TyperGroup

from ..console import err
from ..errors import YoloAccelError


class _OneLineUsageErrors(TyperGroup):
    """Click's usage errors (a value out of range, an unknown option, a missing argument) as the one red
    `error:` line every other error is, instead of Typer's boxed usage panel."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as e:
            from typer import rich_utils

            rich_utils.rich_format_error(e)  # no arguments: the help, as before
            sys.exit(e.exit_code)
        except click.ClickException as e:
            where = e.ctx.command_path if getattr(e, "ctx", None) is not None else "yolo-accel"
            line = f"[bold red]error:[/] {escape(e.format_message())} (see {where} -h)"
            err.print(line, highlight=False, soft_wrap=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            err.print("[bold red]error:[/] aborted", highlight=False, soft_wrap=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="yolo-accel",
    cls=_OneLineUsageErrors,
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
