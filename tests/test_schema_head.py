"""Opening an up-to-date database skips alembic; one that is behind is upgraded."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from newsletter.db import (
    SCHEMA_HEAD,
    alembic_config,
    dispose_engines,
    get_engine,
    open_database,
    schema_revision,
)


def test_schema_head_is_the_newest_migration(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'head.db'}")
    heads = ScriptDirectory.from_config(alembic_config(engine)).get_heads()
    assert heads == [SCHEMA_HEAD], "bump newsletter.db.SCHEMA_HEAD with each new migration"
    dispose_engines()


def test_a_database_behind_the_head_is_upgraded_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    engine = get_engine(url)
    assert schema_revision(engine) is None  # a new file: no schema at all
    command.upgrade(alembic_config(engine), "0002")
    assert schema_revision(engine) == "0002"
    assert "lease_until" not in _columns(engine, "delivery_batches")  # migration 0004's
    open_database(url)
    assert schema_revision(engine) == SCHEMA_HEAD
    assert "lease_until" in _columns(engine, "delivery_batches")
    dispose_engines()


def test_an_up_to_date_database_opens_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'current.db'}"
    open_database(url)
    dispose_engines()
    engine = get_engine(url)
    calls: list[str] = []
    original = command.upgrade
    command.upgrade = lambda *args, **kwargs: calls.append("upgrade")  # type: ignore[assignment]
    try:
        open_database(url)
    finally:
        command.upgrade = original
    assert calls == []
    assert schema_revision(engine) == SCHEMA_HEAD
    dispose_engines()


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}
