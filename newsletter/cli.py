"""The ``newsletter`` command: parse, call, print. Commands live in newsletter/commands/.

User errors (NewsletterError) print one line on stderr and exit 1, never a
traceback; usage errors exit 2 (click's own convention).
"""

from __future__ import annotations

import logging
from typing import Any

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
