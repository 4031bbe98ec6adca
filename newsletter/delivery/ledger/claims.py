"""Writing pending rows (keyset pages) and claiming a batch of them: the exactly-once core."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    Integer,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from newsletter.db import insert_or_ignore, is_postgres
from newsletter.delivery.ledger.rows import (
    MAILABLE_STATUS,
    SUP,
    B,
    D,
    S,
    eligible,
)
from newsletter.states import (
    BatchState,
    DeliveryState,
)
from newsletter.tables import (
    UTCDateTime,
    utcnow,
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
            literal(DeliveryState.PENDING.value),
            literal(utcnow(), UTCDateTime),
        ).where(eligible(), S.c.id > after_id, S.c.id <= last)
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
                state=BatchState.IN_FLIGHT,
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
                .values(
                    state=DeliveryState.SUPPRESSED,
                    batch_id=None,
                    error="not mailable at claim time",
                    updated_at=now,
                )
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
        .where(D.c.issue_id == issue_id, D.c.state == DeliveryState.PENDING, D.c.subscriber_id > after, due)
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
        .where(
            D.c.id == any_(bindparam("ids", ids, type_=ARRAY(Integer))), D.c.state == DeliveryState.PENDING
        )
        .values(state=DeliveryState.IN_FLIGHT, batch_id=batch_id, updated_at=now)
    )
    return list(
        conn.execute(
            select(*_recipient_columns())
            .select_from(_with_subscribers(D))
            # state too: the in-flight index is partial (migration 0002); without it this
            # scans the whole ledger, once per batch.
            .where(D.c.batch_id == batch_id, D.c.state == DeliveryState.IN_FLIGHT)
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
            .where(
                D.c.issue_id == issue_id, D.c.state == DeliveryState.PENDING, D.c.subscriber_id > after, due
            )
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
            D.c.state == DeliveryState.PENDING,
            D.c.subscriber_id > after,
            D.c.subscriber_id <= last,
            due,
        )
        .values(state=DeliveryState.IN_FLIGHT, batch_id=batch_id, updated_at=now)
    ).rowcount
    if claimed != len(rows):  # the lock makes this impossible; never send what was not claimed
        raise RuntimeError(f"claimed {claimed} ledger rows but read {len(rows)}: is the write lock held?")
    return rows
