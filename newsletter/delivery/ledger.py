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
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.db import is_postgres
from newsletter.tables import (
    DeliveryBatchRow,
    DeliveryRow,
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

STATES = ("pending", "in_flight", "sent", "failed", "suppressed")
MAILABLE_STATUS = "confirmed"


def worker_name() -> str:
    """host:pid, recorded on each batch so `status` can say who claimed it."""
    return f"{socket.gethostname()}:{os.getpid()}"


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
        if is_postgres(engine):
            stmt: Any = (
                postgresql.insert(D)
                .from_select(columns, rows)
                .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
            )
        else:
            stmt = (
                sqlite.insert(D)
                .from_select(columns, rows)
                .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
            )
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
    engine: Engine, issue_id: str, limit: int, *, worker: str, provider: str, after: int = 0
) -> Claim | None:
    """Mark up to ``limit`` pending rows (subscriber id > ``after``) in_flight under a new batch; COMMIT.

    ``after`` is the caller's claim cursor: on PostgreSQL every claimed row leaves a
    dead entry at the front of the pending index until vacuum, so a claim that starts
    from the beginning walks past all earlier ones (quadratic over a million-row send).

    Subscribers who stopped being mailable since their row was written (they
    unsubscribed, bounced, complained or were suppressed mid-send) are marked
    ``suppressed`` here, in the same transaction. None when nothing was pending.
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
            )
        )
        picked = (
            select(D.c.id)
            .where(D.c.issue_id == issue_id, D.c.state == "pending", D.c.subscriber_id > after)
            .order_by(D.c.subscriber_id)
            .limit(limit)
        )
        if is_postgres(engine):
            # A materialised CTE: the locked LIMIT set is computed once (an IN (subquery)
            # may be re-evaluated by the planner and claim more than ``limit`` rows).
            locked = picked.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
            claim_stmt = update(D).where(D.c.id == locked.c.id, D.c.state == "pending")
        else:
            claim_stmt = update(D).where(D.c.id.in_(picked.scalar_subquery()), D.c.state == "pending")
        claimed = conn.execute(
            claim_stmt.values(state="in_flight", batch_id=batch_id, updated_at=now)
        ).rowcount
        if not claimed:
            conn.execute(delete(B).where(B.c.id == batch_id))
            return None
        rows = conn.execute(
            select(
                D.c.id,
                S.c.id,
                S.c.email,
                S.c.email_hash,
                S.c.name,
                S.c.status,
                SUP.c.email_hash,
            )
            .select_from(
                D.join(S, S.c.id == D.c.subscriber_id).outerjoin(SUP, SUP.c.email_hash == S.c.email_hash)
            )
            # state too: the in-flight index is partial (migration 0002); without it this
            # scans the whole ledger, once per batch.
            .where(D.c.batch_id == batch_id, D.c.state == "in_flight")
            .order_by(S.c.id)
        ).all()
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
    deferred: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)


def record_outcome(
    engine: Engine, batch_id: str, outcome: Outcome, *, batch_message_id: str | None, error: str | None
) -> None:
    now = utcnow()
    with engine.begin() as conn:
        if outcome.sent:
            conn.execute(
                update(D)
                .where(D.c.id == bindparam("row_id"), D.c.state == "in_flight")
                .values(state="sent", message_id=bindparam("mid"), updated_at=now),
                [{"row_id": key, "mid": value} for key, value in outcome.sent.items()],
            )
        if outcome.failed:
            conn.execute(
                update(D)
                .where(D.c.id == bindparam("row_id"), D.c.state == "in_flight")
                .values(state="failed", error=bindparam("err"), updated_at=now),
                [{"row_id": key, "err": value[:2000]} for key, value in outcome.failed.items()],
            )
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
            )
        )


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
            update(B).where(B.c.id == batch_id).values(state="failed", error=error[:2000], finished_at=now)
        )
    return int(count)


def note_uncertain(engine: Engine, batch_id: str, error: str) -> None:
    """The request may or may not have reached the provider: leave the rows in_flight."""
    with engine.begin() as conn:
        conn.execute(update(B).where(B.c.id == batch_id).values(error=f"uncertain: {error}"[:2000]))


# --- uncertain batches ----------------------------------------------------------------------


@dataclass(frozen=True)
class UncertainBatch:
    batch_id: str
    worker: str | None
    provider: str | None
    created_at: datetime
    recipients: int
    error: str | None


def uncertain_batches(engine: Engine, issue_id: str) -> list[UncertainBatch]:
    """Batches with rows still in_flight: in progress right now, or left by a crash."""
    stmt = (
        select(B.c.id, B.c.worker, B.c.provider, B.c.created_at, func.count(D.c.id), B.c.error)
        .select_from(B.join(D, and_(D.c.batch_id == B.c.id, D.c.state == "in_flight")))
        .where(B.c.issue_id == issue_id)
        .group_by(B.c.id, B.c.worker, B.c.provider, B.c.created_at, B.c.error)
        .order_by(B.c.created_at)
    )
    with engine.connect() as conn:
        return [UncertainBatch(*row) for row in conn.execute(stmt)]


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


def requeue_uncertain(engine: Engine, issue_id: str) -> tuple[int, int]:
    """Put the rows of abandoned in_flight batches back to pending (``--resend-uncertain``).

    Batches held by a live process on this host are left alone. Returns
    (batches requeued, rows requeued).
    """
    batches = 0
    rows = 0
    now = utcnow()
    for batch in uncertain_batches(engine, issue_id):
        if _worker_alive(batch.worker):
            continue
        with engine.begin() as conn:
            moved = conn.execute(
                update(D)
                .where(D.c.batch_id == batch.batch_id, D.c.state == "in_flight")
                .values(state="pending", batch_id=None, updated_at=now)
            ).rowcount
            conn.execute(
                update(B)
                .where(B.c.id == batch.batch_id)
                .values(
                    state="failed", error="uncertain: resent on request (--resend-uncertain)", finished_at=now
                )
            )
        if moved:
            batches += 1
            rows += moved
    return batches, rows


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
