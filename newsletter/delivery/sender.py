"""Sending an issue: the loop that ties the ledger to a messenger.

    mark issue sending
    loop:  materialise the next keyset page of pending rows (idempotent)
           claim a batch (in_flight, COMMIT)  ->  push  ->  record (sent/failed, COMMIT)
           with up to SEND_CONCURRENCY batches between their claim and their record
    mark issue sent when no pending or in_flight rows remain

A batch whose request failed for certain (refused, unreachable) goes back to
pending; one whose fate is unknown (no answer) stays in_flight and is never
resent automatically: ``--resend-uncertain`` or a webhook resolves it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from newsletter.config import Settings
from newsletter.db import is_postgres
from newsletter.delivery import ledger
from newsletter.delivery.content import RecipientBuilder, issue_row, load_content
from newsletter.delivery.messengers import (
    Content,
    Messenger,
    PushResult,
    WaitInterrupted,
    get_messenger,
)
from newsletter.delivery.messengers.outbox import OutboxMessenger
from newsletter.delivery.pending import PAGE_SIZE, PendingPages
from newsletter.delivery.reports import ProgressCallback, SendProgress, SendReport
from newsletter.errors import DeliveryError, ProviderError, driver_message
from newsletter.issues import mark_sending, mark_sent
from newsletter.states import DeliveryState, IssueStatus

log = logging.getLogger(__name__)


# --- the send ------------------------------------------------------------------------------


class _Leases:
    """The batches this process holds, their leases renewed from a helper thread.

    Another process (on any host) takes over a batch only once its lease has
    expired, so a sender that is alive, even one waiting minutes for an answer,
    never has its batch resent under it. Ready for several batches in flight.
    """

    def __init__(self, engine: Engine, seconds: float) -> None:
        self._engine = engine
        self.seconds = seconds
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def __enter__(self) -> _Leases:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:  # whatever is left is nobody's now (its lease runs out on other hosts)
            left, self._held = self._held, set()
        for batch_id in left:
            ledger.release_here(batch_id)

    def hold(self, batch_id: str) -> None:
        with self._lock:
            self._held.add(batch_id)
        ledger.hold_here(batch_id)

    def drop(self, batch_id: str) -> None:
        with self._lock:
            self._held.discard(batch_id)
        ledger.release_here(batch_id)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            with self._lock:
                held = list(self._held)
            try:
                ledger.renew_leases(self._engine, held, self.seconds)
            except SQLAlchemyError as exc:  # the next renewal may succeed; the lease has slack
                log.warning("renewing the leases of %d batches failed: %s", len(held), driver_message(exc))


# how long a send waits, at most, for a deferred recipient's next try before it stops
# (they stay pending with their not-before time; a later run retries them)
MAX_DEFER_WAIT = 60.0


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
    _subject, status = issue_row(engine, issue_id)
    stop = stop or threading.Event()
    own_messenger = messenger is None
    if messenger is None:
        messenger = get_messenger(settings, provider, stop=stop)
    report = SendReport(issue_id=issue_id, provider=messenger.name, issue_status=status)
    if status == IssueStatus.SENT:
        report.already_sent = True
        if own_messenger:
            messenger.close()
        return report
    worker = worker or ledger.worker_name(settings.worker_name)
    finished = False
    # The requests go out on these threads while this one claims and records. Messengers
    # that cannot push from several threads at once (the outbox) get one lane.
    lanes = settings.send_concurrency if getattr(messenger, "concurrent", False) else 1
    pool = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="push")
    leases = _Leases(engine, settings.lease_seconds)
    try:
        # Frozen first, then read: a rebuild can no longer change the archive between
        # reading what to send and the first batch (what was sent is what it shows).
        mark_sending(engine, issue_id)
        content = load_content(settings, engine, issue_id)
        if isinstance(messenger, OutboxMessenger):
            report.reconciled = _reconcile_outbox(engine, messenger, issue_id, worker, settings.lease_seconds)
        if resend_uncertain:
            requeued = ledger.requeue_uncertain(
                engine, issue_id, worker=worker, lease_seconds=settings.lease_seconds
            )
            report.requeued, report.live = requeued.rows, requeued.live
        report.total = ledger.recipients_to_send(engine, issue_id)
        state = SendProgress(issue_id=issue_id, total=report.total)
        batch = _Batcher(settings, engine, messenger, content, worker, report, state, pool, leases, lanes)
        with leases:
            batch.run_pass(stop, progress)
            # Recipients the server deferred (4xx) are retried after everyone else, while
            # their next try is close; the rest wait for a later run.
            for _round in range(settings.max_retries):
                wait = ledger.next_deferred_wait(engine, issue_id, within=MAX_DEFER_WAIT)
                if wait is None or stop.is_set():
                    break
                if stop.wait(wait):
                    break
                batch.run_pass(stop, progress)
        messenger.flush()
        finished = batch.exhausted
        if finished:
            _wait_for_other_senders(engine, issue_id, stop)
    except DeliveryError as exc:
        report.error = str(exc)
        exc.report = report  # type: ignore[attr-defined]  # what was done before it stopped
        _unfreeze_if_untouched(engine, issue_id)
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
    _settle_report(engine, issue_id, report, finished=finished, stopped=stop.is_set())
    return report


# the longest a finished send waits for other live senders' batches of the same issue
MAX_WAIT_FOR_OTHERS = 900.0


def _wait_for_other_senders(engine: Engine, issue_id: str, stop: threading.Event) -> None:
    """Wait while another live sender (any host) holds batches of this issue.

    So the report (and the exit code) tells whether the issue went out, not merely that
    this process ran out of work while another one was finishing its last batch. A
    sender that dies stops renewing its lease, which ends the wait.
    """
    deadline = time.monotonic() + MAX_WAIT_FOR_OTHERS
    while time.monotonic() < deadline:
        if not any(batch.held_by_someone() for batch in ledger.uncertain_batches(engine, issue_id)):
            return
        if stop.wait(0.2):
            return


def _settle_report(
    engine: Engine, issue_id: str, report: SendReport, *, finished: bool, stopped: bool
) -> None:
    report.remaining = ledger.remaining(engine, issue_id)
    counts = ledger.counts_by_state(engine, issue_id)
    report.in_flight = counts.get(DeliveryState.IN_FLIGHT, 0)
    report.deferred = ledger.deferred_count(engine, issue_id)
    report.interrupted = report.interrupted or (stopped and report.remaining > 0)
    if report.remaining == 0 and finished:
        mark_sent(engine, issue_id)
    else:
        _unfreeze_if_untouched(engine, issue_id)
    report.issue_status = issue_row(engine, issue_id)[1]


def _unfreeze_if_untouched(engine: Engine, issue_id: str) -> None:
    """Nobody was mailed (nor may have been): the issue is a draft again, out of the public archive."""
    try:
        ledger.unfreeze_if_untouched(engine, issue_id)
    except SQLAlchemyError as exc:  # only tidying: the send's own error matters more
        log.warning("could not return issue %s to draft: %s", issue_id, driver_message(exc))


def _reconcile_outbox(
    engine: Engine, messenger: OutboxMessenger, issue_id: str, worker: str, lease_seconds: float
) -> int:
    """Settle outbox batches left in flight by a crash against the files on disk.

    A row whose .eml exists was written (sent); the others were not (pending again);
    half-written .tmp files are removed. Only batches whose lease expired (their
    sender is gone): a live sender's batch is still being written.
    """
    settled = 0
    for batch in ledger.uncertain_batches(engine, issue_id, provider=messenger.name):
        if not ledger.take_over(engine, batch, worker, lease_seconds):
            continue
        rows = ledger.in_flight_rows(engine, batch.batch_id)
        written = messenger.written(issue_id, {subscriber_id for _row, subscriber_id in rows})
        sent = [row for row, subscriber_id in rows if subscriber_id in written]
        ledger.settle_rows(
            engine, batch.batch_id, sent=sent, error="reconciled with the outbox after an interruption"
        )
        settled += len(rows)
    return settled


class _Batcher:
    """Claims, pushes and records batches until nothing is pending (one pass over the ledger)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        messenger: Messenger,
        content: Content,
        worker: str,
        report: SendReport,
        state: SendProgress,
        pool: ThreadPoolExecutor,
        leases: _Leases,
        lanes: int = 1,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.messenger = messenger
        self.content = content
        self.worker = worker
        self.report = report
        self.state = state
        self.pool = pool
        self.leases = leases
        self.builder = RecipientBuilder(settings)
        self.lanes = lanes
        self.batch_size = max(1, min(settings.batch_size, messenger.max_batch_size))
        self.pages = PendingPages(engine, content.issue_id or "", page_size=max(PAGE_SIZE, self.batch_size))
        self.exhausted = False
        # On PostgreSQL each lane records its own batch, on its own connection, while this
        # thread claims the next ones (in parallel on the server). SQLite has one writer:
        # there the claiming thread records too, rather than make lanes wait for its lock.
        self.lanes_record = lanes > 1 and is_postgres(engine)
        # ... and the next pages of pending rows are written on their own thread too
        self._filler: ThreadPoolExecutor | None = None  # one per pass (see run_pass)
        self._filling: Future[None] | None = None
        self._recording = threading.Lock()  # the report's counters, from several lanes

    def run_pass(self, stop: threading.Event, progress: ProgressCallback | None) -> None:
        """Keep up to ``lanes`` batches in flight until nothing is pending.

        This thread claims; the pool's threads push, and on PostgreSQL record their own
        outcome (``lanes_record``), else this thread records them as they come. Each
        in-flight batch is its own claim, committed before its request and held under its
        own lease, so a crash leaves at most ``lanes`` batches uncertain. Claiming the next
        batch and recording the last happen while the others are out.
        """
        self.pages.fill(force=True)
        if self.lanes_record:
            self._filler = ThreadPoolExecutor(1, thread_name_prefix="pages")
        running: dict[Future[Any], ledger.Claim] = {}
        first_error: BaseException | None = None
        cursor = 0  # the claim cursor (see ledger.claim_batch)
        more = True
        lane: Callable[[ledger.Claim], Any] = (
            self._push_and_record if self.lanes_record else self._build_and_push
        )
        try:
            while True:
                while more and first_error is None and not stop.is_set() and len(running) < self.lanes:
                    claim, cursor, more = self._claim_next(cursor)
                    if claim is not None and claim.recipients:
                        running[self.pool.submit(lane, claim)] = claim
                    elif claim is not None and progress is not None:  # all of it suppressed
                        progress(self.state)
                if not running:
                    break
                self._meanwhile()
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    claim = running.pop(future)
                    try:
                        self._record(claim, future)
                    except Exception as exc:  # the first error stops the send once the rest are in
                        if first_error is None:
                            first_error = exc
                        else:
                            log.warning("%s: another batch failed too: %s", self.messenger.name, exc)
                    if progress is not None:
                        progress(self.state)
        except BaseException:
            # The ledger failed under us (or we were interrupted): record what the other
            # lanes got back where it still can, so only what is truly unknown stays uncertain.
            self._drain(running)
            raise
        finally:
            if self._filler is not None:
                self._filler.shutdown(wait=True)
                self._filler = self._filling = None
        if first_error is not None:
            raise first_error
        self.exhausted = self.pages.exhausted

    def _claim_next(self, cursor: int) -> tuple[ledger.Claim | None, int, bool]:
        """The next batch: (claim or None, the new cursor, whether more may be pending)."""
        issue_id = self.content.issue_id or ""
        while True:
            claim = ledger.claim_batch(
                self.engine,
                issue_id,
                self.batch_size,
                worker=self.worker,
                provider=self.messenger.name,
                after=cursor,
                lease_seconds=self.leases.seconds,
            )
            if claim is not None:
                break
            # Nothing pending past the cursor: the next page (or subscribers who confirmed
            # mid-send with an id beyond it); then one sweep from the start for rows
            # behind the cursor (released by a failed batch, or skipped while another
            # process held them). Done when neither finds anything.
            if self.pages.fill(force=True):
                continue
            if cursor:
                cursor = 0
                continue
            return None, 0, False
        self.pages.claimed(len(claim.recipients) + claim.suppressed)
        _count(self._recording, self.report, self.state, suppressed=claim.suppressed)
        if claim.recipients:
            self.leases.hold(claim.batch_id)
        return claim, claim.last_subscriber_id, True

    def _build_and_push(self, claim: ledger.Claim) -> PushResult:
        """On a lane: the per-recipient parts (signing the unsubscribe links), then the request.

        Built here rather than on the claiming thread, so the next claim is not held up by
        them. A failure while building happens before anything is handed over (the batch
        goes back to pending, see _settle_batch).
        """
        build = self.builder.build
        recipients = [build(r.subscriber_id, r.email, r.email_hash, r.name) for r in claim.recipients]
        return self.messenger.push(self.content, recipients)

    def _meanwhile(self) -> None:
        """While requests are out, write the next page of pending rows (no claim): on
        PostgreSQL on the pages thread, so the next claims do not wait for it."""
        if self._filler is not None:
            if self._filling is None or self._filling.done():
                self._filling = self._filler.submit(self._fill)
            return
        self._fill()

    def _fill(self) -> None:
        try:
            self.pages.fill_if_low(self.batch_size * self.lanes)
        except Exception:  # only a head start for the next batches: never worth failing one
            log.debug("preparing the next batches failed", exc_info=True)

    def _push_and_record(self, claim: ledger.Claim) -> None:
        """On a lane (PostgreSQL): push, then record the outcome; raises what _record raises."""
        pushed: Future[PushResult] = Future()
        try:
            pushed.set_result(self._build_and_push(claim))
        except Exception as exc:  # recorded below as the claiming thread would (_settle_batch)
            pushed.set_exception(exc)
        self._settle(claim, pushed)

    def _record(self, claim: ledger.Claim, future: Future[Any]) -> None:
        """A finished lane: record its outcome, or, when the lane recorded it, surface its error."""
        if self.lanes_record:
            future.result()
            return
        self._settle(claim, future)

    def _settle(self, claim: ledger.Claim, future: Future[PushResult]) -> None:
        try:
            _settle_batch(
                self.messenger,
                self.content,
                claim.recipients,
                self.engine,
                claim,
                self.report,
                self.state,
                future,
                self.settings,
                self._recording,
            )
        finally:
            self.leases.drop(claim.batch_id)

    def _drain(self, running: dict[Future[Any], ledger.Claim]) -> None:
        for future in list(running):
            claim = running.pop(future)
            try:
                self._record(claim, future)
            except Exception as exc:  # already failing: the first error is the one reported
                log.warning("%s: recording a batch after an error failed: %s", self.messenger.name, exc)


def _settle_batch(
    messenger: Messenger,
    content: Content,
    recipients: Sequence[object],
    engine: Engine,
    claim: ledger.Claim,
    report: SendReport,
    state: SendProgress,
    future: Future[PushResult],
    settings: Settings,
    counting: threading.Lock,
) -> None:
    """Record what the push of one claimed batch did (``future`` is done, or will be).

    ``counting`` guards the report's counters: lanes may record at the same time.
    """
    try:
        result = future.result()
    except ProviderError as exc:
        if getattr(exc, "uncertain", False):
            ledger.note_uncertain(engine, claim.batch_id, str(exc))
            _count(counting, report, state, uncertain=len(recipients))
        else:
            ledger.release_batch(engine, claim.batch_id, str(exc))
            if isinstance(exc, WaitInterrupted):
                return  # SIGTERM during a wait: nothing was handed over; the loop stops
        raise
    except DeliveryError as exc:
        ledger.release_batch(engine, claim.batch_id, str(exc))
        raise
    except Exception as exc:
        # Anything else a messenger raises (a render error, a bad header...) happens before
        # the batch is handed over: messengers that deliver one by one report what they
        # delivered instead of raising. So nobody of this batch was mailed: back to pending.
        ledger.release_batch(engine, claim.batch_id, f"{type(exc).__name__}: {exc}")
        # the traceback only at DEBUG: the user gets the one line below
        log.debug("%s: the batch failed before it was handed over", messenger.name, exc_info=True)
        raise DeliveryError(
            f"{messenger.name}: {type(exc).__name__}: {exc} (nobody of this batch was mailed; "
            f"fix it and run `newsletter send {content.issue_id}` again)"
        ) from exc
    if _all_accepted(result, recipients):
        count = ledger.record_all_sent(engine, claim.batch_id, result.batch_message_id)
        _count(counting, report, state, batches=1, sent=count)
        return
    outcome = _outcome(claim, result)
    gave_up = ledger.record_outcome(
        engine,
        claim.batch_id,
        outcome,
        batch_message_id=result.batch_message_id,
        error=result.error,
        backoff=max(settings.retry_backoff, 0.01),
        give_up=settings.defer_give_up,
    )
    failed = len(outcome.failed) + len(outcome.refused)
    _count(
        counting,
        report,
        state,
        batches=1,
        sent=len(outcome.sent),
        failed=failed,
        uncertain=len(outcome.uncertain),
    )
    with counting:
        report.gave_up += gave_up
    for email, reason in result.refused.items():
        log.warning("%s refused %s: %s (marked failed, suppressed)", messenger.name, email, reason)
    if result.error and outcome.deferred and not result.interrupted:
        raise DeliveryError(
            f"{messenger.name}: {result.error}; {len(outcome.deferred)} recipients left pending "
            "(send again to resume)"
        )


def _count(counting: threading.Lock, report: SendReport, state: SendProgress, **amounts: int) -> None:
    """Add to the report and to the progress alike; lanes may count at the same time."""
    with counting:
        report.add(**amounts)
        state.add(**amounts)


def _outcome(claim: ledger.Claim, result: PushResult) -> ledger.Outcome:
    """The messenger's per-address report as per-row ledger changes."""
    by_email = {r.email: r.delivery_id for r in claim.recipients}
    outcome = ledger.Outcome()
    accepted = set(result.accepted)
    for email in accepted:
        outcome.sent[by_email[email]] = result.message_ids.get(email) or result.batch_message_id
    for email, error in result.failed.items():
        outcome.failed[by_email[email]] = error
    for email, error in result.refused.items():
        outcome.refused[by_email[email]] = error
    for email, reply in result.temporary.items():
        outcome.temporary[by_email[email]] = reply
    outcome.deferred = [by_email[email] for email in result.deferred]
    outcome.uncertain = [by_email[email] for email in result.uncertain]
    seen = accepted | set(result.failed) | set(result.refused) | set(result.temporary)
    seen |= set(result.deferred) | set(result.uncertain)
    # Anything the messenger did not report on is treated as uncertain (never resent silently).
    outcome.uncertain += [r.delivery_id for r in claim.recipients if r.email not in seen]
    return outcome


def _all_accepted(result: PushResult, recipients: Sequence[object]) -> bool:
    return (
        not result.failed
        and not result.refused
        and not result.temporary
        and not result.deferred
        and not result.uncertain
        and not result.message_ids
        and len(result.accepted) == len(recipients)
    )
