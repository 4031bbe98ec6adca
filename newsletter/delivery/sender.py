"""Sending an issue: the loop that ties the ledger to a messenger.

    mark issue sending
    loop:  materialise the next keyset page of pending rows (idempotent)
           claim a batch (in_flight, COMMIT)  ->  push  ->  record (sent/failed, COMMIT)
    mark issue sent when no pending or in_flight rows remain

A batch whose request failed for certain (refused, unreachable) goes back to
pending; one whose fate is unknown (no answer) stays in_flight and is never
resent automatically: ``--resend-uncertain`` or a webhook resolves it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from newsletter.config import Settings
from newsletter.delivery import ledger
from newsletter.delivery.messengers import Content, Messenger, PushResult, Recipient, get_messenger
from newsletter.errors import DeliveryError, NotFoundError, ProviderError, SubscriberError, driver_message
from newsletter.render import substitutions
from newsletter.subscribers import UnsubscribeLinks, normalize_email
from newsletter.tables import IssueRow

log = logging.getLogger(__name__)

PAGE_SIZE = 5000
TEST_PREFIX = "[TEST] "


# --- reports ----------------------------------------------------------------------------


@dataclass
class SendProgress:
    issue_id: str
    total: int
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    uncertain: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.suppressed + self.uncertain

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0


@dataclass
class SendReport:
    issue_id: str
    provider: str
    total: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    uncertain: int = 0
    batches: int = 0
    requeued: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    already_sent: bool = False
    issue_status: str = "draft"
    remaining: int = 0
    error: str | None = None

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class DryRunReport:
    issue_id: str
    provider: str
    recipients: int
    batch_size: int
    batches: int
    uncertain: int
    issue_status: str


@dataclass
class TestSendReport:
    issue_id: str
    provider: str
    addresses: list[str]
    accepted: list[str]
    failed: dict[str, str]


ProgressCallback = Callable[[SendProgress], None]


# --- the issue's content ---------------------------------------------------------------------


def _issue_row(engine: Engine, issue_id: str) -> tuple[str, str]:
    with engine.connect() as conn:
        row = conn.execute(select(IssueRow.subject, IssueRow.status).where(IssueRow.id == issue_id)).first()
    if row is None:
        raise NotFoundError(f"no issue {issue_id!r} (see `newsletter issue list`)")
    return str(row[0]), str(row[1])


def load_content(settings: Settings, engine: Engine, issue_id: str, *, subject_prefix: str = "") -> Content:
    """The archived issue (rendered once) as a Content with placeholders."""
    from newsletter.archive import load_issue

    subject, _status = _issue_row(engine, issue_id)
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
    """Turns ledger rows into Recipients: unsubscribe URL, List-Unsubscribe headers, substitutions."""

    def __init__(self, settings: Settings) -> None:
        self._links = UnsubscribeLinks(settings)

    def build(self, subscriber_id: int, email: str, email_hash: str, name: str | None) -> Recipient:
        url = self._links.url(subscriber_id, email_hash)
        values = {"unsubscribe_url": url}
        first_name = (name or "").strip().split(" ")[0]
        if first_name:
            values["first_name"] = first_name
        return Recipient(
            email=email,
            subscriber_id=subscriber_id,
            name=(name or "").strip() or None,
            substitutions=substitutions(values),
            headers=self._links.headers(url),
        )


# --- issue status -----------------------------------------------------------------------------


def _mark_sending(engine: Engine, issue_id: str) -> None:
    from newsletter.issues import mark_sending

    mark_sending(engine, issue_id)


def _mark_sent(engine: Engine, issue_id: str) -> None:
    from newsletter.issues import mark_sent

    mark_sent(engine, issue_id)


# --- the send ------------------------------------------------------------------------------


class _PendingPages:
    """Writes the ledger's pending rows one keyset page of subscribers at a time.

    It keeps a rough count of the pending rows this process wrote and has not
    claimed yet, only to decide when to write the next page (while a request is
    out, rather than between two requests). Correctness never depends on it:
    other processes may claim those rows, and an empty claim always asks for
    the next page before the send ends.
    """

    def __init__(self, engine: Engine, issue_id: str, *, page_size: int) -> None:
        self._engine = engine
        self._issue_id = issue_id
        self._page_size = page_size
        self._cursor = 0
        self._unclaimed = 0
        self.exhausted = False

    def fill(self, *, force: bool = False) -> bool:
        """Write the next page; False when the scan found no subscriber past the cursor."""
        if self.exhausted and not force:
            return False
        before = self._cursor
        self._cursor, self.exhausted, written = ledger.materialize_page(
            self._engine, self._issue_id, self._cursor, self._page_size
        )
        self._unclaimed += written
        return self._cursor != before

    def fill_if_low(self, batch_size: int) -> None:
        if not self.exhausted and self._unclaimed < 2 * batch_size:
            self.fill()

    def claimed(self, count: int) -> None:
        self._unclaimed = max(0, self._unclaimed - count)


def send_issue(
    settings: Settings,
    engine: Engine,
    issue_id: str,
    *,
    provider: str | None = None,
    resend_uncertain: bool = False,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    worker: str | None = None,
    messenger: Messenger | None = None,
) -> SendReport:
    """Send ``issue_id`` to every mailable subscriber not yet mailed. Safe to run again, and in parallel.

    Raises ProviderRejectedError / ProviderUnavailableError (after recording what was
    sent) when the provider refuses or stays unavailable; run it again after the fix.
    """
    started = time.monotonic()
    _subject, status = _issue_row(engine, issue_id)
    own_messenger = messenger is None
    if messenger is None:
        messenger = get_messenger(settings, provider)
    report = SendReport(issue_id=issue_id, provider=messenger.name, issue_status=status)
    if status == "sent":
        report.already_sent = True
        if own_messenger:
            messenger.close()
        return report
    worker = worker or ledger.worker_name()
    finished = False
    # One helper thread: the request goes out on it while this thread prepares the next batch.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="push")
    try:
        # Frozen first, then read: a rebuild can no longer change the archive between
        # reading what to send and the first batch (what was sent is what it shows).
        _mark_sending(engine, issue_id)
        content = load_content(settings, engine, issue_id)
        if resend_uncertain:
            _batches, report.requeued = ledger.requeue_uncertain(engine, issue_id)
        report.total = ledger.recipients_to_send(engine, issue_id)
        state = SendProgress(issue_id=issue_id, total=report.total)
        builder = RecipientBuilder(settings)
        batch_size = max(1, min(settings.batch_size, messenger.max_batch_size))
        pages = _PendingPages(engine, issue_id, page_size=max(PAGE_SIZE, batch_size))
        pages.fill()
        claimed_up_to = 0  # the claim cursor (see ledger.claim_batch)
        while True:
            if stop is not None and stop.is_set():
                report.interrupted = True
                break
            claim = ledger.claim_batch(
                engine, issue_id, batch_size, worker=worker, provider=messenger.name, after=claimed_up_to
            )
            if claim is None:
                # Nothing pending past the cursor: the next page (or subscribers who confirmed
                # mid-send with an id beyond it); then one sweep from the start for rows
                # behind the cursor (released by a failed batch, or skipped while another
                # process held them). Done when neither finds anything.
                if pages.fill(force=True):
                    continue
                if claimed_up_to:
                    claimed_up_to = 0
                    continue
                break
            claimed_up_to = claim.last_subscriber_id
            pages.claimed(len(claim.recipients) + claim.suppressed)
            state.suppressed += claim.suppressed
            report.suppressed += claim.suppressed
            if claim.recipients:
                recipients = [
                    builder.build(r.subscriber_id, r.email, r.email_hash, r.name) for r in claim.recipients
                ]
                # While the request is out, write the next page of pending rows (no claim).
                meanwhile = functools.partial(pages.fill_if_low, batch_size)
                _send_batch(messenger, content, recipients, engine, claim, report, state, pool, meanwhile)
            if progress is not None:
                progress(state)
        exhausted = pages.exhausted
        messenger.flush()
        finished = exhausted and not report.interrupted
    except DeliveryError as exc:
        report.error = str(exc)
        exc.report = report  # type: ignore[attr-defined]  # what was done before it stopped
        raise
    except SQLAlchemyError as exc:
        # The database went away or stayed locked mid-send. The ledger holds what was
        # done: at most the batch being recorded is left in flight (uncertain).
        error = DeliveryError(
            f"database error during the send ({driver_message(exc)}); "
            f"run `newsletter send {issue_id}` again to resume"
        )
        report.error = str(error)
        error.report = report  # type: ignore[attr-defined]
        raise error from exc
    finally:
        report.elapsed = time.monotonic() - started
        pool.shutdown(wait=True)
        if own_messenger:
            messenger.close()
    report.remaining = ledger.remaining(engine, issue_id)
    if report.remaining == 0 and finished:
        _mark_sent(engine, issue_id)
    report.issue_status = _issue_row(engine, issue_id)[1]
    return report


def _send_batch(
    messenger: Messenger,
    content: Content,
    recipients: list[Recipient],
    engine: Engine,
    claim: ledger.Claim,
    report: SendReport,
    state: SendProgress,
    pool: ThreadPoolExecutor,
    meanwhile: Callable[[], None],
) -> None:
    future = pool.submit(messenger.push, content, recipients)
    try:
        meanwhile()
    except Exception:  # only a head start for the next batch: never worth failing this one
        log.debug("preparing the next batch failed", exc_info=True)
    try:
        result = future.result()
    except ProviderError as exc:
        if getattr(exc, "uncertain", False):
            ledger.note_uncertain(engine, claim.batch_id, str(exc))
            report.uncertain += len(recipients)
            state.uncertain += len(recipients)
        else:
            ledger.release_batch(engine, claim.batch_id, str(exc))
        raise
    except DeliveryError as exc:
        ledger.release_batch(engine, claim.batch_id, str(exc))
        raise
    report.batches += 1
    state.batches += 1
    if _all_accepted(result, recipients):
        count = ledger.record_all_sent(engine, claim.batch_id, result.batch_message_id)
        report.sent += count
        state.sent += count
        return
    by_email = {r.email: r.delivery_id for r in claim.recipients}
    outcome = ledger.Outcome()
    accepted = set(result.accepted)
    for email in accepted:
        outcome.sent[by_email[email]] = result.message_ids.get(email) or result.batch_message_id
    for email, error in result.failed.items():
        outcome.failed[by_email[email]] = error
    outcome.deferred = [by_email[email] for email in result.deferred]
    outcome.uncertain = [by_email[email] for email in result.uncertain]
    seen = accepted | set(result.failed) | set(result.deferred) | set(result.uncertain)
    # Anything the messenger did not report on is treated as uncertain (never resent silently).
    outcome.uncertain += [r.delivery_id for r in claim.recipients if r.email not in seen]
    ledger.record_outcome(
        engine, claim.batch_id, outcome, batch_message_id=result.batch_message_id, error=result.error
    )
    report.sent += len(outcome.sent)
    report.failed += len(outcome.failed)
    report.uncertain += len(outcome.uncertain)
    state.sent += len(outcome.sent)
    state.failed += len(outcome.failed)
    state.uncertain += len(outcome.uncertain)
    if result.error and outcome.deferred:
        raise DeliveryError(
            f"{messenger.name}: {result.error}; {len(outcome.deferred)} recipients left pending "
            "(send again to resume)"
        )


def _all_accepted(result: PushResult, recipients: Sequence[Recipient]) -> bool:
    return (
        not result.failed
        and not result.deferred
        and not result.uncertain
        and not result.message_ids
        and len(result.accepted) == len(recipients)
    )


# --- dry run and test sends ------------------------------------------------------------------


def dry_run(
    settings: Settings, engine: Engine, issue_id: str, *, provider: str | None = None
) -> DryRunReport:
    """What a send would do now: recipients and batches. Sends nothing, writes nothing."""
    _subject, status = _issue_row(engine, issue_id)
    name = provider or settings.provider
    limits = {"sendgrid": 1000, "outbox": 1000, "smtp": max(100, 25 * settings.smtp_connections)}
    batch_size = max(1, min(settings.batch_size, limits.get(name, settings.batch_size)))
    recipients = 0 if status == "sent" else ledger.recipients_to_send(engine, issue_id)
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
    from newsletter.db import open_database

    cleaned = [normalize_email(address) for address in addresses if address.strip()]
    if not cleaned:
        raise SubscriberError("a test send needs at least one address")
    engine = engine or open_database(settings.database_url)
    content = load_content(settings, engine, issue_id, subject_prefix=TEST_PREFIX)
    builder = RecipientBuilder(settings)
    recipients = []
    for address in cleaned:
        digest = hashlib.sha256(address.lower().encode()).hexdigest()
        recipients.append(builder.build(0, address, digest, None))
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


def as_json(report: Any) -> str:
    """A report as one JSON line (for scripts and the admin page)."""
    data = {key: value for key, value in vars(report).items() if not key.startswith("_")}
    return json.dumps(data, default=str, sort_keys=True)
