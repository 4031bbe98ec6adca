"""The ``newsletter`` command: parse, call, print. Commands live in newsletter/commands/.

User errors (NewsletterError) print one line on stderr and exit 1, never a
traceback; usage errors exit 2 (click's own convention). A bug (any other
exception) is one line too: the traceback goes to a log file that the line names,
or to stderr with ``--verbose``.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from newsletter.commands._console import make_console
from newsletter.config import load_settings
from newsletter.errors import NewsletterError, driver_message

err_console = make_console(stderr=True)


@dataclass(frozen=True)
class _Entry:
    """A command of the root: where it lives, and its one-line help for ``--help``."""

    module: str
    attribute: str
    help: str


# The commands, loaded only when run: ``newsletter --help`` and ``newsletter db upgrade``
# should not pay for premailer, the sendgrid client or the web app. This table and
# ``_LazyCommands._load`` are the one seam where a module is imported late.
_COMMANDS = "newsletter.commands."
COMMANDS: dict[str, _Entry] = {
    "comparisons": _Entry(_COMMANDS + "comparisons", "app", "Import, list and inspect comparisons."),
    "issue": _Entry(_COMMANDS + "issues", "app", "Build, edit and inspect issues."),
    "preview": _Entry(_COMMANDS + "issues", "preview", "Write (or serve) an issue as a reader sees it."),
    "subscribers": _Entry(_COMMANDS + "subscribers", "app", "Add, import, export, list, remove subscribers."),
    "send": _Entry(_COMMANDS + "delivery", "send", "Send an issue to everyone not yet mailed."),
    "status": _Entry(_COMMANDS + "delivery", "status", "Where an issue's delivery stands."),
    "serve": _Entry(_COMMANDS + "server", "serve", "Serve the site, the admin and the scheduler."),
    "tick": _Entry(_COMMANDS + "schedule", "tick", "Run the weekly job once, as the scheduler would."),
    "schedule": _Entry(_COMMANDS + "schedule", "schedule_app", "The weekly schedule."),
    "db": _Entry(_COMMANDS + "db", "db_app", "Database schema."),
}


class _LazyCommands(TyperGroup):
    """Lists every command from ``COMMANDS`` and imports one only when it runs."""

    # (typer vendors its own click: its types are private, hence ``Any`` for them here.)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        # Asked for by the help listing too: a stub with the name and help, nothing imported.
        entry = COMMANDS.get(cmd_name)
        return None if entry is None else TyperCommand(cmd_name, help=entry.help)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, _stub, rest = super().resolve_command(ctx, args)
        return name, (_load(name) if name else None), rest


def _load(name: str) -> Any:
    entry = COMMANDS[name]
    target = getattr(importlib.import_module(entry.module), entry.attribute)
    start_collecting()
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        return group
    single = typer.Typer()
    single.command(name)(target)
    return typer.main.get_command(single)


def start_collecting() -> None:
    """The garbage collector back on, if start-up switched it off (newsletter/__main__.py),
    with everything allocated so far frozen: it all lives until exit, so no collection
    needs to walk it again (``gc.freeze``)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _is_database_error(error: Exception) -> bool:
    # SQLAlchemy is loaded by the commands that use a database, never by the root.
    exc = sys.modules.get("sqlalchemy.exc")
    return exc is not None and isinstance(error, exc.OperationalError)


class _UserErrorsAsOneLine(_LazyCommands):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as error:
            err_console.print(Text.assemble(("error:", "bold red"), f" {error}"))
            raise typer.Exit(error.exit_code) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer's own exits and usage errors (exit 2) keep their meaning
        except Exception as error:
            if _is_database_error(error):
                # The database went away or stayed locked: the user's to fix, not a bug to trace.
                message = f" database: {driver_message(error)}"
                err_console.print(Text.assemble(("error:", "bold red"), message))
                raise typer.Exit(1) from None
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
