"""Page text can never produce a token the per-recipient substitution fills (issue 12, item 7).

A comparison URL of ``https://evil.example/c?u=%%UNSUBSCRIBE_URL%%&n=%%FIRST_NAME%%`` once
handed each reader their own working unsubscribe link and first name. Built, archived and sent
through the real outbox: neither the html part, the text part nor the subject carries them.
"""

from __future__ import annotations

import email
from email.policy import default

from sqlalchemy import Engine, update

from newsletter.config import Settings
from newsletter.delivery import send_issue
from newsletter.issues.build import build_issue
from newsletter.issues.placeholders import PLACEHOLDERS, TEXT_PLACEHOLDERS
from newsletter.models import Comparison, Review, ToolEntry
from newsletter.tables import SubscriberRow
from tests.support.delivery_fixtures import add_subscribers
from tests.support.sample_comparisons import ISSUE_DATE, insert_comparisons

EVIL_URL = "https://evil.example/c?u=%%UNSUBSCRIBE_URL%%&n=%%FIRST_NAME%%&t=%%UNSUBSCRIBE_URL_TXT%%"


def _hostile() -> Comparison:
    tokens = " ".join([*PLACEHOLDERS.values(), *TEXT_PLACEHOLDERS.values()])
    return Comparison(
        title=f"Tökens %%FIRST_NAME%% vs Ünsub {tokens}",
        url=EVIL_URL,
        tools=[
            ToolEntry(
                name="Tökens %%FIRST_NAME%%",
                tagline=f"Tagline {tokens}",
                ship_pct=80,
                pricing="Free",
                pricing_detail=f"Free / {tokens}",
                reviews=[
                    Review(
                        persona="Builder",
                        score=90,
                        verdict="ship",
                        quote=f"It ships %%FIRST_NAME%%. {tokens}.",
                    )
                ],
            ),
            ToolEntry(
                name="Ünsub %%UNSUBSCRIBE_URL%%",
                ship_pct=20,
                reviews=[
                    Review(persona="Skeptic", score=10, verdict="skip", quote="Skip — %%UNSUBSCRIBE_URL%%.")
                ],
            ),
        ],
    )


def test_page_text_never_receives_a_readers_token_or_name(settings: Settings, engine: Engine) -> None:
    insert_comparisons(engine, [_hostile()])
    built = build_issue(settings, engine, date=ISSUE_DATE)
    assert built.issue_id is not None
    emails = add_subscribers(engine, 2)
    with engine.begin() as conn:
        conn.execute(update(SubscriberRow).values(name="Zoë Quatorze"))

    report = send_issue(settings, engine, built.issue_id)
    assert report.sent == 2

    files = sorted(settings.outbox_dir.glob("*.eml"))
    assert len(files) == 2
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=default)
        unsubscribe = str(message["List-Unsubscribe"]).strip("<>")
        token = unsubscribe.rsplit("/", 1)[1]
        html_part = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text_part = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        subject = str(message["Subject"])
        # The reader's own values appear exactly where the templates put them, never in page text.
        assert "Zoë" not in subject and token not in subject
        assert subject.startswith("Ship Tökens")
        for part in (html_part, text_part):
            assert part.count(token) == 1  # the footer's unsubscribe link, once
            assert part.count("Zoë") == 1  # "Hi Zoë," once
            assert "evil.example/c?u=%25%25UNSUBSCRIBE_URL%25%25&" in part.replace("&amp;", "&")
            for token_text in (*PLACEHOLDERS.values(), *TEXT_PLACEHOLDERS.values()):
                assert token_text not in part
        assert message["To"].addresses[0].addr_spec in emails
