"""Subscribers on SQLite and PostgreSQL: normalisation, double opt-in, unsubscribe, erasure."""

from __future__ import annotations

import email
import re
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from newsletter import mail, subscribers
from newsletter.config import Settings
from newsletter.errors import NotFoundError, SubscriberError, TokenError
from newsletter.tables import SubscriberRow, SuppressionRow
from newsletter.tokens import read_unsubscribe_token


def outbox(settings: Settings) -> list[EmailMessage]:
    folder = Path(settings.outbox_dir)
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    return [email.message_from_bytes(p.read_bytes(), policy=default) for p in files]  # type: ignore[misc]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link(message: EmailMessage, kind: str) -> str:
    found = re.search(rf"http://\S+/{kind}/\S+", text_of(message))
    assert found, text_of(message)
    return found.group(0)


def row(engine: Engine, digest: str) -> SubscriberRow:
    with Session(engine) as session:
        found = session.scalars(select(SubscriberRow).where(SubscriberRow.email_hash == digest)).one()
        session.expunge(found)
        return found


def suppressed(engine: Engine, digest: str) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(select(SuppressionRow).where(SuppressionRow.email_hash == digest)).first()
            is not None
        )


# --- addresses -------------------------------------------------------------------------------


def test_normalize_trims_lowercases_domain_and_keeps_local_part() -> None:
    assert subscribers.normalize_email("  Ada.Lovelace@Example.COM \n") == "Ada.Lovelace@example.com"
    assert subscribers.normalize_email("jose@BÜCHER.de") == "jose@bücher.de"
    assert subscribers.normalize_email("x@xn--bcher-kva.de") == "x@bücher.de"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "no-at-sign",
        "a@b",
        "a@@b.com",
        "a b@c.com",
        "a@b.com\r\nBcc: x@y.com",
        "a@b.com\nx",
        "x" * 250 + "@a.com",
    ],
)
def test_normalize_rejects_bad_addresses_with_a_message(bad: str) -> None:
    with pytest.raises(SubscriberError) as caught:
        subscribers.normalize_email(bad)
    assert str(caught.value)
    assert caught.value.http_status == 422


def test_hash_ignores_case_and_spacing() -> None:
    assert subscribers.email_hash(" ADA@example.com") == subscribers.email_hash("ada@EXAMPLE.com")
    assert re.fullmatch(r"[0-9a-f]{64}", subscribers.email_hash("ada@example.com"))


def test_unsubscribe_url_and_headers_follow_rfc_8058(settings: Settings) -> None:
    digest = subscribers.email_hash("ada@example.com")
    url = subscribers.unsubscribe_url(settings, 12, digest)
    assert url.startswith(f"{settings.base_url}/unsubscribe/")
    claim = read_unsubscribe_token(settings, url.rsplit("/", 1)[1])
    assert claim.subscriber_id == 12 and digest.startswith(claim.hash_prefix)
    headers = subscribers.list_unsubscribe_headers(settings, url)
    assert headers == {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    both = subscribers.list_unsubscribe_headers(settings, url, mailto="unsub@example.com")
    assert both["List-Unsubscribe"] == f"<{url}>, <mailto:unsub@example.com?subject=unsubscribe>"
    with pytest.raises(SubscriberError):
        subscribers.list_unsubscribe_headers(settings, url + "\r\nBcc: x@y.com")


# --- double opt-in ------------------------------------------------------------------------------


def test_double_opt_in_lifecycle(settings: Settings, engine: Engine) -> None:
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        result = mail.subscribe(
            settings, engine, " Ada@Example.com ", name="Ada Lovelace", ip="127.0.0.9", user_agent="pytest/1"
        )
    assert result.action == "created" and result.mail_needed
    digest = subscribers.email_hash("ada@example.com")
    stored = row(engine, digest)
    assert (stored.email, stored.status, stored.source) == ("Ada@example.com", "pending", "web")
    assert stored.consent_ip == "127.0.0.9" and stored.consent_user_agent == "pytest/1"
    assert stored.consent_at is not None and stored.confirmation_sent_at is not None
    mails = outbox(settings)
    assert len(mails) == 1 and mails[0]["To"] == "Ada@example.com"
    assert "Confirm" in mails[0]["Subject"]
    confirm_link = link(mails[0], "confirm")

    # asking again at once: same row, no second mail (no mail bombing)
    with time_machine.travel(start + timedelta(seconds=5), tick=False):
        again = mail.subscribe(settings, engine, "ada@EXAMPLE.com")
    assert again.action == "throttled" and again.subscriber.id == result.subscriber.id
    assert len(outbox(settings)) == 1

    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        confirmed = mail.confirm(settings, engine, confirm_link.rsplit("/", 1)[1])
    assert confirmed.newly_confirmed
    stored = row(engine, digest)
    assert stored.status == "confirmed" and stored.confirmed_at is not None
    welcome = outbox(settings)[-1]
    assert "Welcome" in welcome["Subject"]
    unsubscribe_link = link(welcome, "unsubscribe")
    assert welcome["List-Unsubscribe"] == f"<{unsubscribe_link}>"
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # confirming twice is harmless and sends nothing
    assert not mail.confirm(settings, engine, confirm_link.rsplit("/", 1)[1]).newly_confirmed
    # a confirmed address subscribing again is not mailed again
    with time_machine.travel(start + timedelta(minutes=5), tick=False):
        assert mail.subscribe(settings, engine, "ada@example.com").action == "already_confirmed"
    assert len(outbox(settings)) == 2

    with time_machine.travel(start + timedelta(minutes=10), tick=False):
        gone = subscribers.unsubscribe_by_token(settings, engine, unsubscribe_link.rsplit("/", 1)[1])
        assert gone is not None and gone.status == "unsubscribed"
        # idempotent
        assert (
            subscribers.unsubscribe_by_token(settings, engine, unsubscribe_link.rsplit("/", 1)[1]) is not None
        )
    assert row(engine, digest).unsubscribed_at is not None
    assert suppressed(engine, digest)

    # an unsubscribed address must confirm again; the old link does not undo the unsubscribe
    with time_machine.travel(start + timedelta(minutes=20), tick=False):
        back = mail.subscribe(settings, engine, "ada@example.com")
    assert back.action == "resubscribed" and row(engine, digest).status == "pending"
    with pytest.raises(TokenError):
        mail.confirm(settings, engine, confirm_link.rsplit("/", 1)[1])
    fresh = link(outbox(settings)[-1], "confirm")
    with time_machine.travel(start + timedelta(minutes=21), tick=False):
        assert mail.confirm(settings, engine, fresh.rsplit("/", 1)[1]).newly_confirmed
    assert row(engine, digest).status == "confirmed"
    assert not suppressed(engine, digest)  # a confirmed double opt-in lifts the suppression


def test_bad_address_is_not_stored(settings: Settings, engine: Engine) -> None:
    with pytest.raises(SubscriberError):
        mail.subscribe(settings, engine, "a@b.com\r\nBcc: x@y.com")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SubscriberRow)).scalar() == 0
    assert outbox(settings) == []


def test_confirm_link_of_an_erased_subscriber_is_refused(settings: Settings, engine: Engine) -> None:
    mail.subscribe(settings, engine, "bob@example.com")
    token = link(outbox(settings)[0], "confirm").rsplit("/", 1)[1]
    subscribers.remove(engine, "bob@example.com")
    with pytest.raises(TokenError):
        mail.confirm(settings, engine, token)


def test_concurrent_subscribes_of_one_new_address_make_one_row(settings: Settings, engine: Engine) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def go() -> None:
        try:
            barrier.wait()
            mail.subscribe(settings, engine, "race@example.com", send=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(SubscriberRow)).scalar() == 1


# --- erasure and suppression ----------------------------------------------------------------------


def test_remove_erases_personal_data_and_keeps_suppression(settings: Settings, engine: Engine) -> None:
    mail.add(settings, engine, ["carol@example.com"], confirmed=True, name="Carol")
    mail.subscribe(settings, engine, "carol@example.com", ip="10.0.0.1", user_agent="UA")
    digest = subscribers.email_hash("carol@example.com")
    erased = subscribers.remove(engine, "CAROL@example.com")
    assert erased.erased
    stored = row(engine, digest)
    assert (stored.email, stored.name, stored.consent_ip, stored.consent_user_agent) == (
        None,
        None,
        None,
        None,
    )
    assert stored.status == "unsubscribed" and stored.email_hash == digest
    assert stored.confirmed_at is None and stored.unsubscribed_at is not None
    assert subscribers.is_suppressed(engine, "carol@example.com")
    assert subscribers.find_subscriber(engine, "carol@example.com") is not None
    # not re-added by hand or by import
    assert mail.add(settings, engine, ["carol@example.com"], confirmed=True)[0].action == "suppressed"
    assert all(sub.email != "carol@example.com" for sub in subscribers.list_subscribers(engine))
    with pytest.raises(NotFoundError):
        subscribers.remove(engine, "nobody@example.com")


def test_erased_person_may_opt_in_again_explicitly(settings: Settings, engine: Engine) -> None:
    mail.add(settings, engine, ["dan@example.com"], confirmed=True)
    subscribers.remove(engine, "dan@example.com")
    result = mail.subscribe(settings, engine, "dan@example.com")
    assert result.action == "resubscribed"
    token = link(outbox(settings)[-1], "confirm").rsplit("/", 1)[1]
    assert mail.confirm(settings, engine, token).subscriber.email == "dan@example.com"
    assert not subscribers.is_suppressed(engine, "dan@example.com")


# --- add, list, counts, export ----------------------------------------------------------------------


def test_add_pending_mails_a_confirmation_and_confirmed_does_not(settings: Settings, engine: Engine) -> None:
    results = mail.add(settings, engine, ["eve@example.com", "not-an-address", "fay@example.com"])
    assert [r.action for r in results] == ["added", "invalid", "added"]
    assert "not-an-address" in results[1].message
    assert {m["To"] for m in outbox(settings)} == {"eve@example.com", "fay@example.com"}
    upgraded = mail.add(settings, engine, ["eve@example.com", "gus@example.com"], confirmed=True)
    assert [r.action for r in upgraded] == ["confirmed", "added"]
    assert len(outbox(settings)) == 2
    assert subscribers.count_by_status(engine) == {
        "pending": 1,
        "confirmed": 2,
        "unsubscribed": 0,
        "bounced": 0,
        "complained": 0,
    }
    assert [s.email for s in subscribers.list_subscribers(engine, status="confirmed")] == [
        "eve@example.com",
        "gus@example.com",
    ]
    with pytest.raises(SubscriberError):
        subscribers.list_subscribers(engine, status="nope")


def test_export_streams_csv_without_erased_rows(settings: Settings, engine: Engine) -> None:
    mail.add(settings, engine, [f"user{i}@example.com" for i in range(1203)], confirmed=True, send=False)
    added = mail.add(settings, engine, ["o'brien+news@example.com"], confirmed=True, name='Doe, "J"')
    assert added[0].action == "added"
    subscribers.remove(engine, "user5@example.com")
    chunks = list(subscribers.iter_export_csv(engine))
    assert len(chunks) > 2  # streamed in pieces
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert len(rows) == 1203
    assert rows[0]["email"] == "user0@example.com" and rows[0]["status"] == "confirmed"
    assert "user5@example.com" not in {r["email"] for r in rows}
    assert (rows[-1]["email"], rows[-1]["name"]) == ("o'brien+news@example.com", 'Doe, "J"')
    # A name from the public form that a spreadsheet would run as a formula stays text.
    mail.add(settings, engine, ["formula@example.com"], confirmed=True, name="=HYPERLINK(1)")
    exported = list(csv.DictReader(io.StringIO("".join(subscribers.iter_export_csv(engine)))))
    assert exported[-1]["name"] == "'=HYPERLINK(1)"
    out = io.StringIO()
    assert subscribers.export_csv(engine, out, status="pending") == 0
    assert out.getvalue().startswith("email,name,status")


# The fast path (each domain validated once) must agree with email-validator on every input.
_ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-.@\"()[]\\ ,;:<>é"
_DOMAINS = [
    "example.com",
    "EXAMPLE.COM",
    "localhost",
    "x.test",
    "a.invalid",
    "b-.com",
    "a..com",
    "1.2.3.4",
    "x.123",
    "xn--bcher-kva.de",
    "ex_ample.com",
    "a.local",
    "a" * 64 + ".com",
    "[1.2.3.4]",
    "com",
    "e.x",
    "example.com.",
]


@given(
    local=st.one_of(
        st.text(alphabet=_ATEXT, max_size=12),
        st.sampled_from(
            ["a.b", ".a", "a.", "A+tag", "x" * 64, "x" * 65, "o'brien", "WWW", "PostMaster", "ftP"]
        ),
    ),
    domain=st.sampled_from(_DOMAINS),
)
@settings(max_examples=400, deadline=None)
def test_normalize_agrees_with_email_validator(local: str, domain: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    address = f"{local}@{domain}"
    if address != address.strip() or len(address) > 254 or any(ord(c) < 32 for c in address):
        return
    try:
        expected: str | None = str(
            validate_email(address, check_deliverability=False, allow_smtputf8=False).normalized
        )
    except EmailNotValidError:
        expected = None
    try:
        ours: str | None = subscribers.normalize_email(address)
    except SubscriberError:
        ours = None
    assert ours == expected


def test_provider_report_moves_only_pending_or_confirmed_and_suppresses(
    engine: Engine, settings: Settings
) -> None:
    bounced = subscribers.add(
        settings, engine, ["zoe.obrien@example.com"], confirmed=True, name="Zoë O’Brien — 🎉"
    )[0].subscriber
    gone = subscribers.add(settings, engine, ["li@example.com"], confirmed=True, name="李")[0].subscriber
    assert bounced is not None and gone is not None
    subscribers.unsubscribe(engine, gone.id)
    moment = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    with engine.begin() as conn:
        assert subscribers.apply_provider_report(conn, [bounced.id], [bounced.email_hash], "bounce", moment)
    after = row(engine, bounced.email_hash)
    assert (after.status, after.bounced_at) == ("bounced", moment.replace(tzinfo=after.bounced_at.tzinfo))
    assert suppressed(engine, bounced.email_hash)
    with engine.begin() as conn:
        # An unsubscribed address stays unsubscribed: a complaint only suppresses it.
        assert not subscribers.apply_provider_report(conn, [gone.id], [gone.email_hash], "complaint", moment)
    assert row(engine, gone.email_hash).status == "unsubscribed"
