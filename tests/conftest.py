"""Shared fixtures: real SQLite files, the real PostgreSQL at 127.0.0.1:5432, isolated settings.

* ``settings`` points every path (DB, outbox, archive, data dir) into the test's tmp dir
  through NEWSLETTER_* variables, exactly as a user would configure it.
* ``cfg`` / ``db`` / ``app`` / ``client``: the SQLite-only settings, engine, web app and
  in-process client (no redirects followed) that the web and archive tests share.
* ``db_url`` is parametrised over ``sqlite`` and ``postgres``; the PostgreSQL side gets a
  fresh database per test (cloned from a migrated template made once per run), carries the
  ``postgres`` marker, and skips with a reason when no server answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from newsletter.config import Settings, get_settings
from newsletter.db import dispose_engines, make_engine, open_database, upgrade
from newsletter.web import create_app
from tests.support.fake_sendgrid import FakeSendGrid
from tests.support.web import TestClient

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "samples" / "comparisons"
ARTIFACTS = ROOT / "test-artifacts"

PG_HOST = os.environ.get("NEWSLETTER_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("NEWSLETTER_TEST_PG_PORT", "5432"))
PG_ADMIN_DSN = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres"
RUN_ID = uuid.uuid4().hex[:8]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every PostgreSQL case carries the ``postgres`` marker (``-m "not postgres"`` leaves them
    all out), however its test parametrises ``db_url`` (this fixture's params, or indirect)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        postgres = callspec is not None and callspec.params.get("db_url") == "postgres"
        if postgres and item.get_closest_marker("postgres") is None:
            item.add_marker(pytest.mark.postgres)


def pg_url(dbname: str) -> str:
    return f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{dbname}"


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database for this test run (dropped at the end)."""
    name = f"nl_test_{RUN_ID}_tpl"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}: {exc}".splitlines()[0])
    engine = make_engine(pg_url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test; its URL."""
    name = f"nl_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield pg_url(name)
    dispose_engines()
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_database"))
    return f"sqlite:///{tmp_path / 'data' / 'newsletter.db'}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'newsletter.db'}"


def _settings_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_DATA_DIR": str(tmp_path / "data"),
        "NEWSLETTER_ISSUES_DIR": str(tmp_path / "issues"),
        "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox"),
        "NEWSLETTER_PROVIDER": "outbox",
        "NEWSLETTER_SECRET_KEY": "test-secret-key-not-for-production",
        "NEWSLETTER_ADMIN_TOKEN": "test-admin-token",
        "NEWSLETTER_BASE_URL": "http://127.0.0.1:8000",
        "NEWSLETTER_FROM_EMAIL": "Weekly AI Tool Verdicts <verdicts@example.com>",
    }


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's NEWSLETTER_* variables, .env file or cached settings."""
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_") and not key.startswith("NEWSLETTER_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    dispose_engines()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> dict[str, str]:
    """NEWSLETTER_* variables for an isolated install on ``db_url``; returns them (for subprocesses)."""
    values = _settings_env(tmp_path, db_url)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return values


@pytest.fixture
def sqlite_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_url: str) -> dict[str, str]:
    """Like ``env`` but SQLite only, for tests whose subject is not the database."""
    values = _settings_env(tmp_path, sqlite_url)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return values


@pytest.fixture
def cfg(sqlite_env: dict[str, str]) -> Settings:
    """Settings of an isolated SQLite install (``settings`` is the one over both databases)."""
    return get_settings()


@pytest.fixture
def db(cfg: Settings) -> Engine:
    return open_database(cfg.database_url)


@pytest.fixture
def app(cfg: Settings) -> FastAPI:
    return create_app(cfg)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """The app in-process; redirects are answers to check, not to follow."""
    with TestClient(app, follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return get_settings()


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return open_database(settings.database_url)


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
