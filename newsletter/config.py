"""Settings: every knob of the newsletter, read from ``NEWSLETTER_*`` variables and ``.env``.

This is the only place that reads the environment. Every field here must be
documented in README.md (``tests/test_config.py`` checks it). Secrets are
``SecretStr`` so they never show up in a repr or a log line.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import zoneinfo
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from newsletter.errors import ConfigError
from newsletter.states import Provider


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NEWSLETTER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # --- storage -----------------------------------------------------------
    database_url: str = "sqlite:///subscribers/newsletter.db"
    data_dir: Path = Path("subscribers")
    issues_dir: Path = Path("issues")
    outbox_dir: Path = Path("subscribers/outbox")

    # --- identity of the newsletter -------------------------------------------
    newsletter_name: str = "Weekly AI Tool Verdicts"
    from_email: str = "Weekly AI Tool Verdicts <verdicts@localhost>"
    reply_to: str | None = None
    base_url: str = "http://127.0.0.1:8000"
    site_url: str | None = None
    postal_address: str = "Weekly AI Tool Verdicts, 1 Example Street, 10115 Berlin, Germany"

    # --- secrets ---------------------------------------------------------------
    secret_key: SecretStr | None = None
    admin_token: SecretStr | None = None

    # --- delivery ------------------------------------------------------------------
    provider: Provider = Provider.OUTBOX
    smtp_url: SecretStr | None = None
    smtp_connections: int = Field(default=1, ge=1, le=32)
    smtp_timeout: float = Field(default=30.0, gt=0)
    sendgrid_api_key: SecretStr | None = None
    sendgrid_api_url: str = "https://api.sendgrid.com"
    sendgrid_webhook_public_key: str | None = None
    sendgrid_webhook_allow_unsigned: bool = False
    sendgrid_timeout: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=1000, ge=1, le=1000)
    # requests in flight at once per sending process (SendGrid, SMTP; the outbox writes one
    # batch at a time): also the most batches a SIGKILL can leave uncertain per process
    send_concurrency: int = Field(default=4, ge=1, le=32)
    max_retries: int = Field(default=5, ge=0, le=20)
    retry_backoff: float = Field(default=1.0, ge=0, le=60)
    # who holds a claimed batch (default host:pid); a test fakes another machine with it
    worker_name: str | None = Field(default=None, min_length=1, max_length=150)
    # a sender renews its batches' lease every third of this; expired = abandoned, on any host
    lease_seconds: float = Field(default=60.0, ge=1, le=3600)
    # a recipient an SMTP server keeps deferring (4xx) is marked failed after this long
    defer_give_up: float = Field(default=3 * 24 * 3600.0, gt=0)

    # --- content -------------------------------------------------------------------
    sources: Annotated[list[str], NoDecode] = Field(default_factory=list)
    issue_size: int = Field(default=5, ge=1, le=50)
    feed_timeout: float = Field(default=10.0, gt=0)
    # Largest page, structured file or feed body read, checked while reading.
    max_source_bytes: int = Field(default=5_000_000, ge=1024)

    # --- scheduler -------------------------------------------------------------------
    schedule: str = "0 9 * * MON"
    timezone: str = "UTC"
    misfire_grace_time: int = Field(default=6 * 3600, ge=1)
    scheduler: Literal["on", "off"] = "on"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    # --- subscribers and web -------------------------------------------------------------
    confirm_token_max_age: int = Field(default=7 * 24 * 3600, gt=0)
    check_deliverability: bool = False
    subscribe_rate_limit: int = Field(default=5, ge=1)
    subscribe_rate_window: int = Field(default=60, ge=1)
    max_body_bytes: int = Field(default=16 * 1024, ge=1024)
    webhook_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=32, ge=2, le=1000)
    # Addresses (or networks) of reverse proxies whose X-Forwarded-For is believed. Empty:
    # nobody's, so a client cannot pick the IP its rate limit is counted on.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("sources", "trusted_proxies", mode="before")
    @classmethod
    def _split_sources(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
        return value

    @field_validator("base_url", "sendgrid_api_url", "site_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        fields = value.split()
        # APScheduler 3 numbers weekdays from Monday=0, cron from Sunday=0: "0 9 * * 1"
        # would run on Tuesdays. Names mean the same to both, so only names are taken.
        if len(fields) == 5 and re.search(r"\d", re.sub(r"/\d+", "", fields[4])):
            raise ValueError(
                f"use weekday names in {value!r} (MON, TUE-FRI...): APScheduler counts weekdays "
                "from Monday=0, cron from Sunday=0, so numbers would run on the wrong day"
            )
        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a cron expression ({exc})") from exc
        return value

    @model_validator(mode="after")
    def _provider_needs_its_settings(self) -> Settings:
        if self.provider == Provider.SENDGRID and not self.sendgrid_api_key:
            raise ValueError("NEWSLETTER_PROVIDER=sendgrid needs NEWSLETTER_SENDGRID_API_KEY")
        if self.provider == Provider.SMTP and not self.smtp_url:
            raise ValueError("NEWSLETTER_PROVIDER=smtp needs NEWSLETTER_SMTP_URL")
        return self

    # --- derived values ---------------------------------------------------------------

    @property
    def site_base(self) -> str:
        """Where the full comparison pages live (defaults to our own site)."""
        return self.site_url or self.base_url

    def secret(self) -> str:
        """The signing key: from settings, else a local key kept in the data dir.

        A key generated per process would invalidate every link on restart, so a
        local install gets one random key, stored once with mode 0600.
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return _local_secret(self.data_dir / ".secret_key")

    def admin_secret(self) -> tuple[str, bool]:
        """The admin token, and whether it was generated here (to print it once)."""
        if self.admin_token is not None:
            return self.admin_token.get_secret_value(), False
        path = self.data_dir / ".admin_token"
        existed = path.exists()
        return _local_secret(path), not existed


def _local_secret(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(value, encoding="utf-8")
    return value


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into one readable ConfigError line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"NEWSLETTER_{where.upper()}: {message}" if where else message)
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
