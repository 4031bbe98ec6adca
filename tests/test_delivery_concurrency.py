"""Several requests in flight (SEND_CONCURRENCY): each batch its own claim, exactly once throughout.

The real sendgrid client against the local look-alike (tests/support/fake_sendgrid.py), on
SQLite and PostgreSQL. The look-alike counts how many requests it answers at once.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import Engine, insert, select

from newsletter.config import Settings, get_settings
from newsletter.db import open_database
from newsletter.delivery import send_issue
from newsletter.errors import ProviderUnavailableError
from newsletter.tables import DeliveryRow, SubscriberRow, utcnow
from tests.support.delivery_fixtures import (
    add_subscribers,
    email_hash,
    in_flight_emails,
    issue_status,
    ledger_states,
    make_issue,
    use_sendgrid,
)
from tests.support.fake_sendgrid import FakeSendGrid

BATCH = 100
LANES = 4
# names the personalizations carry: the To header and {first_name} of every lane's batch
NAMES = ("Zoë — “the reviewer”", "Łukasz O'Brien", "山田 太郎", "Renée 🚀")


@pytest.fixture
def setup(
    env: dict[str, str], fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> tuple[Settings, Engine]:
    use_sendgrid(
        monkeypatch,
        env,
        fake.url,
        NEWSLETTER_BATCH_SIZE=str(BATCH),
        NEWSLETTER_MAX_RETRIES="3",
        NEWSLETTER_SEND_CONCURRENCY=str(LANES),
    )
    settings = get_settings()
    return settings, open_database(settings.database_url)


def _subscribers(engine: Engine, count: int) -> set[str]:
    """``count`` plain readers plus a few with non-ASCII names; every address."""
    emails = set(add_subscribers(engine, count))
    now = utcnow()
    named = [f"lecteur.{i}@exemple.fr" for i in range(len(NAMES))]
    with engine.begin() as conn:
        conn.execute(
            insert(SubscriberRow),
            [
                {
                    "email": email,
                    "email_hash": email_hash(email),
                    "name": name,
                    "status": "confirmed",
                    "created_at": now,
                    "updated_at": now,
                    "confirmed_at": now,
                }
                for email, name in zip(named, NAMES, strict=True)
            ],
        )
    return emails | set(named)


def _batches_in_flight(engine: Engine, issue: str) -> set[str]:
    with engine.connect() as conn:
        return {
            str(batch)
            for batch in conn.scalars(
                select(DeliveryRow.batch_id).where(
                    DeliveryRow.issue_id == issue, DeliveryRow.state == "in_flight"
                )
            )
        }


def test_several_requests_in_flight_mail_everyone_exactly_once(
    setup: tuple[Settings, Engine], fake: FakeSendGrid
) -> None:
    settings, engine = setup
    issue = make_issue(settings, engine)
    emails = _subscribers(engine, 2000)
    fake.delay = 0.2  # slow answers: the next batches are claimed and pushed meanwhile

    report = send_issue(settings, engine, issue)

    counts = fake.address_counts()
    assert set(counts) == emails and set(counts.values()) == {1}
    assert 2 <= fake.most_in_progress <= LANES  # several out at once, never more than the setting
    assert report.sent == len(emails) and report.batches == fake.received == 21
    assert ledger_states(engine, issue) == {"sent": len(emails)}
    assert issue_status(engine, issue) == "sent"
    names = {
        to["name"]
        for request in fake.requests
        for p in request["personalizations"]
        for to in p["to"]
        if "name" in to
    }
    assert names == set(NAMES)


def test_a_5xx_in_one_lane_leaves_only_that_batch_uncertain_and_records_the_others(
    setup: tuple[Settings, Engine], fake: FakeSendGrid
) -> None:
    """The other lanes' answers are recorded as they come; nothing is claimed after the error."""
    settings, engine = setup
    issue = make_issue(settings, engine)
    emails = _subscribers(engine, 1500)
    fake.delay = 0.1
    fake.accept_then(502)  # one request is taken, then answered 502: its fate is unknown

    with pytest.raises(ProviderUnavailableError, match="not retried") as caught:
        send_issue(settings, engine, issue)
    assert getattr(caught.value, "uncertain", False)
    assert fake.received <= LANES  # no claim after the error: only the lanes already out
    uncertain = in_flight_emails(engine, issue)
    assert len(uncertain) == BATCH and len(_batches_in_flight(engine, issue)) == 1
    mailed = fake.address_counts()
    states = ledger_states(engine, issue)
    # every other request SendGrid took is recorded sent: only the 502'd batch is unknown
    assert states["sent"] == len(mailed) - BATCH and uncertain <= set(mailed)

    fake.delay = 0.0
    resumed = send_issue(settings, engine, issue)
    counts = fake.address_counts()
    assert set(counts) == emails and set(counts.values()) == {1}  # the uncertain batch was not resent
    assert in_flight_emails(engine, issue) == uncertain and resumed.in_flight == BATCH
    assert issue_status(engine, issue) == "sending"


def test_a_429_pauses_every_lane_until_the_reset(setup: tuple[Settings, Engine], fake: FakeSendGrid) -> None:
    settings, engine = setup
    issue = make_issue(settings, engine)
    emails = _subscribers(engine, 4000)
    fake.fail_next(429, message="too many requests — slow down", retry_after=1.5)

    send_issue(settings, engine, issue)

    counts = Counter(fake.address_counts())
    assert set(counts) == emails and set(counts.values()) == {1}
    limited = fake.arrivals[0]  # the first request got the 429
    # A short grace for requests that left before the 429's answer reached the client; after
    # it, no lane posts until the reset, and the rest of the work comes after it.
    quiet = [t for t in fake.arrivals if limited + 0.4 <= t < limited + 1.3]
    after = [t for t in fake.arrivals if t >= limited + 1.3]
    assert quiet == [], f"{len(quiet)} requests during the pause"
    assert len(after) >= 10
