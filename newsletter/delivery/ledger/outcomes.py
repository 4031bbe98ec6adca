"""Recording what a batch's request did: sent, failed, refused, deferred, uncertain."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    case,
    exists,
    literal,
    select,
    update,
)

from newsletter.db import insert_or_ignore
from newsletter.delivery.ledger.rows import (
    SUP,
    B,
    D,
    S,
    close_batch,
    move_in_flight,
)
from newsletter.states import (
    BatchState,
    DeliveryState,
)
from newsletter.tables import (
    UTCDateTime,
    utcnow,
)

# --- recording the outcome ---------------------------------------------------------------


def record_all_sent(engine: Engine, batch_id: str, message_id: str | None) -> int:
    """The common case: the provider accepted the whole batch. Two statements, one commit."""
    now = utcnow()
    with engine.begin() as conn:
        sent = {"state": DeliveryState.SENT, "message_id": message_id, "updated_at": now}
        count = move_in_flight(conn, batch_id, **sent)
        close_batch(conn, batch_id, state=BatchState.SENT, provider_message_id=message_id, finished_at=now)
    return count


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
                .where(D.c.id == bindparam("row_id"), D.c.state == DeliveryState.IN_FLIGHT)
                .values(
                    state=DeliveryState.SENT, message_id=bindparam("mid"), not_before=None, updated_at=now
                ),
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
                    .where(D.c.id == bindparam("row_id"), D.c.state == DeliveryState.IN_FLIGHT)
                    .values(
                        state=DeliveryState.PENDING,
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
                .where(D.c.id == bindparam("row_id"), D.c.state == DeliveryState.IN_FLIGHT)
                .values(state=DeliveryState.FAILED, error=bindparam("err"), not_before=None, updated_at=now),
                [{"row_id": key, "err": value[:2000]} for key, value in failed.items()],
            )
        if outcome.refused:
            _suppress_rows(conn, list(outcome.refused), engine)
        if outcome.deferred:
            conn.execute(
                update(D)
                .where(D.c.id.in_(outcome.deferred), D.c.state == DeliveryState.IN_FLIGHT)
                .values(state=DeliveryState.PENDING, batch_id=None, updated_at=now)
            )
        if outcome.uncertain:
            state = BatchState.IN_FLIGHT
        elif outcome.sent:
            state = BatchState.SENT
        else:
            state = BatchState.FAILED
        conn.execute(
            update(B)
            .where(B.c.id == batch_id)
            .values(
                state=state,
                provider_message_id=batch_message_id,
                error=error,
                finished_at=None if state == BatchState.IN_FLIGHT else now,
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
        count = move_in_flight(conn, batch_id, state=DeliveryState.PENDING, batch_id=None, updated_at=now)
        ended = {"finished_at": now, "lease_until": now}
        close_batch(conn, batch_id, state=BatchState.FAILED, error=error[:2000], **ended)
    return count


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


def mark_in_flight_sent(conn: Connection, pairs: Mapping[tuple[str, int], str | None]) -> int:
    """Webhook proof of receipt: the (issue, subscriber) rows still in_flight become sent."""
    if not pairs:
        return 0
    now = utcnow()
    result = conn.execute(
        update(D)
        .where(
            D.c.issue_id == bindparam("iid"),
            D.c.subscriber_id == bindparam("sid"),
            D.c.state == DeliveryState.IN_FLIGHT,
        )
        .values(
            state=DeliveryState.SENT,
            message_id=case((D.c.message_id.is_(None), bindparam("mid")), else_=D.c.message_id),
            updated_at=now,
        ),
        [{"iid": iid, "sid": sid, "mid": mid} for (iid, sid), mid in pairs.items()],
    )
    # Batches whose rows are all resolved are no longer uncertain.
    issue_ids = {iid for iid, _ in pairs}
    open_rows = exists().where(D.c.batch_id == B.c.id, D.c.state == DeliveryState.IN_FLIGHT)
    conn.execute(
        update(B)
        .where(B.c.issue_id.in_(issue_ids), B.c.state == BatchState.IN_FLIGHT, ~open_rows)
        .values(state=BatchState.SENT, finished_at=now)
    )
    return int(result.rowcount or 0)
