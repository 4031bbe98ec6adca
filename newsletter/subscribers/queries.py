"""Lookups: one subscriber, lists, search, counts, delivery history."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Engine,
    func,
    select,
)

from newsletter.errors import SubscriberError
from newsletter.subscribers.addresses import (
    email_hash,
)
from newsletter.subscribers.records import STATUSES, SUP, D, S, Subscriber, _iso, _subscriber

log = logging.getLogger(__name__)

# --- lookups ----------------------------------------------------------------------------------------


def get_subscriber(engine: Engine, subscriber_id: int) -> Subscriber | None:
    with engine.connect() as conn:
        row = conn.execute(select(S).where(S.c.id == subscriber_id)).first()
    return _subscriber(row) if row is not None else None


def find_subscriber(engine: Engine, email: str) -> Subscriber | None:
    """By address (any spelling that normalises to it), erased rows included."""
    with engine.connect() as conn:
        row = conn.execute(select(S).where(S.c.email_hash == email_hash(email))).first()
    return _subscriber(row) if row is not None else None


def is_suppressed(engine: Engine, email: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(select(SUP.c.email_hash).where(SUP.c.email_hash == email_hash(email))).first()
    return found is not None


def list_subscribers(
    engine: Engine, *, status: str | None = None, limit: int | None = None, offset: int = 0
) -> list[Subscriber]:
    if status is not None and status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r} (choose {', '.join(STATUSES)})")
    query = select(S).order_by(S.c.id).offset(offset)
    if status is not None:
        query = query.where(S.c.status == status)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [_subscriber(row) for row in conn.execute(query)]


SEARCH_LIMIT = 200


@dataclass(frozen=True)
class SubscriberPage:
    subscribers: list[Subscriber]
    next_cursor: int | None  # pass as ``after`` for the next page; None on the last one


def search_subscribers(
    engine: Engine,
    *,
    q: str | None = None,
    status: str | None = None,
    limit: int = 50,
    after: int = 0,
) -> SubscriberPage:
    """Subscribers whose address or name contains ``q`` (any case), in id order, one keyset page
    after the id ``after``: stable while rows are added, and as fast on page 1,000 as on page 1."""
    if status is not None and status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r} (choose {', '.join(STATUSES)})")
    limit = max(1, min(limit, SEARCH_LIMIT))
    query = select(S).where(S.c.id > after).order_by(S.c.id).limit(limit + 1)
    if status is not None:
        query = query.where(S.c.status == status)
    if q and q.strip():
        text = q.strip().lower()
        for char in ("\\", "%", "_"):  # LIKE's own characters match themselves
            text = text.replace(char, "\\" + char)
        pattern = f"%{text}%"
        query = query.where(
            func.lower(S.c.email).like(pattern, escape="\\") | func.lower(S.c.name).like(pattern, escape="\\")
        )
    with engine.connect() as conn:
        rows = [_subscriber(row) for row in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return SubscriberPage(rows, rows[-1].id if more and rows else None)


def delivery_history(engine: Engine, subscriber_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """What one subscriber was sent: issue, state, when; newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(D.c.issue_id, D.c.state, D.c.updated_at, D.c.error)
            .where(D.c.subscriber_id == subscriber_id)
            .order_by(D.c.updated_at.desc())
            .limit(limit)
        ).all()
    return [
        {"issue_id": row.issue_id, "state": row.state, "at": _iso(row.updated_at), "error": row.error}
        for row in rows
    ]


def count_by_status(engine: Engine) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    with engine.connect() as conn:
        for status, count in conn.execute(select(S.c.status, func.count()).group_by(S.c.status)):
            counts[status] = int(count)
    return counts
