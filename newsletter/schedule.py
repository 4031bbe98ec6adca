"""The editor's hold on the weekly job: pause, resume, skip the next slot, and the view of it.

Kept in the database (``schedule_state``, ``schedule_slots``), not in a process, so every
instance running the scheduler honours them:

* **pause**: every tick records its slot as ``paused`` and sends nothing (a send that was
  cut short is not resumed either) until **resume**;
* **skip**: the next slot is recorded ``skipped`` before it comes; its tick finds the slot
  taken and sends nothing. ``resume`` also cancels a skip of a slot that has not come yet.

The CLI (``newsletter schedule …``), the admin API and the admin pages call these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.errors import SchedulerError
from newsletter.tables import ScheduleSlotRow, ScheduleStateRow, utcnow

STATE_KEY = "weekly"
REASON_LIMIT = 500


class ScheduleConflictError(SchedulerError):
    """No slot left to skip among the next ones."""

    http_status = 409


@dataclass(frozen=True)
class ScheduleState:
    paused: bool
    reason: str | None
    changed_at: datetime | None
    changed_by: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "paused": self.paused,
            "reason": self.reason,
            "changed_at": self.changed_at.isoformat() if self.changed_at else None,
            "changed_by": self.changed_by,
        }


def schedule_state(engine: Engine) -> ScheduleState:
    with session_scope(engine) as session:
        row = session.get(ScheduleStateRow, STATE_KEY)
        if row is None:
            return ScheduleState(paused=False, reason=None, changed_at=None, changed_by=None)
        return ScheduleState(bool(row.paused), row.reason, row.changed_at, row.changed_by)


def _set_state(engine: Engine, *, paused: bool, reason: str | None, by: str) -> ScheduleState:
    with session_scope(engine) as session:
        row = session.get(ScheduleStateRow, STATE_KEY)
        if row is None:
            row = ScheduleStateRow(key=STATE_KEY)
            session.add(row)
        row.paused, row.reason, row.changed_at, row.changed_by = paused, reason, utcnow(), by
    return schedule_state(engine)


def _clean_reason(reason: str | None) -> str | None:
    text = " ".join((reason or "").split())
    if len(text) > REASON_LIMIT:
        raise SchedulerError(f"the reason is longer than {REASON_LIMIT} characters")
    return text or None


def pause(engine: Engine, *, reason: str | None = None, by: str = "editor") -> ScheduleState:
    """No slot sends until ``resume``; each one that comes is recorded as paused."""
    return _set_state(engine, paused=True, reason=_clean_reason(reason), by=by)


def resume(
    settings: Settings, engine: Engine, *, by: str = "editor", now: datetime | None = None
) -> ScheduleState:
    """Back to the normal schedule: not paused, and a skip of a slot still to come is cancelled."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    upcoming = {slot_key(settings, fire) for fire in _upcoming(settings, moment, count=5)}
    with session_scope(engine) as session:
        session.execute(
            delete(ScheduleSlotRow).where(
                ScheduleSlotRow.key.in_(upcoming), ScheduleSlotRow.outcome == "skipped"
            )
        )
    return _set_state(engine, paused=False, reason=None, by=by)


@dataclass(frozen=True)
class SkippedSlot:
    key: str
    fire_time: datetime


def skip_next(
    settings: Settings, engine: Engine, *, by: str = "editor", now: datetime | None = None
) -> SkippedSlot:
    """Record the next slot that has no row yet as ``skipped``: its tick will send nothing."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    for fire in _upcoming(settings, moment, count=5):
        key = slot_key(settings, fire)
        try:
            with session_scope(engine) as session:
                session.add(
                    ScheduleSlotRow(
                        key=key,
                        claimed_by=by,
                        claimed_at=utcnow(),
                        finished_at=utcnow(),
                        outcome="skipped",
                        detail=f"skipped by {by}",
                    )
                )
            return SkippedSlot(key=key, fire_time=fire)
        except IntegrityError:
            continue  # already skipped, or already run (a tick with --now): the one after it
    raise ScheduleConflictError("the next five slots are all skipped or run already")


def _upcoming(settings: Settings, moment: datetime, *, count: int) -> list[datetime]:
    from newsletter.scheduler import next_run_times

    return next_run_times(settings, after=moment, count=count)


def slot_key(settings: Settings, fire: datetime) -> str:
    from newsletter.scheduler import slot_key as key_of

    return key_of(settings, fire)


# --- the view: `newsletter schedule show`, GET /api/v1/schedule, the admin pages -----------------


@dataclass(frozen=True)
class ScheduleView:
    """The weekly schedule: next runs (and which of them are skipped), recent slots, pause state."""

    expression: str
    timezone: str
    grace_seconds: int
    scheduler: str
    next_runs: list[datetime]  # aware, in the configured zone
    skipped: frozenset[str]  # slot keys of next runs recorded as skipped
    slots: list[ScheduleSlotRow]
    state: ScheduleState
    keys: list[str]  # slot key of each next run

    @property
    def paused(self) -> bool:
        return self.state.paused

    @property
    def next_runs_text(self) -> list[tuple[str, str]]:
        """(local, UTC) for each next run, formatted as `newsletter schedule show` does."""
        return [
            (f"{fire:%a %Y-%m-%d %H:%M %Z}", f"{fire.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
            for fire in self.next_runs
        ]

    def run_is_skipped(self, index: int) -> bool:
        return self.keys[index] in self.skipped

    def as_json(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "timezone": self.timezone,
            "misfire_grace_time": self.grace_seconds,
            "scheduler": self.scheduler,
            "paused": self.state.paused,
            "pause": self.state.as_json(),
            "next_runs": [
                {
                    "slot": key,
                    "local": fire.isoformat(),
                    "utc": fire.astimezone(UTC).isoformat(),
                    "skipped": key in self.skipped,
                }
                for key, fire in zip(self.keys, self.next_runs, strict=True)
            ],
            "slots": [
                {
                    "key": row.key,
                    "outcome": row.outcome,
                    "issue_id": row.issue_id,
                    "claimed_by": row.claimed_by,
                    "claimed_at": row.claimed_at.isoformat() if row.claimed_at else None,
                    "finished_at": row.finished_at.isoformat() if row.finished_at else None,
                    "detail": row.detail,
                }
                for row in self.slots
            ],
        }


def schedule_view(settings: Settings, engine: Engine, *, runs: int = 3, slots: int = 5) -> ScheduleView:
    from newsletter.scheduler import next_run_times, recent_slots

    fires = next_run_times(settings, count=runs)
    keys = [slot_key(settings, fire) for fire in fires]
    with session_scope(engine) as session:
        skipped = frozenset(
            session.scalars(
                select(ScheduleSlotRow.key).where(
                    ScheduleSlotRow.key.in_(keys), ScheduleSlotRow.outcome == "skipped"
                )
            )
        )
    return ScheduleView(
        expression=settings.schedule,
        timezone=settings.timezone,
        grace_seconds=settings.misfire_grace_time,
        scheduler=settings.scheduler,
        next_runs=fires,
        skipped=skipped,
        slots=recent_slots(engine, limit=slots),
        state=schedule_state(engine),
        keys=keys,
    )
