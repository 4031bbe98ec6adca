"""The weekly job: import, build this slot's issue, send it — once per slot, whoever runs it.

A *slot* is one period of the schedule, named by its scheduled fire time in
TIMEZONE (``2026-11-23T09:00 Europe/Berlin`` for the weekly default). Three guards
keep a slot from sending twice:

* an instance lock held for the whole tick: a PostgreSQL session advisory lock,
  or, for the embedded SQLite database, an ``flock`` on a file beside it. Both are
  released by the operating system when a process dies, so a crashed tick never
  blocks the next one;
* a UNIQUE ``schedule_slots`` row recording who claimed the slot and what came of
  it (``sent``, ``nothing_new``, ``error``; ``running`` while it works). A slot
  whose outcome is final is never run again; one left ``running`` by a dead
  process is resumed (the ledger makes the resumed send exactly-once);
* the delivery ledger itself.

APScheduler only decides *when* to call :func:`run_tick`; the in-memory job store
holds nothing that the database does not. A server started after a missed fire
time (within ``MISFIRE_GRACE_TIME``) runs that slot once at start-up; one that
starts later leaves the stale slot alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from newsletter.catalog import import_locations
from newsletter.config import Settings
from newsletter.db import is_postgres, session_scope
from newsletter.delivery import send_issue
from newsletter.delivery.reports import SendReport
from newsletter.errors import NewsletterError
from newsletter.issues.build import build_issue
from newsletter.schedule import Slot, current_slot, make_trigger, next_run_times, schedule_state
from newsletter.states import FINAL_SLOT_OUTCOMES, IssueStatus, SlotOutcome
from newsletter.tables import ScheduleSlotRow, utcnow

log = logging.getLogger(__name__)

JOB_ID = "weekly-issue"


@dataclass(frozen=True)
class TickResult:
    outcome: str  # a SlotOutcome (newsletter/states.py)
    message: str
    slot: Slot | None = None
    issue_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome != SlotOutcome.ERROR


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- the instance lock ------------------------------------------------------------------


@contextlib.contextmanager
def instance_lock(engine: Engine) -> Iterator[bool]:
    """Yield True when this process may run the weekly job now, False when another does."""
    if is_postgres(engine):
        with _pg_advisory_lock(engine) as got:
            yield got
    else:
        with _file_lock(engine) as got:
            yield got


LOCK_ID = int.from_bytes(hashlib.sha256(b"newsletter-weekly-job").digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _pg_advisory_lock(engine: Engine) -> Iterator[bool]:
    with engine.connect() as connection:
        got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": LOCK_ID}).scalar())
        connection.commit()
        try:
            yield got
        finally:
            if got:
                connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
                connection.commit()


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[bool]:
    database = make_url(str(engine.url)).database
    if not database or database == ":memory:":
        yield True
        return
    path = Path(database + ".weekly.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --- the tick -------------------------------------------------------------------------------


def run_tick(
    settings: Settings,
    engine: Engine,
    *,
    now: datetime | None = None,
    worker: str | None = None,
    stop: threading.Event | None = None,
    progress: Callable[..., Any] | None = None,
) -> TickResult:
    """Run the weekly job for the slot ``now`` falls in (import, build, send), at most once."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    worker = worker or worker_name()
    slot = current_slot(settings, now)
    if slot is None:
        return TickResult(
            SlotOutcome.MISSED,
            f"the schedule {settings.schedule!r} has no run before {now:%Y-%m-%d %H:%M} UTC",
        )
    late = now - slot.fire_time
    with instance_lock(engine) as got:
        if not got:
            return TickResult(
                SlotOutcome.TAKEN,
                f"slot {slot.key} is already taken: another instance is running the weekly job",
                slot,
            )
        state = schedule_state(engine)
        if state.paused:
            # Nothing goes out while paused, a cut-short send included: it resumes after `resume`.
            return _record_paused(engine, slot, worker, state.reason)
        unfinished = unfinished_slots(engine)
        # A send that started and did not finish is resumed whatever the time: half the
        # list has the issue, the other half must get it too. Only a slot that never
        # started is subject to the grace time (no stale issue goes out days late).
        stale = late > timedelta(seconds=settings.misfire_grace_time) and all(
            row.key != slot.key for row in unfinished
        )
        resumed = _resume_earlier_slots(
            settings, engine, slot, unfinished, now=now, worker=worker, stop=stop, progress=progress
        )
        if stop is not None and stop.is_set():
            return (
                resumed[-1] if resumed else TickResult(SlotOutcome.STOPPED, "stopped before it started", slot)
            )
        if stale:
            result = _missed(settings, slot, late, now)
        else:
            result = _run_claimed_slot(
                settings, engine, slot, now=now, worker=worker, stop=stop, progress=progress
            )
    if resumed:
        earlier = "; ".join(item.message for item in resumed)
        result = dataclasses.replace(result, message=f"{earlier}\n{result.message}")
    return result


def _record_paused(engine: Engine, slot: Slot, worker: str, reason: str | None) -> TickResult:
    """Record the slot as paused (final: resuming later does not send this week's issue)."""
    why = f" ({reason})" if reason else ""
    try:
        with session_scope(engine) as session:
            session.add(
                ScheduleSlotRow(
                    key=slot.key,
                    claimed_by=worker,
                    claimed_at=utcnow(),
                    finished_at=utcnow(),
                    outcome=SlotOutcome.PAUSED,
                    detail=f"the schedule is paused{why}",
                )
            )
    except IntegrityError:
        with session_scope(engine) as session:
            row = session.get(ScheduleSlotRow, slot.key)
            if row is not None and row.outcome not in FINAL_SLOT_OUTCOMES and row.issue_id is None:
                row.outcome, row.finished_at = SlotOutcome.PAUSED, utcnow()
                row.detail = f"the schedule is paused{why}"
    log.info("weekly job: slot %s: the schedule is paused%s; nothing sent", slot.key, why)
    return TickResult(
        SlotOutcome.PAUSED,
        f"slot {slot.key}: the schedule is paused{why}; nothing sent (`newsletter schedule resume`)",
        slot,
    )


def _missed(settings: Settings, slot: Slot, late: timedelta, now: datetime) -> TickResult:
    upcoming = next_run_times(settings, after=now, count=1)
    when = f"; next run {upcoming[0]:%Y-%m-%d %H:%M %Z}" if upcoming else ""
    grace = _duration(timedelta(seconds=settings.misfire_grace_time))
    return TickResult(
        SlotOutcome.MISSED,
        f"slot {slot.key} was {_duration(late)} ago, past the grace time of {grace}: "
        f"not sending a stale issue{when}",
        slot,
    )


def _resume_earlier_slots(
    settings: Settings,
    engine: Engine,
    current: Slot,
    unfinished: list[ScheduleSlotRow],
    *,
    now: datetime,
    worker: str,
    stop: threading.Event | None,
    progress: Callable[..., Any] | None,
) -> list[TickResult]:
    """Finish the sends of earlier slots that started and were cut short (a crash, a restart).

    Their issue is frozen and half the list has it: the other half must get it, even
    weeks later, and before this slot's issue.
    """
    results = []
    for row in unfinished:
        if row.key == current.key or (stop is not None and stop.is_set()):
            continue
        log.warning("weekly job: resuming the unfinished send of slot %s (issue %s)", row.key, row.issue_id)
        earlier = Slot(key=row.key, fire_time=row.claimed_at)
        results.append(
            _run_claimed_slot(settings, engine, earlier, now=now, worker=worker, stop=stop, progress=progress)
        )
    return results


def _run_claimed_slot(
    settings: Settings,
    engine: Engine,
    slot: Slot,
    *,
    now: datetime,
    worker: str,
    stop: threading.Event | None,
    progress: Callable[..., Any] | None,
) -> TickResult:
    row = _claim(engine, slot, worker)
    if row.outcome == SlotOutcome.SKIPPED:
        return TickResult(
            SlotOutcome.SKIPPED, f"slot {slot.key} was skipped ({row.detail}); nothing sent", slot
        )
    if row.outcome in FINAL_SLOT_OUTCOMES:
        what = {"sent": f"sent issue {row.issue_id}", "paused": "paused: nothing sent"}.get(
            row.outcome, "nothing new"
        )
        return TickResult(
            SlotOutcome.DONE,
            f"slot {slot.key} is already taken: {row.claimed_by} handled it ({what}); nothing to do",
            slot,
            row.issue_id,
        )
    issue_id = row.issue_id
    try:
        if issue_id is None:
            issue_id, reason, failed_sources = _import_and_build(settings, engine, now)
            if issue_id is None and failed_sources:
                # Maybe the new comparisons are behind the source that failed: not final,
                # so the next tick in this slot (or `newsletter tick`) tries again.
                detail = f"nothing new, but {len(failed_sources)} source(s) failed: " + "; ".join(
                    failed_sources
                )
                _finish(engine, slot, SlotOutcome.ERROR, detail=detail[:2000], final=False)
                log.error("weekly job: slot %s: %s", slot.key, detail)
                return TickResult(SlotOutcome.ERROR, f"slot {slot.key}: {detail}", slot)
            if issue_id is None:
                _finish(engine, slot, SlotOutcome.NOTHING_NEW, detail=reason)
                log.info("weekly job: nothing new for slot %s: %s", slot.key, reason)
                return TickResult(
                    SlotOutcome.NOTHING_NEW, f"slot {slot.key}: nothing new ({reason}); nothing sent", slot
                )
            _record_issue(engine, slot, issue_id)
        report = send_issue(settings, engine, issue_id, worker=worker, stop=stop, progress=progress)
    except NewsletterError as error:
        _finish(engine, slot, SlotOutcome.ERROR, detail=str(error), final=False)
        log.error("weekly job failed for slot %s: %s", slot.key, error)
        return TickResult(SlotOutcome.ERROR, f"slot {slot.key}: {error}", slot, issue_id)
    summary = _summary(report)
    if report.issue_status == IssueStatus.SENT:
        _finish(engine, slot, SlotOutcome.SENT, issue_id=issue_id, detail=summary)
        return TickResult(
            SlotOutcome.SENT, f"slot {slot.key}: sent issue {issue_id} ({summary})", slot, issue_id
        )
    if report.interrupted:
        detail = f"stopped mid-send ({summary}); the next tick resumes issue {issue_id}"
        _finish(engine, slot, SlotOutcome.STOPPED, detail=detail, final=False)
        return TickResult(SlotOutcome.STOPPED, f"slot {slot.key}: {detail}", slot, issue_id)
    # Not interrupted, yet not finished: recipients whose batch's fate is unknown (a crash
    # mid-request). They are never resent silently: the editor decides.
    detail = (
        f"incomplete ({summary}): recipients still in flight, left by a crash or held by another "
        f"send that is still running; `newsletter status {issue_id}` says which"
    )
    _finish(engine, slot, SlotOutcome.INCOMPLETE, detail=detail, final=False)
    log.warning("weekly job: slot %s %s", slot.key, detail)
    return TickResult(SlotOutcome.INCOMPLETE, f"slot {slot.key}: {detail}", slot, issue_id)


def _claim(engine: Engine, slot: Slot, worker: str) -> ScheduleSlotRow:
    """Insert the slot row, or return the existing one (left by an earlier or crashed tick)."""
    try:
        with session_scope(engine) as session:
            session.add(
                ScheduleSlotRow(
                    key=slot.key, claimed_by=worker, claimed_at=utcnow(), outcome=SlotOutcome.RUNNING
                )
            )
    except IntegrityError:
        pass
    with session_scope(engine) as session:
        row = session.get(ScheduleSlotRow, slot.key)
        assert row is not None
        if row.outcome not in FINAL_SLOT_OUTCOMES and (
            row.claimed_by != worker or row.outcome != SlotOutcome.RUNNING
        ):
            # Also when the worker name is ours: host:pid repeats across container restarts.
            log.warning("resuming slot %s left %s by %s", slot.key, row.outcome, row.claimed_by)
            row.claimed_by = worker
            row.outcome = SlotOutcome.RUNNING
        return row


def _import_and_build(settings: Settings, engine: Engine, now: datetime) -> tuple[str | None, str, list[str]]:
    """Import SOURCES and build this slot's issue: (issue id or None, why not, failed sources)."""
    failed: list[str] = []
    if settings.sources:
        report = import_locations(settings, engine, settings.sources)
        failed = [str(failure) for failure in report.failed]
        for failure in failed:
            log.warning("weekly job: source skipped: %s", failure)
    built = build_issue(settings, engine, date=now)
    if built.warning:
        log.warning("weekly job: issue %s: %s", built.issue_id, built.warning)
    return built.issue_id, built.reason, failed


def _record_issue(engine: Engine, slot: Slot, issue_id: str) -> None:
    with session_scope(engine) as session:
        row = session.get(ScheduleSlotRow, slot.key)
        assert row is not None
        row.issue_id = issue_id


def _finish(
    engine: Engine,
    slot: Slot,
    outcome: str,
    *,
    issue_id: str | None = None,
    detail: str | None = None,
    final: bool = True,
) -> None:
    with session_scope(engine) as session:
        row = session.get(ScheduleSlotRow, slot.key)
        assert row is not None
        row.outcome = outcome
        row.detail = detail
        if issue_id is not None:
            row.issue_id = issue_id
        row.finished_at = utcnow() if final else None


def _summary(report: SendReport) -> str:
    parts = [f"{report.sent:,} sent"]
    for label, count in (
        ("failed", report.failed),
        ("suppressed", report.suppressed),
        ("uncertain", report.uncertain),
        ("remaining", report.remaining),
    ):
        if count:
            parts.append(f"{count:,} {label}")
    return ", ".join(parts)


def unfinished_slots(engine: Engine) -> list[ScheduleSlotRow]:
    """Slots whose issue started sending and did not finish, oldest first."""
    with session_scope(engine) as session:
        rows = session.scalars(
            select(ScheduleSlotRow)
            .where(ScheduleSlotRow.outcome.not_in(FINAL_SLOT_OUTCOMES), ScheduleSlotRow.issue_id.is_not(None))
            .order_by(ScheduleSlotRow.claimed_at)
            .limit(50)
        )
        return list(rows)


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


# --- APScheduler inside `newsletter serve` ------------------------------------------------------


def start_scheduler(
    settings: Settings,
    engine: Engine,
    *,
    stop: threading.Event,
    now: datetime | None = None,
) -> BackgroundScheduler:
    """Start the weekly job in a background thread.

    The in-memory job store forgets missed runs, so when the latest fire time is
    within the grace time we start the job's clock there: APScheduler then runs
    it once now (misfire_grace_time decides), and the slot guard keeps that once.
    """
    zone = ZoneInfo(settings.timezone)
    scheduler = BackgroundScheduler(timezone=zone)
    now = now or datetime.now(UTC)
    slot = current_slot(settings, now)
    first_run: datetime | None = None
    if unfinished_slots(engine):
        first_run = now  # a send cut short (crash, restart): resume it at once
    elif slot is not None and now - slot.fire_time <= timedelta(seconds=settings.misfire_grace_time):
        first_run = slot.fire_time
    scheduler.add_job(
        _scheduled_tick,
        make_trigger(settings),
        args=(settings, engine, stop),
        id=JOB_ID,
        name="weekly issue",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=settings.misfire_grace_time,
        replace_existing=True,
        **({"next_run_time": first_run} if first_run is not None else {}),
    )
    scheduler.start()
    return scheduler


def _scheduled_tick(settings: Settings, engine: Engine, stop: threading.Event) -> None:
    result = run_tick(settings, engine, stop=stop)
    level = logging.ERROR if result.outcome == SlotOutcome.ERROR else logging.INFO
    log.log(level, "weekly job: %s", result.message)
