"""The weekly calendar (when the job fires, the slot each fire time names) and the editor's
hold on it: pause, resume, skip the next slot, and the view of it.

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
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.errors import SchedulerError
from newsletter.tables import ScheduleSlotRow, ScheduleStateRow, utcnow

STATE_KEY = "weekly"
REASON_LIMIT = 500


# --- the calendar: when the weekly job fires, and the slot each fire time names ---------------


@dataclass(frozen=True)
class Slot:
    key: str
    fire_time: datetime  # aware, in TIMEZONE


def make_trigger(settings: Settings) -> CronTrigger:
    return CronTrigger.from_crontab(settings.schedule, timezone=ZoneInfo(settings.timezone))


def next_run_times(settings: Settings, *, after: datetime | None = None, count: int = 3) -> list[datetime]:
    trigger = make_trigger(settings)
    moment = (after or datetime.now(UTC)).astimezone(ZoneInfo(settings.timezone))
    times: list[datetime] = []
    previous: datetime | None = None
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None:
            break
        times.append(fire)
        previous, moment = fire, fire + timedelta(microseconds=1)
    return times


def slot_key(settings: Settings, fire: datetime) -> str:
    """A slot's name: its fire time in TIMEZONE, e.g. "2026-11-23T09:00 Europe/Berlin"."""
    local = fire.astimezone(ZoneInfo(settings.timezone))
    return f"{local:%Y-%m-%dT%H:%M} {settings.timezone}"


def current_slot(settings: Settings, now: datetime) -> Slot | None:
    """The latest scheduled fire time at or before ``now``: the slot ``now`` belongs to."""
    trigger = make_trigger(settings)
    zone = ZoneInfo(settings.timezone)
    now_local = now.astimezone(zone)
    window = timedelta(days=1)
    year = timedelta(days=400)
    # Look back over a growing window (bounded: a year) until a fire time turns up.
    while True:
        fire = trigger.get_next_fire_time(None, now_local - window)
        last: datetime | None = None
        steps = 0
        while fire is not None and fire <= now_local and steps < 100_000:
            last = fire
            fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
            steps += 1
        if last is not None:
            return Slot(key=slot_key(settings, last), fire_time=last)
        if window >= year:
            return None
        window = min(window * 2, year)


def recent_slots(engine: Engine, limit: int = 5) -> list[ScheduleSlotRow]:
    with session_scope(engine) as session:
        rows = session.scalars(
            select(ScheduleSlotRow).order_by(ScheduleSlotRow.claimed_at.desc()).limit(limit)
        )
        return list(rows)


# --- the editor's switch -------------------------------------------------------------------------


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
    return next_run_times(settings, after=moment, count=count)


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
