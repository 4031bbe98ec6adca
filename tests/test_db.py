"""The schema upgrades on both backends, and `newsletter db upgrade` is idempotent."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.db import open_database
from newsletter.tables import Base


def test_db_upgrade_creates_every_table(env: dict[str, str]) -> None:
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
    tables = set(inspect(open_database(env["NEWSLETTER_DATABASE_URL"])).get_table_names())
    assert {"tools", "comparisons", "subscribers", "deliveries", "schedule_slots"} <= tables


def test_migrations_match_the_tables(env: dict[str, str]) -> None:
    """A table or a column type changed without a migration shows up here as a difference."""
    engine = open_database(env["NEWSLETTER_DATABASE_URL"])
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
