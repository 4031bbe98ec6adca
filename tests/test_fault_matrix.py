"""The fault matrix: provider × database × fault, each ending with nobody mailed twice and
exactly the documented set of recipients not (yet, or not certainly) mailed.

README's "Delivery status policy" and Reliability table name these tests. Real parts only:
the official ``sendgrid`` client against tests/support/fake_sendgrid.py, aiosmtpd on
loopback (tests/support/smtp_server.py), .eml files in the outbox, SQLite files and the
real PostgreSQL. Subjects stay ASCII here; subscriber names are not.
"""

from __future__ import annotations

import email
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.policy import default as default_policy
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from newsletter.config import Settings, get_settings
from newsletter.db import open_database
from newsletter.delivery import delivery_status, send_issue
from newsletter.errors import DeliveryError, ProviderUnavailableError
from newsletter.tables import DeliveryRow, IssueRow, SubscriberRow, SuppressionRow
from tests.support.delivery_fixtures import add_subscribers, email_hash, make_issue, run_cli, use_sendgrid
from tests.support.fake_sendgrid import FakeSendGrid
from tests.support.smtp_server import SmtpServer

SUBSCRIBERS = 30
BATCH = 10
NAMES = ["Zoë Ünal", "李 小龙", "Seán O'Brien", "Ana—María", "Émile 🚀"]


@dataclass
class World:
    """One case's world: settings, database, the subscribers, and what was delivered."""

    settings: Settings
    engine: Engine
    issue: str
    emails: list[str]
    delivered: Callable[[], Counter[str]]

    def send(self) -> None:
        send_issue(self.settings, self.engine, self.issue)

    def reload(self) -> None:
        get_settings.cache_clear()
        self.settings = get_settings()

    def in_state(self, state: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(
                conn.scalars(
                    select(SubscriberRow.email)
                    .join(DeliveryRow, DeliveryRow.subscriber_id == SubscriberRow.id)
                    .where(DeliveryRow.issue_id == self.issue, DeliveryRow.state == state)
                )
            )

    def check(self, *, missing: set[str], in_flight: set[str] = frozenset(), **states: set[str]) -> None:
        """Nobody twice; exactly ``missing`` not delivered; the ledger says so row by row."""
        counts = self.delivered()
        assert not {address for address, count in counts.items() if count > 1}, "someone was mailed twice"
        assert set(self.emails) - set(counts) == missing
        assert self.in_state("in_flight") == set(in_flight)
        for state, expected in states.items():
            assert self.in_state(state) == expected, state


def _world(env: dict[str, str], delivered: Callable[[], Counter[str]]) -> World:
    get_settings.cache_clear()
    settings = get_settings()
    engine = open_database(settings.database_url)
    issue = make_issue(settings, engine)
    emails = add_subscribers(engine, SUBSCRIBERS)
    with engine.begin() as conn:
        for index, address in enumerate(emails):
            conn.execute(
                update(SubscriberRow)
                .where(SubscriberRow.email == address)
                .values(name=NAMES[index % len(NAMES)])
            )
    return World(settings, engine, issue, emails, delivered)


def _batch(world: World, number: int) -> set[str]:
    return set(world.emails[number * BATCH : (number + 1) * BATCH])


# --- SendGrid ------------------------------------------------------------------------------------


@pytest.fixture
def sendgrid(env: dict[str, str], fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> World:
    # one request in flight: each fault is aimed at one particular batch (several in flight:
    # test_delivery_concurrency.py)
    use_sendgrid(
        monkeypatch,
        env,
        fake.url,
        NEWSLETTER_BATCH_SIZE=str(BATCH),
        NEWSLETTER_MAX_RETRIES="2",
        NEWSLETTER_SEND_CONCURRENCY="1",
    )
    return _world(env, fake.address_counts)


@pytest.mark.parametrize("status", [502, 504])
def test_sendgrid_accepted_then_5xx_is_uncertain_never_retried(
    sendgrid: World, fake: FakeSendGrid, status: int
) -> None:
    """The gateway answered 5xx after SendGrid took the request: nobody may be mailed twice."""
    fake.accept_then(status)
    with pytest.raises(ProviderUnavailableError, match=f"sendgrid {status}.*not retried") as caught:
        sendgrid.send()
    assert getattr(caught.value, "uncertain", False)
    assert fake.received == 1  # no retry of a request that may have been taken
    sendgrid.send()  # a plain resume sends everyone else, leaves the uncertain batch alone
    first = _batch(sendgrid, 0)
    sendgrid.check(missing=set(), in_flight=first, sent=set(sendgrid.emails) - first)
    report = delivery_status(sendgrid.engine, sendgrid.issue)
    assert report.issue_status == "sending" and report.uncertain_recipients == BATCH


def test_sendgrid_trickled_answer_is_cut_at_the_timeout_and_uncertain(
    sendgrid: World, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SENDGRID_TIMEOUT is a deadline for the whole request, not for each byte of the answer."""
    monkeypatch.setenv("NEWSLETTER_SENDGRID_TIMEOUT", "1")
    sendgrid.reload()
    fake.trickle = 0.02  # a byte every 20 ms: each read is quick, the whole answer takes ~9 s
    fake.trickle_for = 20.0
    started = time.monotonic()
    with pytest.raises(ProviderUnavailableError, match="no answer after the request was sent"):
        sendgrid.send()
    assert time.monotonic() - started < 3.0
    fake.trickle = 0.0
    sendgrid.send()
    first = _batch(sendgrid, 0)
    sendgrid.check(missing=set(), in_flight=first, sent=set(sendgrid.emails) - first)


def test_sendgrid_503_waits_for_retry_after_then_everyone_once(sendgrid: World, fake: FakeSendGrid) -> None:
    fake.fail_next(503, message="service unavailable", retry_after=1)
    started = time.monotonic()
    sendgrid.send()
    assert time.monotonic() - started >= 1.0  # Retry-After honoured (backoff alone is 0.05 s)
    assert fake.statuses[:2] == [503, 202]
    sendgrid.check(missing=set(), sent=set(sendgrid.emails))


def test_sendgrid_refused_address_fails_alone_the_batch_goes_at_once(
    sendgrid: World, fake: FakeSendGrid, env: dict[str, str]
) -> None:
    """SendGrid's 400 on personalizations.N.to.0.email is that address's failure, kept from later sends."""
    bad = sendgrid.emails[13]
    fake.refuse_address(bad, "Does not contain a valid address.")
    sendgrid.send()
    sendgrid.check(missing={bad}, failed={bad}, sent=set(sendgrid.emails) - {bad})
    assert fake.statuses.count(400) == 1  # the batch was posted again at once, without it
    status = delivery_status(sendgrid.engine, sendgrid.issue)
    assert status.issue_status == "sent"
    assert status.failed == [(bad, "refused by SendGrid: Does not contain a valid address.")]
    shown = run_cli(env, "status", sendgrid.issue)
    assert shown.returncode == 0, shown.stderr
    assert f"{bad}: refused by SendGrid: Does not contain a valid address." in shown.stdout
    with sendgrid.engine.connect() as conn:
        assert conn.scalar(select(SuppressionRow.reason).where(SuppressionRow.email_hash == email_hash(bad)))
    # The next issue does not even try it.
    fake.requests.clear()
    second = make_issue(sendgrid.settings, sendgrid.engine, "2026-W49")
    send_issue(sendgrid.settings, sendgrid.engine, second)
    assert set(fake.address_counts()) == set(sendgrid.emails) - {bad}
    assert fake.statuses.count(400) == 1


# --- SMTP ----------------------------------------------------------------------------------------


@pytest.fixture
def smtp_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "NEWSLETTER_PROVIDER": "smtp",
        "NEWSLETTER_BATCH_SIZE": str(BATCH),
        "NEWSLETTER_RETRY_BACKOFF": "0.05",
        "NEWSLETTER_MAX_RETRIES": "2",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    env.update(values)
    return env


def _smtp_world(env: dict[str, str], server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url)
    env["NEWSLETTER_SMTP_URL"] = server.url
    return _world(env, server.recipients)


def test_smtp_deferred_recipients_wait_the_rest_goes_on_then_they_give_up(
    smtp_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Always-451 addresses neither stall the send nor loop forever; after DEFER_GIVE_UP they fail."""
    with SmtpServer() as server:
        world = _smtp_world(smtp_env, server, monkeypatch)
        stuck = {world.emails[3], world.emails[17], world.emails[28]}
        server.defer_always = set(stuck)
        report = send_issue(world.settings, world.engine, world.issue)
        assert report.sent == SUBSCRIBERS - 3 and report.deferred == 3 and not report.complete
        world.check(missing=stuck, pending=stuck, sent=set(world.emails) - stuck)
        # tried in its batch (and, if due by then, in the sweep that ends the pass), then once in
        # each of the MAX_RETRIES=2 rounds after everyone else; no more
        assert set(server.deferrals) == stuck and all(3 <= n <= 4 for n in server.deferrals.values())
        with world.engine.connect() as conn:
            waiting = conn.execute(
                select(DeliveryRow.not_before, DeliveryRow.error).where(DeliveryRow.state == "pending")
            ).all()
        assert all(nb is not None and "451 4.7.1 Greylisted" in (error or "") for nb, error in waiting)
        # what the user sees: one line saying what is left, exit 1
        again = run_cli(smtp_env, "send", world.issue, "--yes")
        assert again.returncode == 1, again.stderr
        assert "incomplete: 0 in flight / 3 deferred" in again.stderr and "Traceback" not in again.stderr
        world.check(missing=stuck, pending=stuck, sent=set(world.emails) - stuck)

        monkeypatch.setenv("NEWSLETTER_DEFER_GIVE_UP", "0.3")
        world.reload()
        time.sleep(0.4)
        report = send_issue(world.settings, world.engine, world.issue)
        assert report.gave_up == 3 and report.sent == 0
        world.check(missing=stuck, failed=stuck)
        reasons = dict(delivery_status(world.engine, world.issue).failed)
        assert set(reasons) == stuck and all("last reply: RCPT TO: 451" in r for r in reasons.values())
        assert delivery_status(world.engine, world.issue).issue_status == "sent"


def test_smtp_connection_cut_mid_data_leaves_that_one_message_uncertain(
    smtp_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with SmtpServer() as server:
        world = _smtp_world(smtp_env, server, monkeypatch)
        cut = world.emails[12]
        server.drop_in_data = {cut}
        report = send_issue(world.settings, world.engine, world.issue)
        assert server.cut_in_data == [cut]
        assert report.uncertain == 1 and report.sent == SUBSCRIBERS - 1  # the send went on
        world.check(missing={cut}, in_flight={cut}, sent=set(world.emails) - {cut})


def test_smtp_server_down_everyone_pending_then_everyone_once(
    smtp_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with SmtpServer() as server:
        world = _smtp_world(smtp_env, server, monkeypatch)
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", SmtpServer.down_url())
        world.reload()
        started = time.monotonic()
        with pytest.raises(DeliveryError) as caught:
            world.send()
        assert time.monotonic() - started < 5
        assert "SMTP server unavailable" in str(caught.value) and "\n" not in str(caught.value)
        world.check(missing=set(world.emails), pending=set(world.emails))
        with world.engine.connect() as conn:  # nobody mailed: not in the public archive
            assert conn.scalar(select(IssueRow.status).where(IssueRow.id == world.issue)) == "draft"

        monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url)
        world.reload()
        world.send()
        world.check(missing=set(), sent=set(world.emails))


@pytest.mark.slow
def test_smtp_server_down_gives_up_within_two_minutes_at_default_settings(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", SmtpServer.down_url())
    world = _world(sqlite_env, Counter)
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="SMTP server unavailable"):
        world.send()
    elapsed = time.monotonic() - started
    assert elapsed < 120, elapsed
    world.check(missing=set(world.emails), pending=set(world.emails))


# --- a failure inside the messenger, mid-batch (outbox and SMTP) -------------------------------------


def _outbox_recipients(folder: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for path in folder.glob("*.eml"):
        # the address only: the To header carries the subscriber's name too ("Zoë Ünal <…>")
        to = email.message_from_bytes(path.read_bytes(), policy=default_policy)["To"]
        found[to.addresses[0].addr_spec] += 1
    return found


@pytest.fixture(params=["outbox", "smtp"])
def any_local(
    request: pytest.FixtureRequest, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", str(BATCH))
    if request.param == "outbox":
        monkeypatch.setenv("NEWSLETTER_PROVIDER", "outbox")
        yield _world(env, lambda: _outbox_recipients(Path(env["NEWSLETTER_OUTBOX_DIR"])))
        return
    monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
    with SmtpServer() as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url)
        yield _world(env, server.recipients)


def test_a_failure_inside_the_messenger_mid_batch_then_a_plain_send_mails_everyone_once(
    any_local: World,
) -> None:
    """The 8th address of the second batch cannot go into a header (a line break): nobody is
    left uncertain, and after the fix a plain `send` finishes without --resend-uncertain."""
    world = any_local
    bad = world.emails[BATCH + 7]
    with world.engine.begin() as conn:
        conn.execute(
            update(SubscriberRow)
            .where(SubscriberRow.email == bad)
            .values(email=bad + "\nBcc: all@example.com")
        )
    with pytest.raises(DeliveryError, match=r"line break|newline|CR or LF"):
        world.send()
    assert world.in_state("in_flight") == set()
    sent = world.in_state("sent")
    assert _batch(world, 0) <= sent and bad not in {a.split("\n")[0] for a in sent}
    if world.settings.provider == "outbox":  # written one by one: the 7 before it, then stop
        assert sent == _batch(world, 0) | set(world.emails[BATCH : BATCH + 7])
    assert set(world.delivered()) == sent

    with world.engine.begin() as conn:  # the fix
        conn.execute(update(SubscriberRow).where(SubscriberRow.email.like("%Bcc:%")).values(email=bad))
    world.send()
    world.check(missing=set(), sent=set(world.emails))
    assert delivery_status(world.engine, world.issue).issue_status == "sent"
