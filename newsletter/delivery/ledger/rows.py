"""The ledger's tables and what its modules share: who a sender is, who may be mailed."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Table,
    and_,
    exists,
    update,
)

from newsletter.states import (
    DeliveryState,
    SubscriberStatus,
)
from newsletter.tables import (
    DeliveryBatchRow,
    DeliveryRow,
    IssueRow,
    SubscriberRow,
    SuppressionRow,
    WebhookEventRow,
    utcnow,
)

D = cast(Table, DeliveryRow.__table__)
B = cast(Table, DeliveryBatchRow.__table__)
S = cast(Table, SubscriberRow.__table__)
SUP = cast(Table, SuppressionRow.__table__)
EV = cast(Table, WebhookEventRow.__table__)
ISS = cast(Table, IssueRow.__table__)

STATES = tuple(DeliveryState)
MAILABLE_STATUS = SubscriberStatus.CONFIRMED


def worker_name(configured: str | None = None) -> str:
    """host:pid (or NEWSLETTER_WORKER_NAME), recorded on each batch so `status` can say who holds it."""
    return configured or f"{socket.gethostname()}:{os.getpid()}"


def lease_until(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def eligible() -> Any:
    """Confirmed, has an address, and not on the suppression list."""
    return and_(
        S.c.status == MAILABLE_STATUS,
        S.c.email.is_not(None),
        ~exists().where(SUP.c.email_hash == S.c.email_hash),
    )


def in_flight_of(batch_id: str) -> Any:
    """The batch's rows still in flight (the partial in-flight index serves it)."""
    return and_(D.c.batch_id == batch_id, D.c.state == DeliveryState.IN_FLIGHT)


def move_in_flight(conn: Connection, batch_id: str, /, **values: Any) -> int:
    """Give the batch's rows still in flight ``values`` (their new state...); how many moved."""
    return int(conn.execute(update(D).where(in_flight_of(batch_id)).values(**values)).rowcount or 0)


def close_batch(conn: Connection, batch_id: str, /, **values: Any) -> None:
    """Record the batch row's end (its state, message id, error...)."""
    conn.execute(update(B).where(B.c.id == batch_id).values(**values))
