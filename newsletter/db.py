"""Engine, sessions and schema upgrades. SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration (newsletter/migrations/versions). A database at this revision is
# opened without loading alembic; tests/test_db.py checks it against alembic's own head.
SCHEMA_HEAD = "0005"

_engines: dict[str, Engine] = {}


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def insert_or_ignore(bind: Engine | Connection, table: Table, index_elements: list[str] | None = None) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING``, which SQLite and PostgreSQL both speak.

    SQLAlchemy builds it with the dialect's own ``insert``: this takes it from the dialect
    package the engine runs on (``create_engine`` loaded it), so a SQLite install never loads
    PostgreSQL's, nor the other way round.
    """
    package = sys.modules[type(bind.dialect).__module__.rpartition(".")[0]]
    return package.insert(table).on_conflict_do_nothing(index_elements=index_elements)


def make_engine(url: str) -> Engine:
    """Create an engine; for a SQLite file, create its folder and tune it for concurrency."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"NEWSLETTER_DATABASE_URL is not a database URL: {exc}") from exc
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Several processes (serve, send, tick) share the file: wait for locks, don't fail.
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(parsed, **kwargs)
    if is_sqlite(engine):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def get_engine(url: str) -> Engine:
    """One engine per URL per process (engines own connection pools)."""
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url)
    return engine


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


# The one late import of this module, a documented seam like the CLI's and the provider
# registry's: alembic (~0.15 s to import) loads only when a schema is behind or when asked
# to upgrade, never on the path of a command run against an up-to-date database.


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("newsletter") / "migrations"))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    from alembic import command

    try:
        command.upgrade(alembic_config(engine), "head")
    except OperationalError as exc:
        reason = " ".join(str(exc.orig).split())  # drivers' messages span lines; ours is one
        raise ConfigError(f"cannot reach the database {_safe(engine)}: {reason}") from exc


def _safe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def open_database(url: str) -> Engine:
    """The engine for ``url`` with its schema upgraded: what every command needs first."""
    engine = get_engine(url)
    if not getattr(engine, "_newsletter_upgraded", False):
        if schema_revision(engine) != SCHEMA_HEAD:
            upgrade(engine)
        engine._newsletter_upgraded = True  # type: ignore[attr-defined]
    return engine


def schema_revision(engine: Engine) -> str | None:
    """The database's migration revision; None when it has none yet (or cannot say)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DatabaseError:  # no such table yet; an unreachable server is upgrade's to report
        return None
