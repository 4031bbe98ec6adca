"""`newsletter db upgrade`: the schema. Light on purpose: no web app, no scheduler, no renderer."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from newsletter.commands._console import make_console
from newsletter.runtime import settings_and_engine

console = make_console()
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema to the newest migration."""
    settings, _engine = settings_and_engine()
    console.print(f"database is up to date ({_safe_url(settings.database_url)})")


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
