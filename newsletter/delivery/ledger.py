"""The delivery ledger: one row per (issue, subscriber), claimed in batches.

States: ``pending`` -> ``in_flight`` (claimed, committed before the request)
-> ``sent`` | ``failed``; ``suppressed`` when the subscriber stopped being
mailable between the scan and the claim.

Concurrency: on PostgreSQL a batch is claimed with ``SELECT … FOR UPDATE SKIP
LOCKED`` inside one ``UPDATE``, so several ``send`` processes split the work.
On SQLite the claim transaction starts with a write (the batch row), which
takes the database's single write lock; the ``UPDATE … WHERE state='pending'``
that follows therefore never overlaps another process's claim.

All of it is SQLAlchemy Core on purpose: a send of a million rows moves them
in bulk statements, a few per batch, never one ORM object per recipient.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    Integer,
    Table,
    and_,
    any_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from newsletter.db import insert_or_ignore, is_postgres
from newsletter.tables import (
    DeliveryBatchRow,
    DeliveryRow,
    IssueRow,
    SubscriberRow,
    SuppressionRow,
    UTCDateTime,
    WebhookEventRow,
    utcnow,
)

D = cast(Table, DeliveryRow.__table__)
B = cast(Table, DeliveryBatchRow.__table__)
S = cast(Table, SubscriberRow.__table__)
SUP = cast(Table, SuppressionRow.__table__)
EV = cast(Table, WebhookEventRow.__table__)
ISS = cast(Table, IssueRow.__table__)

STATES = ("pending", "in_flight", "sent", "failed", "suppressed")
MAILABLE_STATUS = "confirmed"


def worker_name(configured: str | None = None) -> str:
    """host:pid (or NEWSLETTER_WORKER_NAME), recorded on each batch so `status` can say who holds it."""
    return configured or f"{socket.gethostname()}:{os.getpid()}"


def _lease(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def _eligible() -> Any:
    """Confirmed, has an address, and not on the suppression list."""
    return and_(
        S.c.status == MAILABLE_STATUS,
        S.c.email.is_not(None),
        ~exists().where(SUP.c.email_hash == S.c.email_hash),
    )


# --- materialising pending rows (keyset pages) -----------------------------------------


def materialize_page(engine: Engine, issue_id: str, after_id: int, page_size: int) -> tuple[int, bool, int]:
    """Insert pending rows for the next ``page_size`` confirmed subscribers after ``after_id``.

    Returns the new keyset cursor, whether the scan is exhausted, and how many
    rows were written. Idempotent
    (ON CONFLICT DO NOTHING), so several processes may scan the same pages.
    """
    page = (
        select(S.c.id)
        .where(S.c.status == MAILABLE_STATUS, S.c.id > after_id)
        .order_by(S.c.id)
        .limit(page_size)
        .subquery()
    )
    with engine.begin() as conn:
        count, last = conn.execute(select(func.count(), func.max(page.c.id))).one()
        if not count:
            return after_id, True, 0
        rows = select(
            literal(issue_id),
            S.c.id,
            literal("pending"),
            literal(utcnow(), UTCDateTime),
        ).where(_eligible(), S.c.id > after_id, S.c.id <= last)
        columns = ["issue_id", "subscriber_id", "state", "updated_at"]
        stmt = insert_or_ignore(conn, D, ["issue_id", "subscriber_id"]).from_select(columns, rows)
        written = conn.execute(stmt).rowcount
    return int(last), count < page_size, max(0, int(written or 0))


# --- claiming a batch ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedRecipient:
    delivery_id: int
    subscriber_id: int
    email: str
    email_hash: str
    name: str | None


@dataclass
class Claim:
    batch_id: str
    recipients: list[ClaimedRecipient] = field(default_factory=list)
    suppressed: int = 0
    last_subscriber_id: int = 0  # the claim cursor for the next claim


def claim_batch(
    engine: Engine,
    issue_id: str,
    limit: int,
    *,
    worker: str,
    provider: str,
    after: int = 0,
    lease_seconds: float = 60.0,
) -> Claim | None:
    """Mark up to ``limit`` pending rows (subscriber id > ``after``) in_flight under a new batch; COMMIT.

    ``after`` is the caller's claim cursor: on PostgreSQL every claimed row leaves a
    dead entry at the front of the pending index until vacuum, so a claim that starts
    from the beginning walks past all earlier ones (quadratic over a million-row send).

    Subscribers who stopped being mailable since their row was written (they
    unsubscribed, bounced, complained or were suppressed mid-send) are marked
    ``suppressed`` here, in the same transaction. None when nothing was pending.
    Rows deferred by the server (``not_before`` in the future) wait for their time.
    The batch carries a lease of ``lease_seconds`` that its sender renews (``renew_leases``).
    """
    batch_id = str(uuid.uuid4())
    now = utcnow()
    with engine.begin() as conn:
        # First statement is a write: on SQLite it takes the write lock for the whole claim.
        conn.execute(
            insert(B).values(
                id=batch_id,
                issue_id=issue_id,
                state="in_flight",
                worker=worker,
                provider=provider,
                recipients=0,
                created_at=now,
                lease_until=now + timedelta(seconds=lease_seconds),
            )
        )
        due = or_(D.c.not_before.is_(None), D.c.not_before <= now)
        if is_postgres(engine):
            rows = _claim_rows_postgres(conn, issue_id, limit, batch_id, after, due, now)
        else:
            rows = _claim_rows_sqlite(conn, issue_id, limit, batch_id, after, due, now)
        if not rows:
            conn.execute(delete(B).where(B.c.id == batch_id))
            return None
        claim = Claim(batch_id=batch_id, last_subscriber_id=max(int(row[1]) for row in rows))
        gone: list[int] = []
        for delivery_id, subscriber_id, email, email_hash, name, status, suppressed in rows:
            if status != MAILABLE_STATUS or suppressed is not None or not email:
                gone.append(delivery_id)
            else:
                claim.recipients.append(ClaimedRecipient(delivery_id, subscriber_id, email, email_hash, name))
        if gone:
            conn.execute(
                update(D)
                .where(D.c.id.in_(gone))
                .values(state="suppressed", batch_id=None, error="not mailable at claim time", updated_at=now)
            )
            claim.suppressed = len(gone)
        if claim.recipients:
            conn.execute(update(B).where(B.c.id == batch_id).values(recipients=len(claim.recipients)))
        else:
            conn.execute(delete(B).where(B.c.id == batch_id))
    return claim


def _recipient_columns() -> tuple[Any, ...]:
    return (D.c.id, S.c.id, S.c.email, S.c.email_hash, S.c.name, S.c.status, SUP.c.email_hash)


def _with_subscribers(source: Any) -> Any:
    return source.join(S, S.c.id == D.c.subscriber_id).outerjoin(SUP, SUP.c.email_hash == S.c.email_hash)


def _claim_rows_postgres(
    conn: Connection, issue_id: str, limit: int, batch_id: str, after: int, due: Any, now: datetime
) -> list[Any]:
    """Lock the next pending rows other senders have not locked (SKIP LOCKED), mark them in_flight."""
    picked = (
        select(D.c.id)
        .where(D.c.issue_id == issue_id, D.c.state == "pending", D.c.subscriber_id > after, due)
        .order_by(D.c.subscriber_id)
        .limit(limit)
    )
    # The locked ids are read first, then updated by primary key: one statement would let
    # the planner re-evaluate the LIMIT subquery (and claim more than ``limit`` rows), or
    # hash-join the whole ledger once per batch.
    ids = list(conn.scalars(picked.with_for_update(skip_locked=True)))
    if not ids:
        return []
    conn.execute(
        update(D)
        .where(D.c.id == any_(bindparam("ids", ids, type_=ARRAY(Integer))), D.c.state == "pending")
        .values(state="in_flight", batch_id=batch_id, updated_at=now)
    )
    return list(
        conn.execute(
            select(*_recipient_columns())
            .select_from(_with_subscribers(D))
            # state too: the in-flight index is partial (migration 0002); without it this
            # scans the whole ledger, once per batch.
            .where(D.c.batch_id == batch_id, D.c.state == "in_flight")
            .order_by(S.c.id)
        ).all()
    )


def _claim_rows_sqlite(
    conn: Connection, issue_id: str, limit: int, batch_id: str, after: int, due: Any, now: datetime
) -> list[Any]:
    """Read the next pending rows with their subscribers, then mark that same range in_flight.

    Safe because the claim's first statement (the batch row) took SQLite's single write
    lock: no other process can claim, or add pending rows, between the read and the update,
    which therefore changes exactly the rows read (checked).
    """
    rows = list(
        conn.execute(
            select(*_recipient_columns())
            .select_from(_with_subscribers(D))
            .where(D.c.issue_id == issue_id, D.c.state == "pending", D.c.subscriber_id > after, due)
            .order_by(D.c.subscriber_id)
            .limit(limit)
        ).all()
    )
    if not rows:
        return []
    last = max(int(row[1]) for row in rows)
    claimed = conn.execute(
        update(D)
        .where(
            D.c.issue_id == issue_id,
            D.c.state == "pending",
            D.c.subscriber_id > after,
            D.c.subscriber_id <= last,
            due,
        )
        .values(state="in_flight", batch_id=batch_id, updated_at=now)
    ).rowcount
    if claimed != len(rows):  # the lock makes this impossible; never send what was not claimed
        raise RuntimeError(f"claimed {claimed} ledger rows but read {len(rows)}: is the write lock held?")
    return rows


# --- recording the outcome ---------------------------------------------------------------


def record_all_sent(engine: Engine, batch_id: str, message_id: str | None) -> int:
    """The common case: the provider accepted the whole batch. Two statements, one commit."""
    now = utcnow()
    with engine.begin() as conn:
        count = conn.execute(
            update(D)
            .where(D.c.batch_id == batch_id, D.c.state == "in_flight")
            .values(state="sent", message_id=message_id, updated_at=now)
        ).rowcount
        conn.execute(
            update(B)
            .where(B.c.id == batch_id)
            .values(state="sent", provider_message_id=message_id, finished_at=now)
        )
    return int(count)


@dataclass
class Outcome:
    """Per delivery row id: what happened to it."""

    sent: dict[int, str | None] = field(default_factory=dict)  # id -> message id
    failed: dict[int, str] = field(default_factory=dict)  # id -> error
    # the provider refuses the address itself: failed, and kept from later sends (suppressed)
    refused: dict[int, str] = field(default_factory=dict)
    # never handed over (a connection failed, the send stopped): pending again at once
    deferred: list[int] = field(default_factory=list)
    # the server said "later" for this recipient (SMTP 4xx): id -> its reply; pending
    # again after a backoff, failed once deferred for longer than ``give_up``
    temporary: dict[int, str] = field(default_factory=dict)
    uncertain: list[int] = field(default_factory=list)


def record_outcome(
    engine: Engine,
    batch_id: str,
    outcome: Outcome,
    *,
    batch_message_id: str | None,
    error: str | None,
    backoff: float = 1.0,
    give_up: float = 3 * 24 * 3600.0,
) -> int:
    """Record a push's outcome in one transaction. Returns how many deferred recipients gave up."""
    now = utcnow()
    gave_up = 0
    with engine.begin() as conn:
        if outcome.sent:
            conn.execute(
                update(D)
                .where(D.c.id == bindparam("row_id"), D.c.state == "in_flight")
                .values(state="sent", message_id=bindparam("mid"), not_before=None, updated_at=now),
                [{"row_id": key, "mid": value} for key, value in outcome.sent.items()],
            )
        failed = {**outcome.failed, **outcome.refused}
        if outcome.temporary:
            retry, expired = _schedule_deferred(conn, outcome.temporary, now, backoff, give_up)
            failed.update(expired)
            gave_up = len(expired)
            if retry:
                conn.execute(
                    update(D)
                    .where(D.c.id == bindparam("row_id"), D.c.state == "in_flight")
                    .values(
                        state="pending",
                        batch_id=None,
                        not_before=bindparam("nb"),
                        deferred_since=bindparam("since"),
                        error=bindparam("err"),
                        updated_at=now,
                    ),
                    retry,
                )
        if failed:
            conn.execute(
                update(D)
                .where(D.c.id == bindparam("row_id"), D.c.state == "in_flight")
                .values(state="failed", error=bindparam("err"), not_before=None, updated_at=now),
                [{"row_id": key, "err": value[:2000]} for key, value in failed.items()],
            )
        if outcome.refused:
            _suppress_rows(conn, list(outcome.refused), engine)
        if outcome.deferred:
            conn.execute(
                update(D)
                .where(D.c.id.in_(outcome.deferred), D.c.state == "in_flight")
                .values(state="pending", batch_id=None, updated_at=now)
            )
        if outcome.uncertain:
            state = "in_flight"
        elif outcome.sent:
            state = "sent"
        else:
            state = "failed"
        conn.execute(
            update(B)
            .where(B.c.id == batch_id)
            .values(
                state=state,
                provider_message_id=batch_message_id,
                error=error,
                finished_at=None if state == "in_flight" else now,
                # an uncertain batch is held by nobody from now on (see requeue_uncertain)
                lease_until=now,
            )
        )
    return gave_up


def _schedule_deferred(
    conn: Connection, replies: Mapping[int, str], now: datetime, backoff: float, give_up: float
) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Deferred rows: (updates putting them back with a not-before time, rows that gave up -> error).

    The wait doubles with each deferral: it is as long as the recipient has been deferred
    so far (at least ``backoff``, at most an hour), so a greylisting server is retried
    soon, and one that keeps deferring is retried ever more rarely until ``give_up``.
    """
    since_by_id = dict(
        conn.execute(select(D.c.id, D.c.deferred_since).where(D.c.id.in_(list(replies)))).all()
    )
    retry: list[dict[str, Any]] = []
    expired: dict[int, str] = {}
    for row_id, reply in replies.items():
        since = since_by_id.get(row_id) or now
        waited = (now - since).total_seconds()
        if waited >= give_up:
            expired[row_id] = f"deferred for {waited / 3600:.1f} h, gave up; last reply: {reply}"
            continue
        wait = min(3600.0, max(backoff, waited))
        retry.append(
            {"row_id": row_id, "nb": now + timedelta(seconds=wait), "since": since, "err": reply[:2000]}
        )
    return retry, expired


def _suppress_rows(conn: Connection, row_ids: list[int], engine: Engine) -> None:
    """Put the addresses of these delivery rows on the suppression list (never mailed again)."""
    rows = select(S.c.email_hash, literal("refused by the provider"), literal(utcnow(), UTCDateTime)).where(
        S.c.id.in_(select(D.c.subscriber_id).where(D.c.id.in_(row_ids)))
    )
    columns = ["email_hash", "reason", "created_at"]
    conn.execute(insert_or_ignore(conn, SUP, ["email_hash"]).from_select(columns, rows))


def release_batch(engine: Engine, batch_id: str, error: str) -> int:
    """The provider certainly did not take the batch: its rows go back to pending."""
    now = utcnow()
    with engine.begin() as conn:
        count = conn.execute(
            update(D)
            .where(D.c.batch_id == batch_id, D.c.state == "in_flight")
            .values(state="pending", batch_id=None, updated_at=now)
        ).rowcount
        conn.execute(
            update(B)
            .where(B.c.id == batch_id)
            .values(state="failed", error=error[:2000], finished_at=now, lease_until=now)
        )
    return int(count)


def note_uncertain(engine: Engine, batch_id: str, error: str) -> None:
    """The request may or may not have reached the provider: leave the rows in_flight.

    Its sender no longer holds it (the lease ends now): a webhook or
    ``--resend-uncertain``, from any host, may settle it.
    """
    with engine.begin() as conn:
        conn.execute(
            update(B)
            .where(B.c.id == batch_id)
            .values(error=f"uncertain: {error}"[:2000], lease_until=utcnow())
        )


# --- leases ---------------------------------------------------------------------------------


def renew_leases(engine: Engine, batch_ids: Iterable[str], lease_seconds: float) -> int:
    """The sender still works on these batches: push their leases forward."""
    ids = list(batch_ids)
    if not ids:
        return 0
    with engine.begin() as conn:
        result = conn.execute(
            update(B)
            .where(B.c.id.in_(ids), B.c.state == "in_flight")
            .values(lease_until=_lease(lease_seconds))
        )
    return int(result.rowcount or 0)


def take_over(engine: Engine, batch: UncertainBatch, worker: str, lease_seconds: float) -> bool:
    """Become the holder of an abandoned batch; False when someone holds it (or took it first).

    Atomic: of two processes taking over the same batch, one wins the UPDATE.
    """
    if batch.held_by_someone():
        return False
    now = utcnow()
    free = or_(B.c.lease_until.is_(None), B.c.lease_until <= now)
    if batch.lease_until is not None and batch.lease_until > now:
        # its sender on this host is gone: free unless someone renewed it since we looked
        free = and_(B.c.worker == batch.worker, B.c.lease_until == batch.lease_until)
    with engine.begin() as conn:
        result = conn.execute(
            update(B)
            .where(B.c.id == batch.batch_id, B.c.state == "in_flight", free)
            .values(worker=worker, lease_until=now + timedelta(seconds=lease_seconds))
        )
    return bool(result.rowcount)


# --- uncertain batches ----------------------------------------------------------------------


@dataclass(frozen=True)
class UncertainBatch:
    batch_id: str
    worker: str | None
    provider: str | None
    created_at: datetime
    recipients: int
    error: str | None
    lease_until: datetime | None = None

    def held_by_someone(self) -> bool:
        """True while its sender (on any host) keeps renewing the lease.

        A sender on this host whose process is gone holds nothing even before its
        lease runs out: a local crash is taken over at once.
        """
        if self.lease_until is not None:
            return self.lease_until > utcnow() and not _local_process_gone(self.worker)
        return _worker_alive(self.worker)  # a batch claimed before leases existed


def uncertain_batches(engine: Engine, issue_id: str, provider: str | None = None) -> list[UncertainBatch]:
    """Batches with rows still in_flight: in progress right now, or left by a crash."""
    stmt = (
        select(
            B.c.id, B.c.worker, B.c.provider, B.c.created_at, func.count(D.c.id), B.c.error, B.c.lease_until
        )
        .select_from(B.join(D, and_(D.c.batch_id == B.c.id, D.c.state == "in_flight")))
        .where(B.c.issue_id == issue_id)
        .group_by(B.c.id, B.c.worker, B.c.provider, B.c.created_at, B.c.error, B.c.lease_until)
        .order_by(B.c.created_at)
    )
    if provider is not None:
        stmt = stmt.where(B.c.provider == provider)
    with engine.connect() as conn:
        return [UncertainBatch(*row) for row in conn.execute(stmt)]


def _local_process_gone(worker: str | None) -> bool:
    """True only when ``worker`` names a process of this host (host:pid) that no longer exists."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _worker_alive(worker: str | None) -> bool:
    """True when ``worker`` is a live process on this host (its batch is not abandoned)."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Requeued:
    batches: int = 0
    rows: int = 0
    # batches a live sender still holds (its lease is being renewed): left alone
    live: list[UncertainBatch] = field(default_factory=list)


def requeue_uncertain(
    engine: Engine, issue_id: str, *, worker: str = "", lease_seconds: float = 60.0
) -> Requeued:
    """Put the rows of abandoned in_flight batches back to pending (``--resend-uncertain``).

    Only batches whose lease has expired, on any host: a live sender keeps renewing
    the lease of the batch it is sending, so its batch is never taken.
    """
    done = Requeued()
    for batch in uncertain_batches(engine, issue_id):
        if not take_over(engine, batch, worker or worker_name(), lease_seconds):
            done.live.append(batch)
            continue
        moved = settle_rows(
            engine, batch.batch_id, sent=[], error="uncertain: resent on request (--resend-uncertain)"
        )
        if moved:
            done.batches += 1
            done.rows += moved
    return done


def in_flight_rows(engine: Engine, batch_id: str) -> list[tuple[int, int]]:
    """(delivery id, subscriber id) of a batch's rows still in flight."""
    with engine.connect() as conn:
        return [
            (int(a), int(b))
            for a, b in conn.execute(
                select(D.c.id, D.c.subscriber_id).where(D.c.batch_id == batch_id, D.c.state == "in_flight")
            )
        ]


def settle_rows(engine: Engine, batch_id: str, *, sent: list[int], error: str) -> int:
    """Settle a taken-over batch: ``sent`` rows are sent, its other in-flight rows pending again.

    Returns how many went back to pending.
    """
    now = utcnow()
    with engine.begin() as conn:
        if sent:
            conn.execute(
                update(D)
                .where(D.c.id.in_(sent), D.c.batch_id == batch_id, D.c.state == "in_flight")
                .values(state="sent", updated_at=now)
            )
        moved = conn.execute(
            update(D)
            .where(D.c.batch_id == batch_id, D.c.state == "in_flight")
            .values(state="pending", batch_id=None, updated_at=now)
        ).rowcount
        conn.execute(
            update(B)
            .where(B.c.id == batch_id)
            .values(state="sent" if sent else "failed", error=error[:2000], finished_at=now, lease_until=now)
        )
    return int(moved or 0)


# --- counting -------------------------------------------------------------------------------


def counts_by_state(engine: Engine, issue_id: str) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    with engine.connect() as conn:
        for state, count in conn.execute(
            select(D.c.state, func.count()).where(D.c.issue_id == issue_id).group_by(D.c.state)
        ):
            counts[state] = int(count)
    return counts


def remaining(engine: Engine, issue_id: str) -> int:
    """Rows not finished: pending or in_flight."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(D.c.issue_id == issue_id, D.c.state.in_(("pending", "in_flight")))
            ).scalar_one()
        )


def failed_addresses(engine: Engine, issue_id: str, *, limit: int) -> list[tuple[str, str]]:
    """(address, reason) of the issue's failed recipients, the first ``limit`` by subscriber id."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(S.c.email, D.c.error)
            .select_from(D.join(S, S.c.id == D.c.subscriber_id))
            .where(D.c.issue_id == issue_id, D.c.state == "failed")
            .order_by(D.c.subscriber_id)
            .limit(limit)
        )
        return [(str(email or "(erased)"), str(error or "no reason recorded")) for email, error in rows]


def deferred_count(engine: Engine, issue_id: str) -> int:
    """Pending rows a server deferred (4xx), waiting for their next try."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    D.c.issue_id == issue_id, D.c.state == "pending", D.c.not_before.is_not(None)
                )
            ).scalar_one()
        )


def next_deferred_wait(engine: Engine, issue_id: str, *, within: float) -> float | None:
    """Seconds until every deferred row due within ``within`` seconds is due (0 if all are).

    None when no deferred row is due that soon. Waiting for the last of them, not the
    first, gives each one try per round after the rest of the send.
    """
    horizon = utcnow() + timedelta(seconds=within)
    with engine.connect() as conn:
        latest = conn.execute(
            select(func.max(D.c.not_before)).where(
                D.c.issue_id == issue_id,
                D.c.state == "pending",
                D.c.not_before.is_not(None),
                D.c.not_before <= horizon,
            )
        ).scalar()
    if latest is None:
        return None
    if not isinstance(latest, datetime):  # in case a driver bypasses the column type
        latest = datetime.fromisoformat(str(latest))
    if latest.tzinfo is None:
        latest = latest.replace(tzinfo=UTC)
    return max(0.0, (latest - utcnow()).total_seconds())


def unfreeze_if_untouched(engine: Engine, issue_id: str) -> bool:
    """A send that mailed nobody (no row sent or in flight) leaves the issue a draft, unpublished.

    The public archive lists sending and sent issues; one whose every attempt failed
    before anyone was mailed must not appear there.
    """
    touched = exists().where(D.c.issue_id == issue_id, D.c.state.in_(("sent", "in_flight")))
    with engine.begin() as conn:
        result = conn.execute(
            update(ISS)
            .where(ISS.c.id == issue_id, ISS.c.status == "sending", ~touched)
            .values(status="draft", send_started_at=None)
        )
    return bool(result.rowcount)


def recipients_to_send(engine: Engine, issue_id: str) -> int:
    """Mailable subscribers without a finished or claimed ledger row: what a send would mail now."""
    done = exists().where(D.c.issue_id == issue_id, D.c.subscriber_id == S.c.id, D.c.state != "pending")
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(S).where(_eligible(), ~done)).scalar_one())


def event_counts(
    engine: Engine, issue_id: str, events: Iterable[str] = ("delivered", "open", "click")
) -> dict[str, int]:
    names = list(events)
    counts = dict.fromkeys(names, 0)
    with engine.connect() as conn:
        for name, count in conn.execute(
            select(EV.c.event, func.count())
            .where(EV.c.issue_id == issue_id, EV.c.event.in_(names))
            .group_by(EV.c.event)
        ):
            counts[name] = int(count)
    return counts


def mark_in_flight_sent(conn: Connection, pairs: Mapping[tuple[str, int], str | None]) -> int:
    """Webhook proof of receipt: the (issue, subscriber) rows still in_flight become sent."""
    if not pairs:
        return 0
    now = utcnow()
    result = conn.execute(
        update(D)
        .where(
            D.c.issue_id == bindparam("iid"), D.c.subscriber_id == bindparam("sid"), D.c.state == "in_flight"
        )
        .values(
            state="sent",
            message_id=case((D.c.message_id.is_(None), bindparam("mid")), else_=D.c.message_id),
            updated_at=now,
        ),
        [{"iid": iid, "sid": sid, "mid": mid} for (iid, sid), mid in pairs.items()],
    )
    # Batches whose rows are all resolved are no longer uncertain.
    issue_ids = {iid for iid, _ in pairs}
    open_rows = exists().where(D.c.batch_id == B.c.id, D.c.state == "in_flight")
    conn.execute(
        update(B)
        .where(B.c.issue_id.in_(issue_ids), B.c.state == "in_flight", ~open_rows)
        .values(state="sent", finished_at=now)
    )
    return int(result.rowcount or 0)
