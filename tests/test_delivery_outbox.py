"""The default `outbox` provider: one RFC 5322 .eml per recipient, headers exactly as RFC 8058 wants."""

from __future__ import annotations

import email
import os
import re
import signal
from collections import Counter
from email.policy import default
from pathlib import Path

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.delivery import send_issue
from tests.support.delivery_fixtures import (
    add_subscribers,
    in_flight_emails,
    ledger_states,
    make_issue,
    popen_cli,
    run_cli,
    subscriber_ids,
    wait_for,
)

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


def test_outbox_settles_a_killed_batch_from_its_files(
    env: dict[str, str], engine: Engine, settings: Settings
) -> None:
    """SIGKILL mid-batch: the next plain `send`, at once, marks written recipients sent from
    their .eml files, removes half-written .tmp files, writes the rest: everyone exactly once."""
    issue = make_issue(settings, engine)
    emails = set(add_subscribers(engine, 1500))
    outbox = Path(env["NEWSLETTER_OUTBOX_DIR"])
    process = popen_cli(env, "send", issue, "--yes")
    try:
        wait_for(lambda: outbox.is_dir() and len(os.listdir(outbox)) >= 500, 120, "500 files")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()
    in_flight = in_flight_emails(engine, issue)
    assert 0 < len(in_flight) <= 1000  # one batch was being written
    # A half-written file of one of them, as a kill during a write leaves it.
    ids = subscriber_ids(engine)
    victim = sorted(in_flight)[-1]
    half = outbox / f"{issue}-{ids[victim]}-{victim}-deadbeef.tmp"
    half.write_bytes(b"From: half a message")

    # No wait for the lease (60 s): the killed sender was on this host and is gone.
    resumed = run_cli(env, "send", issue, "--yes")
    assert resumed.returncode == 0, resumed.stderr
    assert "settled from the files" in resumed.stdout
    assert not list(outbox.glob("*.tmp"))
    counts: Counter[str] = Counter(
        str(email.message_from_bytes(path.read_bytes(), policy=default)["To"])
        for path in outbox.glob("*.eml")
    )
    assert set(counts) == emails and set(counts.values()) == {1}
    assert ledger_states(engine, issue) == {"sent": 1500}
