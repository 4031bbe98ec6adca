"""What a send sends: the issue's archived content and each recipient's personal parts;
dry runs and test sends, which use them outside the ledger."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from sqlalchemy import Engine, select

from newsletter.config import Settings
from newsletter.db import open_database
from newsletter.delivery import ledger
from newsletter.delivery.messengers import Content, Recipient, get_messenger
from newsletter.delivery.reports import DryRunReport, TestSendReport
from newsletter.errors import NotFoundError, SubscriberError
from newsletter.issues.archive import load_issue
from newsletter.issues.placeholders import DEFAULT_VALUES, PLACEHOLDERS, TEXT_PLACEHOLDERS
from newsletter.states import IssueStatus
from newsletter.subscribers import UnsubscribeLinks, email_hash, normalize_email
from newsletter.subscribers.links import ONE_CLICK
from newsletter.tables import IssueRow

TEST_PREFIX = "[TEST] "

# --- the issue's content ---------------------------------------------------------------------


def issue_row(engine: Engine, issue_id: str) -> tuple[str, str]:
    with engine.connect() as conn:
        row = conn.execute(select(IssueRow.subject, IssueRow.status).where(IssueRow.id == issue_id)).first()
    if row is None:
        raise NotFoundError(f"no issue {issue_id!r} (see `newsletter issue list`)")
    return str(row[0]), str(row[1])


def load_content(settings: Settings, engine: Engine, issue_id: str, *, subject_prefix: str = "") -> Content:
    """The archived issue (rendered once) as a Content with placeholders."""
    subject, _status = issue_row(engine, issue_id)
    archived = load_issue(settings, issue_id)
    subject, html, text = archived.subject or subject, archived.html, archived.text
    return Content(
        subject=subject_prefix + subject,
        html=html,
        text=text,
        from_email=settings.from_email,
        reply_to=settings.reply_to,
        categories=("newsletter", f"issue-{issue_id}"),
        issue_id=issue_id,
    )


# --- per-recipient parts ---------------------------------------------------------------------


class RecipientBuilder:
    """Turns ledger rows into Recipients: unsubscribe URL, List-Unsubscribe headers, substitutions.

    The send's hot path (every recipient of every batch): what is the same for everyone (the
    URL prefix, checked and escaped once) is computed here once, so a recipient costs one
    signature and a few small dicts. The result is what ``UnsubscribeLinks`` and
    ``substitutions`` give one by one (tests/test_delivery_content.py checks it): a token is
    URL-safe base64, digits, ``-`` and ``.``, which neither HTML escaping nor the header
    check would touch.
    """

    def __init__(self, settings: Settings) -> None:
        self._links = UnsubscribeLinks(settings)
        self._prefix = self._links.url_prefix
        self._links.headers(self._prefix)  # the one check of what every URL starts with
        self._html_prefix = html.escape(self._prefix)
        self._default_first = DEFAULT_VALUES["first_name"]

    def build(self, subscriber_id: int, email: str, email_hash: str, name: str | None) -> Recipient:
        token = self._links.token(subscriber_id, email_hash)
        url = self._prefix + token
        name = (name or "").strip() or None
        first = name.split(" ")[0] if name else self._default_first
        return Recipient(
            email=email,
            subscriber_id=subscriber_id,
            name=name,
            substitutions={
                PLACEHOLDERS["unsubscribe_url"]: self._html_prefix + token,
                TEXT_PLACEHOLDERS["unsubscribe_url"]: url,
                PLACEHOLDERS["first_name"]: html.escape(first),
                TEXT_PLACEHOLDERS["first_name"]: first,
            },
            headers={"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK},
        )


# --- dry run and test sends ------------------------------------------------------------------


def dry_run(
    settings: Settings, engine: Engine, issue_id: str, *, provider: str | None = None
) -> DryRunReport:
    """What a send would do now: recipients and batches. Sends nothing, writes nothing."""
    _subject, status = issue_row(engine, issue_id)
    name = provider or settings.provider
    limits = {"sendgrid": 1000, "outbox": 1000, "smtp": max(100, 25 * settings.smtp_connections)}
    batch_size = max(1, min(settings.batch_size, limits.get(name, settings.batch_size)))
    recipients = 0 if status == IssueStatus.SENT else ledger.recipients_to_send(engine, issue_id)
    uncertain = sum(batch.recipients for batch in ledger.uncertain_batches(engine, issue_id))
    return DryRunReport(
        issue_id=issue_id,
        provider=name,
        recipients=recipients,
        batch_size=batch_size,
        batches=math.ceil(recipients / batch_size),
        uncertain=uncertain,
        issue_status=status,
    )


def send_test(
    settings: Settings,
    issue_id: str,
    addresses: Sequence[str],
    provider: str | None = None,
    *,
    engine: Engine | None = None,
) -> TestSendReport:
    """Send the issue to ``addresses`` only, outside the ledger, subject prefixed "[TEST] "."""
    cleaned = [normalize_email(address) for address in addresses if address.strip()]
    if not cleaned:
        raise SubscriberError("a test send needs at least one address")
    engine = engine or open_database(settings.database_url)
    content = load_content(settings, engine, issue_id, subject_prefix=TEST_PREFIX)
    builder = RecipientBuilder(settings)
    recipients = []
    for address in cleaned:
        recipients.append(builder.build(0, address, email_hash(address), None))
    messenger = get_messenger(settings, provider)
    try:
        result = messenger.push(content, recipients)
        messenger.flush()
    finally:
        messenger.close()
    failed = dict(result.failed)
    for address in [*result.deferred, *result.uncertain]:
        failed.setdefault(
            address, f"{messenger.name}: {result.error}" if result.error else "not confirmed by the provider"
        )
    return TestSendReport(
        issue_id=issue_id,
        provider=messenger.name,
        addresses=cleaned,
        accepted=list(result.accepted),
        failed=failed,
    )
