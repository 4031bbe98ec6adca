"""Counting an issue's ledger: what is left, failed, deferred; what a send would mail now."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Engine,
    exists,
    func,
    select,
    update,
)

from newsletter.delivery.ledger.rows import (
    EV,
    ISS,
    STATES,
    D,
    S,
    eligible,
)
from newsletter.states import (
    UNFINISHED_DELIVERY_STATES,
    DeliveryState,
    IssueStatus,
)
from newsletter.tables import (
    utcnow,
)

# --- counting -------------------------------------------------------------------------------


def counts_by_state(engine: Engine, issue_id: str) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(STATES, 0)
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
                select(func.count()).where(
                    D.c.issue_id == issue_id, D.c.state.in_(UNFINISHED_DELIVERY_STATES)
                )
            ).scalar_one()
        )


def failed_addresses(engine: Engine, issue_id: str, *, limit: int) -> list[tuple[str, str]]:
    """(address, reason) of the issue's failed recipients, the first ``limit`` by subscriber id."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(S.c.email, D.c.error)
            .select_from(D.join(S, S.c.id == D.c.subscriber_id))
            .where(D.c.issue_id == issue_id, D.c.state == DeliveryState.FAILED)
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
                    D.c.issue_id == issue_id, D.c.state == DeliveryState.PENDING, D.c.not_before.is_not(None)
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
                D.c.state == DeliveryState.PENDING,
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
    touched = exists().where(
        D.c.issue_id == issue_id, D.c.state.in_((DeliveryState.SENT, DeliveryState.IN_FLIGHT))
    )
    with engine.begin() as conn:
        result = conn.execute(
            update(ISS)
            .where(ISS.c.id == issue_id, ISS.c.status == IssueStatus.SENDING, ~touched)
            .values(status=IssueStatus.DRAFT, send_started_at=None)
        )
    return bool(result.rowcount)


def recipients_to_send(engine: Engine, issue_id: str) -> int:
    """Mailable subscribers without a finished or claimed ledger row: what a send would mail now."""
    done = exists().where(
        D.c.issue_id == issue_id, D.c.subscriber_id == S.c.id, D.c.state != DeliveryState.PENDING
    )
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(S).where(eligible(), ~done)).scalar_one())


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
