"""The default `outbox` provider: one RFC 5322 .eml per recipient, headers exactly as RFC 8058 wants."""

from __future__ import annotations

import email
import re
from email.policy import default
from pathlib import Path

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.delivery import send_issue
from tests.support.delivery_fixtures import add_subscribers, make_issue

# The raw header line, not a parsed value: a parser decodes RFC 2047 encoded-words, a
# mail client deciding whether to show an unsubscribe button does not.
RAW_LIST_UNSUBSCRIBE = re.compile(rb"^List-Unsubscribe: <(https?://[^>\s]+)>\r?$", re.MULTILINE)


def test_one_eml_per_recipient_with_literal_one_click_headers(settings: Settings, engine: Engine) -> None:
    issue = make_issue(settings, engine)
    emails = add_subscribers(engine, 3)

    report = send_issue(settings, engine, issue)

    files = sorted(settings.outbox_dir.glob("*.eml"))
    assert report.sent == 3 and len(files) == 3
    seen = set()
    for path in files:
        raw = path.read_bytes()
        match = RAW_LIST_UNSUBSCRIBE.search(raw)
        assert match, raw[:600]
        assert match.group(1).decode().startswith(f"{settings.base_url}/unsubscribe/")
        assert b"\nList-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
        assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0]  # no encoded-word in any header
        message = email.message_from_bytes(raw, policy=default)
        assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
        assert match.group(1).decode() in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        seen.add(message["To"])
    assert seen == set(emails)

    again = send_issue(settings, engine, issue)
    assert again.already_sent and len(list(settings.outbox_dir.glob("*.eml"))) == 3


def test_many_mails_to_one_person_never_share_a_file(settings: Settings, tmp_path: Path) -> None:
    from newsletter.delivery.messengers import Content, Recipient
    from newsletter.delivery.messengers.outbox import OutboxMessenger

    outbox = OutboxMessenger(tmp_path / "outbox")
    content = Content(subject="Hi", html="<p>hi</p>", text="hi", from_email="v@localhost", reply_to=None)
    for _ in range(300):
        outbox.push(content, [Recipient(email="ada@example.com", subscriber_id=1)])
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 300
