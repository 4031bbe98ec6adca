"""CSV import/export and the `newsletter subscribers` CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from newsletter import mail, subscribers
from newsletter.cli import app
from newsletter.config import Settings
from newsletter.errors import SubscriberError
from newsletter.tables import SubscriberRow, utcnow

ROWS = 5000
BAD_LINES = {17: "not-an-address", 1234: "a@b.com\r\nBcc: x@y.com", 4000: "", 4998: "two@@example.com"}


def _write_csv(path: Path) -> dict[int, str]:
    """5,000 data rows; bad rows at known lines (returned); in-file duplicates differ in case only."""
    lines = ["Email,Name"]
    expected_bad: dict[int, str] = {}
    physical = 2  # the line a record starts on (a quoted CR/LF makes a record span two)
    for index in range(ROWS):
        line = index + 2
        if line in BAD_LINES:
            value = BAD_LINES[line]
            expected_bad[physical] = value
            lines.append(f'"{value}",Bad {line}')
            physical += value.count("\n")
        elif line % 500 == 0:
            lines.append(f"USER{index - 1}@EXAMPLE.com,Dup {line}")  # same address as the line before
        else:
            lines.append(f"user{index}@example.com,User {index}")
        physical += 1
    path.write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode())
    return expected_bad


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(SubscriberRow)).scalar_one())


def test_import_reports_bad_rows_by_line_and_imports_the_rest(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    bad = _write_csv(path)
    # known before the import: one pending (gets confirmed with --confirmed), one erased (suppressed)
    mail.add(settings, engine, ["user1@example.com"], send=False)
    mail.add(settings, engine, ["user2@example.com"], confirmed=True)
    subscribers.remove(engine, "user2@example.com")
    started = time.perf_counter()
    report = subscribers.import_csv(settings, engine, path, confirmed=True)
    elapsed = time.perf_counter() - started
    duplicates = len([line for line in range(2, ROWS + 2) if line % 500 == 0 and line not in BAD_LINES])
    assert [e.line for e in report.errors] == sorted(bad)
    assert all(e.message for e in report.errors)
    assert report.errors[1].value == BAD_LINES[1234] and report.errors[1].line == 1234
    assert sorted(bad)[2:] == [4001, 4999]
    assert report.duplicates == duplicates
    assert report.existing == 1 and report.upgraded == 1
    assert report.suppressed == 1
    assert report.imported == ROWS - len(bad) - duplicates - 2
    assert report.rows == ROWS
    assert _count(engine) == report.imported + 2
    assert subscribers.find_subscriber(engine, "user1@example.com").status == "confirmed"  # type: ignore[union-attr]
    assert subscribers.find_subscriber(engine, "user2@example.com").email is None  # type: ignore[union-attr]
    one = subscribers.find_subscriber(engine, "user3@example.com")
    assert one is not None and (one.name, one.status, one.source) == ("User 3", "confirmed", "import")
    assert elapsed < 10, f"5,000 rows took {elapsed:.1f}s"
    # bulk-inserted timestamps are stored exactly like ORM ones (they compare in SQL)
    with engine.connect() as conn:
        recent = select(func.count()).select_from(SubscriberRow).where(SubscriberRow.created_at <= utcnow())
        assert conn.execute(recent).scalar_one() == report.imported + 2
        ordered = (
            select(SubscriberRow.email).order_by(SubscriberRow.created_at.desc(), SubscriberRow.id).limit(1)
        )
        assert conn.execute(ordered).scalar_one() == "user0@example.com"  # imported after the two added
    # importing the same file again changes nothing
    again = subscribers.import_csv(settings, engine, path)
    assert again.imported == 0 and _count(engine) == report.imported + 2


def test_import_without_confirmed_adds_pending_and_sends_no_mail(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "few.csv"
    path.write_text("name,email\nAda,ada@example.com\n\nBob,bob@example.com\n", encoding="utf-8")
    report = subscribers.import_csv(settings, engine, path)
    assert report.imported == 2 and not report.errors
    assert {s.status for s in subscribers.list_subscribers(engine)} == {"pending"}
    assert not Path(settings.outbox_dir).exists() or not list(Path(settings.outbox_dir).iterdir())


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "empty"), ("name,mail\nA,a@example.com\n", "'email' column")],
)
def test_import_without_an_email_header_is_refused(
    settings: Settings, engine: Engine, content: str, message: str
) -> None:
    with pytest.raises(SubscriberError, match=message):
        subscribers.import_csv(settings, engine, io.StringIO(content))


def test_cli_add_import_list_export_remove(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["subscribers", "add", "ada@example.com", "BOB@Example.com", "--confirmed"])
    assert result.exit_code == 0, result.output
    assert "added" in result.output and "BOB@example.com" in result.output

    result = runner.invoke(app, ["subscribers", "add", "bad-address"])
    assert result.exit_code == 1 and "invalid" in result.output

    path = tmp_path / "in.csv"
    path.write_text("email,name\ncy@example.com,Cy\nnope,No\nada@example.com,Ada\n", encoding="utf-8")
    result = runner.invoke(app, ["subscribers", "import", str(path), "--confirmed"])
    assert result.exit_code == 1, result.output  # a bad row: the good ones are in, the exit says not all
    assert f"{path}:3:" in result.output  # the bad row, by line
    assert "imported" in result.output and "bad rows" in result.output

    result = runner.invoke(app, ["subscribers", "list", "--status", "confirmed"])
    assert result.exit_code == 0, result.output
    assert "cy@example.com" in result.output and "confirmed: 3" in result.output

    result = runner.invoke(app, ["subscribers", "export"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["email"] for r in rows] == ["ada@example.com", "BOB@example.com", "cy@example.com"]

    result = runner.invoke(app, ["subscribers", "remove", "bob@example.com"])
    assert result.exit_code == 0, result.output
    assert "erased" in result.output
    assert subscribers.is_suppressed(engine, "bob@example.com")

    result = runner.invoke(app, ["subscribers", "remove", "zed@example.com"])
    assert result.exit_code == 1
    assert "no subscriber" in result.output and "Traceback" not in result.output

    result = runner.invoke(app, ["subscribers", "import", str(tmp_path / "missing.csv")])
    assert result.exit_code == 1 and "no such file" in result.output
