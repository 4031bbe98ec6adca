"""The ``newsletter`` command: parse, call, print. Commands live in newsletter/commands/.

User errors (NewsletterError) print one line on stderr and exit 1, never a
traceback; usage errors exit 2 (click's own convention). A bug (any other
exception) is one line too: the traceback goes to a log file that the line names,
or to stderr with ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import click
import typer
from rich.text import Text
from sqlalchemy.exc import OperationalError
from typer.core import TyperGroup

from newsletter.commands import comparisons, delivery, issues, server, subscribers
from newsletter.commands._console import make_console
from newsletter.config import load_settings
from newsletter.db import driver_message
from newsletter.errors import NewsletterError

err_console = make_console(stderr=True)


class _UserErrorsAsOneLine(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as error:
            err_console.print(Text.assemble(("error:", "bold red"), f" {error}"))
            raise typer.Exit(error.exit_code) from None
        except OperationalError as error:
            # The database went away or stayed locked: the user's to fix, not a bug to trace.
            err_console.print(Text.assemble(("error:", "bold red"), f" database: {driver_message(error)}"))
            raise typer.Exit(1) from None
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # typer's own exits and usage errors (exit 2) keep their meaning
        except Exception as error:
            if ctx.params.get("verbose"):
                traceback.print_exc()
                where = "traceback above"
            else:
                where = f"traceback in {_write_crash_log()}"
            message = f" unexpected {type(error).__name__}: {error} ({where})"
            err_console.print(Text.assemble(("error:", "bold red"), message))
            raise typer.Exit(1) from None


def _write_crash_log() -> Path:
    """The current exception's traceback in a file of its own, for a bug report."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(tempfile.gettempdir()) / f"newsletter-error-{stamp}-{os.getpid()}.log"
    path.write_text(traceback.format_exc(), encoding="utf-8")
    return path


app = typer.Typer(
    cls=_UserErrorsAsOneLine,
    help="Weekly AI Tool Verdicts: the newsletter engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(comparisons.app, name="comparisons")
app.add_typer(issues.app, name="issue")
app.add_typer(subscribers.app, name="subscribers")
issues.register(app)
delivery.register(app)
server.register(app)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens."),
) -> None:
    level = logging.DEBUG if verbose else getattr(logging, _configured_log_level())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _configured_log_level() -> str:
    """LOG_LEVEL from the settings; invalid settings are reported by the command itself."""
    try:
        return load_settings().log_level
    except NewsletterError:
        return "WARNING"


def main() -> None:
    app(prog_name="newsletter")
