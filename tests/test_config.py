"""Settings: defaults, validation with one clear line, and documentation in README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_documented_in_readme() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", README.read_text(encoding="utf-8"), re.M))
    settings = {name.upper() for name in Settings.model_fields}
    missing = settings - documented
    assert not missing, f"settings missing from README's table: {sorted(missing)}"
    stale = documented - settings
    assert not stale, f"README documents settings that do not exist: {sorted(stale)}"


def test_defaults_need_nothing() -> None:
    settings = load_settings()
    assert settings.provider == "outbox"
    assert settings.database_url == "sqlite:///subscribers/newsletter.db"
    assert settings.schedule == "0 9 * * MON"
    assert settings.issue_size == 5


def test_sources_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SOURCES", "a.json, dir/ ,https://example.com/feed.json")
    assert load_settings().sources == ["a.json", "dir/", "https://example.com/feed.json"]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("NEWSLETTER_PROVIDER", "sendgrid", "NEWSLETTER_SENDGRID_API_KEY"),
        ("NEWSLETTER_PROVIDER", "smtp", "NEWSLETTER_SMTP_URL"),
        ("NEWSLETTER_PROVIDER", "pigeon", "NEWSLETTER_PROVIDER"),
        ("NEWSLETTER_TIMEZONE", "Mars/Olympus", "unknown IANA time zone"),
        ("NEWSLETTER_SCHEDULE", "every monday", "NEWSLETTER_SCHEDULE"),
        ("NEWSLETTER_ISSUE_SIZE", "0", "NEWSLETTER_ISSUE_SIZE"),
    ],
)
def test_invalid_settings_fail_with_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_cli_reports_bad_settings_without_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_PROVIDER", "sendgrid")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "NEWSLETTER_SENDGRID_API_KEY" in result.output
    assert "Traceback" not in result.output


def test_secret_key_is_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "hunter2-very-secret")
    settings = load_settings()
    assert "hunter2" not in repr(settings)
    assert settings.secret() == "hunter2-very-secret"


def test_local_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    first = settings.secret()
    assert len(first) >= 32
    assert load_settings(data_dir=tmp_path / "data").secret() == first
    assert (tmp_path / "data" / ".secret_key").stat().st_mode & 0o077 == 0
