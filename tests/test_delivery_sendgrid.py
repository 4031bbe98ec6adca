"""Sending through the real sendgrid client into a local SendGrid look-alike, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import Engine, func, select

from newsletter.config import Settings, get_settings
from newsletter.delivery import delivery_status, dry_run, send_issue, send_test
from newsletter.errors import ProviderRejectedError, ProviderUnavailableError
from newsletter.issues.placeholders import PLACEHOLDERS, TEXT_PLACEHOLDERS
from newsletter.tables import DeliveryRow
from tests.support.delivery_fixtures import (
    add_subscribers,
    issue_status,
    make_issue,
    subscriber_ids,
    suppress,
)
from tests.support.fake_sendgrid import API_KEY, FakeSendGrid


@pytest.fixture
def sg_settings(env: dict[str, str], fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> Settings:
    values = {
        "NEWSLETTER_PROVIDER": "sendgrid",
        "NEWSLETTER_SENDGRID_API_KEY": API_KEY,
        "NEWSLETTER_SENDGRID_API_URL": fake.url,
        "NEWSLETTER_SENDGRID_TIMEOUT": "10",
        "NEWSLETTER_RETRY_BACKOFF": "0.05",
        "NEWSLETTER_MAX_RETRIES": "3",
        # one request in flight: these tests act between two batches (several in flight:
        # test_delivery_concurrency.py)
        "NEWSLETTER_SEND_CONCURRENCY": "1",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
        env[key] = value
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def sg_engine(sg_settings: Settings) -> Engine:
    from newsletter.db import open_database

    return open_database(sg_settings.database_url)


def _resolve_unsubscribe(settings: Settings, engine: Engine, url: str) -> int | None:
    """The subscriber an unsubscribe URL points at, through the project's own token code."""
    from newsletter.subscribers import check_unsubscribe_token

    token = unquote(url.rsplit("/unsubscribe/", 1)[1])
    found = check_unsubscribe_token(settings, engine, token)
    return found.id if found is not None else None


def test_2500_subscribers_three_requests_each_address_once(
    sg_settings: Settings, sg_engine: Engine, fake: FakeSendGrid
) -> None:
    issue = make_issue(sg_settings, sg_engine)
    emails = add_subscribers(sg_engine, 2500)
    ids = subscriber_ids(sg_engine)

    report = send_issue(sg_settings, sg_engine, issue)

    assert report.sent == 2500 and report.failed == 0 and report.uncertain == 0
    assert len(fake.requests) == 3
    assert [len(r["personalizations"]) for r in fake.requests] == [1000, 1000, 500]
    counts = fake.address_counts()
    assert set(counts) == set(emails) and set(counts.values()) == {1}

    body = fake.bodies[0]
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert PLACEHOLDERS["unsubscribe_url"] in body["content"][1]["value"]
    assert body["subject"].startswith("Weekly AI Tool Verdicts")
    assert body["from"] == {"email": "verdicts@example.com", "name": "Weekly AI Tool Verdicts"}
    assert body["categories"]

    urls = set()
    for item in fake.personalizations():
        email = item["to"][0]["email"]
        assert item["custom_args"] == {"issue_id": issue, "subscriber_id": str(ids[email])}
        url = item["substitutions"][TEXT_PLACEHOLDERS["unsubscribe_url"]]
        assert url.startswith("http://127.0.0.1:8000/unsubscribe/")
        assert item["headers"]["List-Unsubscribe"] == f"<{url}>"
        assert item["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        urls.add(url)
    assert len(urls) == 2500
    assert issue_status(sg_engine, issue) == "sent"
    status = delivery_status(sg_engine, issue)
    assert status.counts["sent"] == 2500 and not status.uncertain

    # A second send makes no request at all.
    again = send_issue(sg_settings, sg_engine, issue)
    assert again.already_sent and again.sent == 0
    assert fake.received == 3

    # Each unsubscribe URL works: its token resolves to that very subscriber.
    for item in fake.personalizations()[::97]:
        url = item["substitutions"][TEXT_PLACEHOLDERS["unsubscribe_url"]]
        assert _resolve_unsubscribe(sg_settings, sg_engine, url) == ids[item["to"][0]["email"]]


def test_429_and_503_are_retried_and_nobody_is_mailed_twice(
    sg_settings: Settings, sg_engine: Engine, fake: FakeSendGrid
) -> None:
    issue = make_issue(sg_settings, sg_engine)
    emails = add_subscribers(sg_engine, 2100)
    fake.fail_next(429, message="too many requests", reset_in=1)
    fake.fail_next(503, message="service unavailable")

    report = send_issue(sg_settings, sg_engine, issue)

    assert report.sent == 2100
    assert fake.statuses[:2] == [429, 503]
    counts = fake.address_counts()
    assert set(counts) == set(emails) and set(counts.values()) == {1}
    assert issue_status(sg_engine, issue) == "sent"


def test_400_stops_with_the_field_then_the_rest_is_sent_after_the_fix(
    sg_settings: Settings, sg_engine: Engine, fake: FakeSendGrid
) -> None:
    issue = make_issue(sg_settings, sg_engine)
    emails = add_subscribers(sg_engine, 2500)
    send_issue(sg_settings, sg_engine, issue, provider="sendgrid")  # warm: nothing special
    assert issue_status(sg_engine, issue) == "sent"

    # A second issue: the first batch goes, the second is refused.
    second = make_issue(sg_settings, sg_engine, "2026-W49")
    fake.requests.clear()
    progress: list[int] = []

    def on_progress(state: Any) -> None:
        progress.append(state.sent)
        if state.sent == 1000:
            fake.fail_always(
                400, message="The from address does not match a verified Sender Identity.", field="from"
            )

    with pytest.raises(ProviderRejectedError) as caught:
        send_issue(sg_settings, sg_engine, second, progress=on_progress)
    message = str(caught.value)
    assert "verified Sender Identity" in message and "'from'" in message and "400" in message
    assert caught.value.field == "from"
    assert len(fake.addresses()) == 1000
    status = delivery_status(sg_engine, second)
    assert status.counts["sent"] == 1000 and status.counts["in_flight"] == 0
    assert issue_status(sg_engine, second) == "sending"

    fake.clear_failures()
    report = send_issue(sg_settings, sg_engine, second)
    assert report.sent == 1500
    counts = fake.address_counts()
    assert set(counts) == set(emails) and set(counts.values()) == {1}
    assert issue_status(sg_engine, second) == "sent"


@pytest.mark.parametrize("status", [401, 403, 413])
def test_refusals_stop_at_once(
    sg_settings: Settings, sg_engine: Engine, fake: FakeSendGrid, status: int
) -> None:
    issue = make_issue(sg_settings, sg_engine)
    add_subscribers(sg_engine, 10)
    fake.fail_always(status, message="refused for a reason")
    with pytest.raises(ProviderRejectedError, match=f"sendgrid {status}: refused for a reason"):
        send_issue(sg_settings, sg_engine, issue)
    assert fake.received == 1
    assert delivery_status(sg_engine, issue).counts["pending"] == 10


def test_5xx_that_outlives_its_retries_keeps_everything_pending(
    sg_settings: Settings, sg_engine: Engine, fake: FakeSendGrid
) -> None:
    issue = make_issue(sg_settings, sg_engine)
    add_subscribers(sg_engine, 5)
    fake.fail_always(503, message="service unavailable")
    with pytest.raises(ProviderUnavailableError, match="gave up after 4 attempts"):
        send_issue(sg_settings, sg_engine, issue)
    assert fake.received == 4  # 1 + max_retries
    assert delivery_status(sg_engine, issue).counts["pending"] == 5
    fake.clear_failures()
    assert send_issue(sg_settings, sg_engine, issue).sent == 5


def test_a_slow_answer_is_never_retried_so_nobody_is_mailed_twice(
    sg_settings: Settings, sg_engine: Engine, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request was taken (SendGrid mails) but the answer came after the timeout."""
    monkeypatch.setenv("NEWSLETTER_SENDGRID_TIMEOUT", "0.2")
    monkeypatch.setenv("NEWSLETTER_MAX_RETRIES", "3")
    get_settings.cache_clear()
    settings = get_settings()
    issue = make_issue(settings, sg_engine)
    emails = add_subscribers(sg_engine, 3)
    fake.delay = 0.6
    with pytest.raises(ProviderUnavailableError, match="no answer"):
        send_issue(settings, sg_engine, issue)
    fake.delay = 0.0
    assert fake.accepted_recipients == 3  # one request, taken: everyone mailed once
    status = delivery_status(sg_engine, issue)
    assert status.counts["in_flight"] == 3 and len(status.uncertain) == 1
    # Never resent automatically...
    assert send_issue(settings, sg_engine, issue).sent == 0
    assert fake.accepted_recipients == 3
    assert delivery_status(sg_engine, issue).counts["in_flight"] == 3
    # ...only on request (the editor decided they did not get it).
    report = send_issue(settings, sg_engine, issue, resend_uncertain=True)
    assert report.requeued == 3 and report.sent == 3
    assert fake.address_counts() == dict.fromkeys(emails, 2)  # the resend is the only second mail
    assert issue_status(sg_engine, issue) == "sent"


def test_a_refused_connection_is_retried_and_then_left_pending(
    sg_settings: Settings, sg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens: the request certainly never left, so the rows stay safe to send."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("NEWSLETTER_SENDGRID_API_URL", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("NEWSLETTER_MAX_RETRIES", "2")
    get_settings.cache_clear()
    settings = get_settings()
    issue = make_issue(settings, sg_engine)
    add_subscribers(sg_engine, 3)
    with pytest.raises(ProviderUnavailableError, match=r"cannot connect.*3 attempts"):
        send_issue(settings, sg_engine, issue)
    status = delivery_status(sg_engine, issue)
    assert status.counts["pending"] == 3 and status.counts["in_flight"] == 0 and not status.uncertain


def test_unmailable_subscribers_receive_nothing(
    sg_settings: Settings, sg_engine: Engine, fake: FakeSendGrid
) -> None:
    issue = make_issue(sg_settings, sg_engine)
    confirmed = add_subscribers(sg_engine, 20)
    others = []
    for offset, status in enumerate(["unsubscribed", "bounced", "complained", "pending"]):
        others += add_subscribers(sg_engine, 3, status=status, start=1000 + offset * 10)
    suppress(sg_engine, confirmed[0], "complaint")  # confirmed but on the suppression list

    plan = dry_run(sg_settings, sg_engine, issue)
    assert plan.recipients == 19 and plan.batches == 1
    report = send_issue(sg_settings, sg_engine, issue)
    assert report.sent == 19
    assert set(fake.addresses()) == set(confirmed[1:])


def test_someone_who_unsubscribes_mid_send_is_not_mailed(
    sg_settings: Settings, sg_engine: Engine, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "10")
    get_settings.cache_clear()
    settings = get_settings()
    issue = make_issue(settings, sg_engine)
    emails = add_subscribers(sg_engine, 30)
    from sqlalchemy import update

    from newsletter.tables import SubscriberRow

    def on_progress(state: Any) -> None:
        if state.batches == 1:
            with sg_engine.begin() as conn:
                conn.execute(
                    update(SubscriberRow)
                    .where(SubscriberRow.email == emails[25])
                    .values(status="unsubscribed")
                )
            # and one who confirms now, after the scan began, with an id the scan has not passed
            add_subscribers(sg_engine, 1, start=5000)

    report = send_issue(settings, sg_engine, issue, progress=on_progress)
    mailed = fake.address_counts()
    assert emails[25] not in mailed
    assert "reader0005000@example.com" in mailed
    assert report.sent == 30 and report.suppressed == 1
    assert delivery_status(sg_engine, issue).counts["suppressed"] == 1


def test_test_send_goes_outside_the_ledger(
    sg_settings: Settings, sg_engine: Engine, fake: FakeSendGrid
) -> None:
    issue = make_issue(sg_settings, sg_engine)
    add_subscribers(sg_engine, 5)
    report = send_test(sg_settings, issue, ["editor@example.com", "boss@example.org"])
    assert sorted(report.accepted) == ["boss@example.org", "editor@example.com"]
    assert fake.bodies[0]["subject"].startswith("[TEST] ")
    assert sorted(fake.addresses()) == ["boss@example.org", "editor@example.com"]
    with sg_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DeliveryRow)).scalar_one() == 0
    assert issue_status(sg_engine, issue) == "draft"
