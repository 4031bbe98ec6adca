"""Leases and uncertain batches: who holds a batch, taking over an abandoned one, requeueing."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import (
    Engine,
    and_,
    func,
    or_,
    select,
    update,
)

from newsletter.delivery.ledger.rows import (
    B,
    D,
    close_batch,
    in_flight_of,
    lease_until,
    move_in_flight,
    worker_name,
)
from newsletter.states import (
    BatchState,
    DeliveryState,
)
from newsletter.tables import (
    utcnow,
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
            .where(B.c.id.in_(ids), B.c.state == BatchState.IN_FLIGHT)
            .values(lease_until=lease_until(lease_seconds))
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
            .where(B.c.id == batch.batch_id, B.c.state == BatchState.IN_FLIGHT, free)
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
        pid = _local_pid(self.worker)
        if pid == os.getpid():
            # this process knows which of its batches a live sender still holds: one that
            # ended (say its record failed) left the rest to whoever resumes, at once
            with _held_lock:
                return self.batch_id in _held_here
        local_and_alive = pid is not None and _pid_alive(pid)
        if self.lease_until is not None:
            gone = pid is not None and not local_and_alive
            return self.lease_until > utcnow() and not gone
        return local_and_alive  # a batch claimed before leases existed


def uncertain_batches(engine: Engine, issue_id: str, provider: str | None = None) -> list[UncertainBatch]:
    """Batches with rows still in_flight: in progress right now, or left by a crash."""
    stmt = (
        select(
            B.c.id, B.c.worker, B.c.provider, B.c.created_at, func.count(D.c.id), B.c.error, B.c.lease_until
        )
        .select_from(B.join(D, and_(D.c.batch_id == B.c.id, D.c.state == DeliveryState.IN_FLIGHT)))
        .where(B.c.issue_id == issue_id)
        .group_by(B.c.id, B.c.worker, B.c.provider, B.c.created_at, B.c.error, B.c.lease_until)
        .order_by(B.c.created_at)
    )
    if provider is not None:
        stmt = stmt.where(B.c.provider == provider)
    with engine.connect() as conn:
        return [UncertainBatch(*row) for row in conn.execute(stmt)]


# The batches the live senders of this process hold right now (the sender's leases).
_held_here: set[str] = set()
_held_lock = threading.Lock()


def hold_here(batch_id: str) -> None:
    """A sender of this process holds ``batch_id`` (until ``release_here``)."""
    with _held_lock:
        _held_here.add(batch_id)


def release_here(batch_id: str) -> None:
    with _held_lock:
        _held_here.discard(batch_id)


def _local_pid(worker: str | None) -> int | None:
    """The pid when ``worker`` (host:pid) names a process of this host; None otherwise."""
    host, _, pid = (worker or "").rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
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
                select(D.c.id, D.c.subscriber_id).where(
                    D.c.batch_id == batch_id, D.c.state == DeliveryState.IN_FLIGHT
                )
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
                .where(D.c.id.in_(sent), in_flight_of(batch_id))
                .values(state=DeliveryState.SENT, updated_at=now)
            )
        moved = move_in_flight(conn, batch_id, state=DeliveryState.PENDING, batch_id=None, updated_at=now)
        state = BatchState.SENT if sent else BatchState.FAILED
        close_batch(conn, batch_id, state=state, error=error[:2000], finished_at=now, lease_until=now)
    return moved
