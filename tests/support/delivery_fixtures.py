"""Test data for delivery: an archived issue and many subscribers, written fast and directly."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from newsletter.config import Settings
from newsletter.issues.archive import write_issue
from newsletter.issues.placeholders import PLACEHOLDERS, TEXT_PLACEHOLDERS
from newsletter.tables import DeliveryRow, IssueRow, SubscriberRow, SuppressionRow
from tests.support.fake_sendgrid import API_KEY as FAKE_API_KEY

ROOT = Path(__file__).resolve().parent.parent.parent
ISSUE_ID = "2026-W48"
SUBJECT = "Weekly AI Tool Verdicts: Axolotl vs Unsloth"


def email_hash(email: str) -> str:
    """The project's hash for the simple ASCII addresses used here (sha256 of the lower-cased address)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def make_issue(
    settings: Settings, engine: Engine, issue_id: str = ISSUE_ID, *, subject: str = SUBJECT
) -> str:
    """An IssueRow in draft plus its archive (email.html/txt with the real placeholders)."""
    unsub_html = PLACEHOLDERS["unsubscribe_url"]
    unsub_text = TEXT_PLACEHOLDERS["unsubscribe_url"]
    html = (
        "<!doctype html><html><body><h1>This week's verdicts</h1>"
        "<p>Axolotl v0.16 ships: 3 ship / 1 skip.</p>"
        f'<p><a href="{unsub_html}">Unsubscribe</a></p></body></html>'
    )
    text = f"This week's verdicts\n\nAxolotl v0.16 ships: 3 ship / 1 skip.\n\nUnsubscribe: {unsub_text}\n"
    write_issue(
        settings,
        issue_id,
        html=html,
        text=text,
        web_html=html,
        data={"id": issue_id, "subject": subject, "preheader": "Two tools, one verdict"},
    )
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(IssueRow).values(
                id=issue_id,
                subject=subject,
                preheader="Two tools, one verdict",
                status="draft",
                issue_date=now,
            )
        )
    return issue_id


def address(index: int) -> str:
    return f"reader{index:07d}@example.com"


def add_subscribers(
    engine: Engine, count: int, *, status: str = "confirmed", start: int = 0, chunk: int = 5000
) -> list[str]:
    """``count`` subscribers reader<start..>@example.com with ``status``; their addresses."""
    now = datetime.now(UTC)
    emails = [address(start + i) for i in range(count)]
    with engine.begin() as conn:
        for offset in range(0, count, chunk):
            conn.execute(
                insert(SubscriberRow),
                [
                    {
                        "email": email,
                        "email_hash": email_hash(email),
                        "status": status,
                        "created_at": now,
                        "updated_at": now,
                        "confirmed_at": now if status == "confirmed" else None,
                    }
                    for email in emails[offset : offset + chunk]
                ],
            )
    return emails


def suppress(engine: Engine, email: str, reason: str = "bounce") -> None:
    with engine.begin() as conn:
        conn.execute(insert(SuppressionRow).values(email_hash=email_hash(email), reason=reason))


def subscriber_ids(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {email: sid for sid, email in conn.execute(select(SubscriberRow.id, SubscriberRow.email))}


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """``python -m newsletter …`` in a subprocess with the test's NEWSLETTER_* variables."""
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        env={**os.environ, **env},
        cwd=kwargs.pop("cwd", None),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def popen_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


# --- looking at the ledger and waiting, for delivery and scheduler tests -------------------------


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def ledger_states(engine: Engine, issue_id: str) -> dict[str, int]:
    """Delivery rows of an issue, counted by state."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(DeliveryRow.state, func.count())
            .where(DeliveryRow.issue_id == issue_id)
            .group_by(DeliveryRow.state)
        )
        return {state: count for state, count in rows}


def in_flight_emails(engine: Engine, issue_id: str) -> set[str]:
    """The addresses whose delivery row is still in flight (uncertain or being sent)."""
    with engine.connect() as conn:
        return set(
            conn.scalars(
                select(SubscriberRow.email)
                .join(DeliveryRow, DeliveryRow.subscriber_id == SubscriberRow.id)
                .where(DeliveryRow.issue_id == issue_id, DeliveryRow.state == "in_flight")
            )
        )


def issue_status(engine: Engine, issue_id: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(IssueRow.status).where(IssueRow.id == issue_id)).scalar_one())


def use_sendgrid(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str, **extra: str
) -> dict[str, str]:
    """Point the settings (and ``env``, for subprocesses) at a local SendGrid look-alike."""
    from newsletter.config import get_settings

    values = {
        "NEWSLETTER_PROVIDER": "sendgrid",
        "NEWSLETTER_SENDGRID_API_KEY": FAKE_API_KEY,
        "NEWSLETTER_SENDGRID_API_URL": url,
        "NEWSLETTER_RETRY_BACKOFF": "0.05",
        "NEWSLETTER_BATCH_SIZE": "100",
        **extra,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    env.update(values)
    get_settings.cache_clear()
    return env
