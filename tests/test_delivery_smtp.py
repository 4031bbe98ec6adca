"""SMTP through smtplib into aiosmtpd on loopback: reused connections, a dropped one, 4xx and 5xx."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from email.policy import default

import pytest
from sqlalchemy import Engine

from newsletter.config import Settings, get_settings
from newsletter.db import open_database
from newsletter.delivery import delivery_status, send_issue
from newsletter.delivery.messengers import Content, Recipient
from newsletter.delivery.messengers.smtp import SmtpMessenger, parse_smtp_url
from newsletter.errors import ConfigError
from tests.support.delivery_fixtures import add_subscribers, address, make_issue
from tests.support.smtp_server import SmtpServer


@pytest.fixture
def smtp_setup(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, Engine, SmtpServer]]:
    with SmtpServer(drop_after=237) as server:
        monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url)
        monkeypatch.setenv("NEWSLETTER_SMTP_CONNECTIONS", "2")
        monkeypatch.setenv("NEWSLETTER_RETRY_BACKOFF", "0.01")
        get_settings.cache_clear()
        settings = get_settings()
        yield settings, open_database(settings.database_url), server


def test_500_messages_over_reused_connections_survive_a_dropped_one(
    smtp_setup: tuple[Settings, Engine, SmtpServer],
) -> None:
    settings, engine, server = smtp_setup
    issue = make_issue(settings, engine)
    emails = add_subscribers(engine, 500)

    report = send_issue(settings, engine, issue)

    assert report.sent == 500 and report.failed == 0 and report.uncertain == 0
    counts = server.recipients()
    assert set(counts) == set(emails) and set(counts.values()) == {1}
    assert server.dropped
    assert server.connections <= 4  # 2 parallel connections + 1 reconnect (few, reused)
    assert delivery_status(engine, issue).counts["sent"] == 500

    # Each message is a full RFC 5322 message with its own unsubscribe link.
    rcpts, raw = server.messages[0]
    message = email.message_from_bytes(raw, policy=default)
    assert message["To"] == rcpts[0]
    assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] and message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    url = message["List-Unsubscribe"].strip("<>")
    assert url in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "%%" not in raw.decode()
    # The raw line: a folded, RFC 2047-encoded value would parse the same but no client reads it.
    assert re.search(rb"^List-Unsubscribe: <http://127\.0\.0\.1:8000/unsubscribe/[^>\s]+>\r?$", raw, re.M)


def test_4xx_defers_that_recipient_and_5xx_fails_it_the_rest_go_on(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emails = [f"r{i}@example.com" for i in range(6)]
    codes = {emails[1]: "450 mailbox busy, try later", emails[3]: "550 no such user"}
    with SmtpServer(reply_codes=codes) as server:
        messenger = SmtpMessenger(server.url, connections=1, max_retries=3, backoff=0.01)
        try:
            content = Content(subject="s", html="<p>h</p>", text="t", from_email="Verdicts <v@example.com>")
            result = messenger.push(
                content, [Recipient(email=e, subscriber_id=i) for i, e in enumerate(emails)]
            )
        finally:
            messenger.close()
        # the deferred one is handed back with the server's reply (the sender schedules
        # its retry); nobody else waits for it
        assert sorted(result.accepted) == sorted(set(emails) - {emails[1], emails[3]})
        assert list(result.temporary) == [emails[1]] and "450 mailbox busy" in result.temporary[emails[1]]
        assert list(result.failed) == [emails[3]] and "550" in result.failed[emails[3]]
        assert server.recipients()[emails[1]] == 0
        assert server.connections == 1


def test_unreachable_server_leaves_everyone_pending(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.smtp_server import free_port

    monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NEWSLETTER_MAX_RETRIES", "1")
    monkeypatch.setenv("NEWSLETTER_RETRY_BACKOFF", "0.01")
    get_settings.cache_clear()
    settings = get_settings()
    engine = open_database(settings.database_url)
    issue = make_issue(settings, engine)
    add_subscribers(engine, 3)
    from newsletter.errors import DeliveryError

    with pytest.raises(DeliveryError, match="left pending"):
        send_issue(settings, engine, issue)
    assert delivery_status(engine, issue).counts["pending"] == 3


def test_smtp_urls() -> None:
    plain = parse_smtp_url("smtp://user%40x:p%3Ass@mail.example.com:2525")
    assert (plain.host, plain.port, plain.username, plain.password) == (
        "mail.example.com",
        2525,
        "user@x",
        "p:ss",
    )
    assert plain.starttls == "auto" and not plain.implicit_tls
    assert parse_smtp_url("smtps://mail.example.com").port == 465
    assert parse_smtp_url("smtp://u:p@mail.example.com").port == 587
    assert parse_smtp_url("smtp://mail.example.com?starttls=required").starttls == "required"
    with pytest.raises(ConfigError):
        parse_smtp_url("http://mail.example.com")


def test_a_greylisted_recipient_is_retried_in_a_second_pass_on_both_databases(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several lanes (and, on PostgreSQL, lanes that record and a pages thread): the deferred
    recipient gets its own pass after the rest, and everyone is mailed exactly once."""
    emails = [address(i) for i in range(250)]
    with SmtpServer(reply_codes={emails[7]: "450 greylisted, try again"}) as server:
        monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url)
        monkeypatch.setenv("NEWSLETTER_SMTP_CONNECTIONS", "2")
        monkeypatch.setenv("NEWSLETTER_SEND_CONCURRENCY", "4")
        monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "50")
        monkeypatch.setenv("NEWSLETTER_RETRY_BACKOFF", "0.01")
        get_settings.cache_clear()
        settings = get_settings()
        engine = open_database(settings.database_url)
        issue = make_issue(settings, engine)
        assert add_subscribers(engine, 250) == emails

        report = send_issue(settings, engine, issue)

        assert report.sent == 250 and report.failed == 0 and report.uncertain == 0
        assert report.issue_status == "sent"
        counts = server.recipients()
        assert set(counts) == set(emails) and set(counts.values()) == {1}
        assert delivery_status(engine, issue).counts["sent"] == 250
