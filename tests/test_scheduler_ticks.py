"""The weekly job with real parts: `newsletter tick` subprocesses, SQLite files, PostgreSQL,
the local SendGrid-like server, APScheduler's misfire handling, and the admin page's schedule.

Every tick here imports the sample pages (``NEWSLETTER_SOURCES`` = samples/comparisons)
and runs at a fixed moment inside the Monday 09:00 Europe/Berlin slot, so the issue id
(ISO week of that Monday) and the slot key are known in advance.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, select

from newsletter.config import Settings, get_settings
from newsletter.db import open_database, session_scope
from newsletter.schedule import next_run_times
from newsletter.scheduler import run_tick, start_scheduler
from newsletter.tables import IssueRow, ScheduleSlotRow
from tests.support.delivery_fixtures import (
    add_subscribers,
    in_flight_emails,
    ledger_states,
    popen_cli,
    run_cli,
    use_sendgrid,
    wait_for,
)
from tests.support.fake_sendgrid import FakeSendGrid
from tests.support.web import TestClient

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "comparisons"
ZONE = "Europe/Berlin"
# Monday 2026-11-23 09:05 in Berlin (UTC+1 in November): five minutes into the week-48 slot.
NOW = "2026-11-23T09:05:00+01:00"
SLOT = "2026-11-23T09:00 Europe/Berlin"
ISSUE = "2026-W48"
# The Monday after: the week-49 slot.
NEXT_NOW = "2026-11-30T09:05:00+01:00"
NEXT_SLOT = "2026-11-30T09:00 Europe/Berlin"
BATCH = 100

BOTH_DATABASES = pytest.mark.parametrize(
    "db_url",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
    indirect=True,
)


# --- fixtures and helpers ---------------------------------------------------------------------


def _configure(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fake: FakeSendGrid, **extra: str
) -> dict[str, str]:
    """Ticks that import the sample pages and send through the local SendGrid look-alike."""
    defaults = {
        "NEWSLETTER_BATCH_SIZE": str(BATCH),
        "NEWSLETTER_SOURCES": str(SAMPLES),
        "NEWSLETTER_TIMEZONE": ZONE,
        "NEWSLETTER_SCHEDULE": "0 9 * * MON",
        # one request in flight: these ticks are stopped or killed after a particular batch
        # (several in flight, and the SIGKILL bound then: test_delivery_cli, test_delivery_concurrency)
        "NEWSLETTER_SEND_CONCURRENCY": "1",
    }
    return use_sendgrid(monkeypatch, env, fake.url, **(defaults | extra))


@pytest.fixture
def tick_env(env: dict[str, str], fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """NEWSLETTER_* for ticks on ``db_url`` (SQLite file or a fresh PostgreSQL database)."""
    return _configure(monkeypatch, env, fake)


@pytest.fixture
def setup(tick_env: dict[str, str]) -> tuple[Settings, Engine]:
    settings = get_settings()
    return settings, open_database(settings.database_url)  # migrated before any tick starts


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _slots(engine: Engine) -> dict[str, ScheduleSlotRow]:
    """The schedule_slots table as it is now (detached rows), by key."""
    with session_scope(engine) as session:
        return {row.key: row for row in session.scalars(select(ScheduleSlotRow))}


def _issues(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {issue_id: status for issue_id, status in conn.execute(select(IssueRow.id, IssueRow.status))}


def _assert_everyone_once(fake: FakeSendGrid, emails: set[str]) -> None:
    counts = fake.address_counts()
    twice = sorted(email for email, count in counts.items() if count > 1)
    assert not twice, f"{len(twice)} addresses got the issue more than once, e.g. {twice[:3]}"
    missing = emails - set(counts)
    assert not missing, f"{len(missing)} subscribers got nothing, e.g. {sorted(missing)[:3]}"
    assert set(counts) == emails  # and nobody else


# --- 1 + 2: two ticks at once -------------------------------------------------------------------


@BOTH_DATABASES
def test_two_ticks_at_once_send_one_issue_once(
    setup: tuple[Settings, Engine], tick_env: dict[str, str], fake: FakeSendGrid
) -> None:
    _settings, engine = setup
    emails = set(add_subscribers(engine, 1000))
    fake.delay = 0.1  # ten batches of 100: the winner holds the slot for a second or more

    processes = [popen_cli(tick_env, "tick", "--now", NOW) for _ in range(2)]
    outputs: list[tuple[str, str]] = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=90))
    finally:
        for process in processes:
            _stop(process)
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, f"stdout: {out}\nstderr: {err}"

    winners = [i for i, (out, _err) in enumerate(outputs) if f"sent issue {ISSUE}" in out]
    assert len(winners) == 1, outputs
    winner = winners[0]
    loser_out = outputs[1 - winner][0]
    # Either it found the instance lock held ("another instance is running") or, had it
    # come later, the slot already final ("... handled it"): both say the slot was taken.
    assert f"slot {SLOT} is already taken" in loser_out, loser_out
    assert "another instance" in loser_out or f"handled it (sent issue {ISSUE})" in loser_out

    assert _issues(engine) == {ISSUE: "sent"}  # exactly one issue, and it went out
    slots = _slots(engine)
    assert list(slots) == [SLOT]
    row = slots[SLOT]
    assert (row.outcome, row.issue_id) == ("sent", ISSUE)
    assert row.finished_at is not None
    assert row.claimed_by.endswith(f":{processes[winner].pid}")  # the winner recorded itself
    assert ledger_states(engine, ISSUE) == {"sent": 1000}
    _assert_everyone_once(fake, emails)
    assert fake.accepted_requests == 1000 // BATCH


# --- 3: killed mid-send, run again ----------------------------------------------------------------


@BOTH_DATABASES
def test_tick_killed_mid_send_resumes_the_same_issue(
    setup: tuple[Settings, Engine], tick_env: dict[str, str], fake: FakeSendGrid
) -> None:
    _settings, engine = setup
    emails = set(add_subscribers(engine, 1000))
    fake.delay = 0.3  # each answer is slow, so the kill lands while a request is out

    process = popen_cli(tick_env, "tick", "--now", NOW)
    try:
        wait_for(lambda: fake.received >= 3, 60, "the third request of the tick")
        time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        _stop(process)
    assert process.returncode == -signal.SIGKILL

    # The dead tick left its claim: running, with the issue it was sending.
    row = _slots(engine)[SLOT]
    assert (row.outcome, row.issue_id, row.finished_at) == ("running", ISSUE, None)
    assert _issues(engine) == {ISSUE: "sending"}
    states = ledger_states(engine, ISSUE)
    assert 0 < states.get("in_flight", 0) <= BATCH  # at most the one batch whose answer was lost
    uncertain = in_flight_emails(engine, ISSUE)

    fake.delay = 0.0
    again = run_cli(tick_env, "tick", "--now", NOW, timeout=90)
    # Incomplete (the uncertain batch needs an editor): a non-zero exit a cron wrapper sees.
    assert again.returncode == 1, again.stderr
    assert f"slot {SLOT}" in again.stderr and ISSUE in again.stderr, again.stderr
    assert f"resuming slot {SLOT} left running" in again.stderr  # the dead tick's claim, taken over

    assert list(_issues(engine)) == [ISSUE]  # no second issue for the slot
    assert list(_slots(engine)) == [SLOT]
    counts = fake.address_counts()
    assert max(counts.values()) == 1  # nobody twice
    assert set(counts) | uncertain == emails  # everybody else got it
    assert in_flight_emails(engine, ISSUE) == uncertain  # the uncertain batch is never resent silently
    assert ledger_states(engine, ISSUE) == {"sent": 1000 - len(uncertain), "in_flight": len(uncertain)}
    row = _slots(engine)[SLOT]
    # Not final: the editor resolves the uncertain batch (`newsletter send --resend-uncertain`).
    assert (row.outcome, row.issue_id, row.finished_at) == ("incomplete", ISSUE, None)
    assert f"newsletter status {ISSUE}" in (row.detail or "")

    # A third tick in the slot still builds nothing new and mails nobody again.
    before = fake.accepted_requests
    third = run_cli(tick_env, "tick", "--now", NOW, timeout=60)
    assert third.returncode == 1 and "incomplete" in third.stderr, third.stderr
    assert fake.accepted_requests == before
    assert list(_issues(engine)) == [ISSUE]


# --- 4: nothing new -----------------------------------------------------------------------------


@BOTH_DATABASES
def test_tick_with_nothing_new_records_it_and_sends_nothing(
    setup: tuple[Settings, Engine], tick_env: dict[str, str], fake: FakeSendGrid
) -> None:
    _settings, engine = setup
    emails = set(add_subscribers(engine, 30))

    first = run_cli(tick_env, "tick", "--now", NOW, timeout=60)
    assert first.returncode == 0, first.stderr
    assert f"sent issue {ISSUE}" in first.stdout
    _assert_everyone_once(fake, emails)
    requests = fake.received

    # A week later the same sources bring nothing that has not gone out.
    second = run_cli(tick_env, "tick", "--now", NEXT_NOW, timeout=60)
    assert second.returncode == 0, second.stderr
    assert f"slot {NEXT_SLOT}: nothing new" in second.stdout and "nothing sent" in second.stdout
    assert fake.received == requests  # not a single request
    assert _issues(engine) == {ISSUE: "sent"}
    slots = _slots(engine)
    assert set(slots) == {SLOT, NEXT_SLOT}
    assert slots[SLOT].outcome == "sent"
    row = slots[NEXT_SLOT]
    assert (row.outcome, row.issue_id) == ("nothing_new", None)
    assert row.finished_at is not None and "no new comparison" in (row.detail or "")

    # "nothing new" is final: the slot is not tried again.
    third = run_cli(tick_env, "tick", "--now", NEXT_NOW, timeout=60)
    assert third.returncode == 0, third.stderr
    assert f"slot {NEXT_SLOT} is already taken" in third.stdout and "nothing new" in third.stdout
    assert fake.received == requests


def test_tick_with_an_empty_catalog_records_nothing_new(
    sqlite_env: dict[str, str], fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = _configure(monkeypatch, sqlite_env, fake)
    monkeypatch.delenv("NEWSLETTER_SOURCES")
    del values["NEWSLETTER_SOURCES"]
    engine = open_database(get_settings().database_url)
    add_subscribers(engine, 5)

    result = run_cli(values, "tick", "--now", NOW, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "nothing new" in result.stdout and "catalog is empty" in result.stdout
    assert fake.received == 0
    assert _issues(engine) == {}
    row = _slots(engine)[SLOT]
    assert row.outcome == "nothing_new" and row.issue_id is None and row.finished_at is not None


# --- 5: misfire grace inside the running scheduler ---------------------------------------------------


def _schedule_fired_ago(ago: timedelta) -> tuple[str, datetime]:
    """A weekly cron (in UTC) whose latest fire time is ``ago`` before the real clock."""
    fire = (datetime.now(UTC) - ago).replace(second=0, microsecond=0)
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[fire.weekday()]
    return f"{fire.minute} {fire.hour} * * {day}", fire


def _scheduler_settings(
    monkeypatch: pytest.MonkeyPatch, sqlite_env: dict[str, str], fake: FakeSendGrid, grace: int
) -> tuple[Settings, Engine, datetime]:
    # APScheduler fires against the real clock (and the job's tick reads it too), so the
    # schedule is built around the real time: its latest fire was 2 hours ago.
    schedule, fire = _schedule_fired_ago(timedelta(hours=2))
    _configure(
        monkeypatch,
        sqlite_env,
        fake,
        NEWSLETTER_TIMEZONE="UTC",
        NEWSLETTER_SCHEDULE=schedule,
        NEWSLETTER_MISFIRE_GRACE_TIME=str(grace),
    )
    settings = get_settings()
    return settings, open_database(settings.database_url), fire


def test_scheduler_started_two_hours_late_within_grace_sends_once(
    sqlite_env: dict[str, str], fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, engine, fire = _scheduler_settings(monkeypatch, sqlite_env, fake, grace=6 * 3600)
    emails = set(add_subscribers(engine, 250))
    slot_key = f"{fire:%Y-%m-%dT%H:%M} UTC"
    stop = threading.Event()
    scheduler = start_scheduler(settings, engine, stop=stop, now=datetime.now(UTC))
    try:
        wait_for(
            lambda: getattr(_slots(engine).get(slot_key), "outcome", None) == "sent",
            30,
            f"the missed slot {slot_key} to be sent",
        )
        time.sleep(0.5)  # room for a (wrong) second run
        job = scheduler.get_job("weekly-issue")
        assert job is not None
        assert job.next_run_time is not None and job.next_run_time > datetime.now(UTC) + timedelta(days=6)
    finally:
        stop.set()
        scheduler.shutdown(wait=True)
    assert list(_slots(engine)) == [slot_key]
    assert len(_issues(engine)) == 1 and set(_issues(engine).values()) == {"sent"}
    _assert_everyone_once(fake, emails)


def test_scheduler_started_beyond_grace_sends_nothing(
    sqlite_env: dict[str, str], fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, engine, _fire = _scheduler_settings(monkeypatch, sqlite_env, fake, grace=3600)
    add_subscribers(engine, 20)
    stop = threading.Event()
    now = datetime.now(UTC)
    scheduler = start_scheduler(settings, engine, stop=stop, now=now)
    try:
        job = scheduler.get_job("weekly-issue")
        assert job is not None and job.next_run_time is not None
        assert job.next_run_time > now + timedelta(days=6)  # next week's run, not the stale one
        time.sleep(2.0)
        assert _slots(engine) == {}
    finally:
        stop.set()
        scheduler.shutdown(wait=True)
    assert fake.received == 0
    assert _issues(engine) == {}


# --- 6: a graceful stop mid-send ---------------------------------------------------------------


@BOTH_DATABASES
def test_graceful_stop_mid_send_leaves_the_slot_open_and_the_next_tick_finishes(
    setup: tuple[Settings, Engine], fake: FakeSendGrid
) -> None:
    settings, engine = setup
    emails = set(add_subscribers(engine, 450))
    now = datetime.fromisoformat(NOW)
    stop = threading.Event()
    batches: list[int] = []

    def after_batch(state: Any) -> None:
        batches.append(state.batches)
        stop.set()  # as SIGTERM does in `newsletter serve`: finish this batch, then stop

    stopped = run_tick(settings, engine, now=now, worker="test:graceful", stop=stop, progress=after_batch)
    assert stopped.outcome == "stopped", stopped.message
    assert stopped.issue_id == ISSUE and "resumes" in stopped.message
    assert batches == [1]
    row = _slots(engine)[SLOT]
    assert (row.outcome, row.issue_id, row.finished_at) == ("stopped", ISSUE, None)  # not final
    assert _issues(engine) == {ISSUE: "sending"}
    assert ledger_states(engine, ISSUE).get("sent") == BATCH and fake.accepted_requests == 1

    finished = run_tick(settings, engine, now=now + timedelta(minutes=20), worker="test:next")
    assert finished.outcome == "sent", finished.message
    assert finished.issue_id == ISSUE
    row = _slots(engine)[SLOT]
    assert (row.outcome, row.issue_id, row.claimed_by) == ("sent", ISSUE, "test:next")
    assert row.finished_at is not None
    assert _issues(engine) == {ISSUE: "sent"}
    assert ledger_states(engine, ISSUE) == {"sent": 450}
    _assert_everyone_once(fake, emails)

    again = run_tick(settings, engine, now=now + timedelta(minutes=30), worker="test:late")
    assert again.outcome == "done" and "already taken" in again.message
    assert fake.accepted_requests == 5  # 100 + 4 more batches of at most 100


def test_a_send_cut_short_is_finished_by_a_later_week_s_tick(
    setup: tuple[Settings, Engine], fake: FakeSendGrid
) -> None:
    """Stopped in week 48 and not restarted that week: week 49's tick finishes W48 first."""
    settings, engine = setup
    emails = set(add_subscribers(engine, 250))
    stop = threading.Event()
    stopped = run_tick(
        settings,
        engine,
        now=datetime.fromisoformat(NOW),
        worker="test:w48",
        stop=stop,
        progress=lambda _state: stop.set(),
    )
    assert stopped.outcome == "stopped" and _issues(engine) == {ISSUE: "sending"}

    next_week = datetime.fromisoformat("2026-11-30T09:05:00+01:00")
    result = run_tick(settings, engine, now=next_week, worker="test:w49")
    assert f"slot {SLOT}: sent issue {ISSUE}" in result.message, result.message
    assert result.outcome == "nothing_new"  # week 49 itself: no new comparison since
    assert _slots(engine)[SLOT].outcome == "sent"
    assert _issues(engine) == {ISSUE: "sent"}
    _assert_everyone_once(fake, emails)


# --- the admin page shows the schedule ------------------------------------------------------------


def test_admin_page_shows_next_runs_and_recent_slots(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.web import create_app

    monkeypatch.setenv("NEWSLETTER_TIMEZONE", "America/New_York")
    get_settings.cache_clear()
    settings = get_settings()
    engine = open_database(settings.database_url)
    base = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {
            "key": f"2026-11-{2 + 7 * week:02d}T09:00 America/New_York",
            "claimed_by": f"host-{week}:{1000 + week}",
            "claimed_at": base + timedelta(weeks=week),
            "finished_at": base + timedelta(weeks=week, minutes=3),
            "outcome": "sent",
            "issue_id": f"2026-W{45 + week}",
            "detail": f"{week + 1},000 sent",
        }
        for week in range(5)
    ]
    rows.insert(
        0,
        {  # the oldest: should not be among the last five
            "key": "2026-10-26T09:00 America/New_York",
            "claimed_by": "old-host:1",
            "claimed_at": base - timedelta(weeks=1),
            "finished_at": base - timedelta(weeks=1),
            "outcome": "nothing_new",
            "issue_id": None,
            "detail": "the oldest slot",
        },
    )
    rows[-1].update(outcome="error", issue_id=None, finished_at=None, detail="<script>alert(1)</script> & co")
    with engine.begin() as conn:
        conn.execute(insert(ScheduleSlotRow), rows)

    expected_runs = next_run_times(settings, count=3)
    assert len(expected_runs) == 3
    bearer = {"authorization": "Bearer test-admin-token"}
    with TestClient(create_app(settings), follow_redirects=False) as client:
        assert client.get("/admin").status_code == 401  # the schedule is behind the token too
        page = client.get("/admin", headers=bearer)
        data = client.get("/admin", headers={**bearer, "accept": "application/json"}).json()
    assert page.status_code == 200
    text = page.text
    assert "0 9 * * MON" in text and "America/New_York" in text
    for fire in expected_runs:
        assert fire.tzinfo is not None and fire.astimezone(ZoneInfo("America/New_York")).hour == 9
        assert f"{fire:%a %Y-%m-%d %H:%M %Z}" in text  # e.g. "Mon 2026-11-30 09:00 EST"
        assert f"{fire.astimezone(UTC):%Y-%m-%d %H:%M} UTC" in text
    for row in rows[1:]:
        assert row["key"] in text and row["outcome"] in text and row["claimed_by"] in text
    for row in rows[1:-1]:
        assert f'<a href="/admin/issues/{row["issue_id"]}">{row["issue_id"]}</a>' in text
        assert row["detail"] in text
    assert "the oldest slot" not in text and "old-host:1" not in text  # only the last five
    assert "<script>alert(1)</script>" not in text  # autoescaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in text
    # Newest first, like `newsletter schedule show`.
    positions = [text.index(row["key"]) for row in reversed(rows[1:])]
    assert positions == sorted(positions)

    schedule = data["schedule"]
    assert schedule["expression"] == "0 9 * * MON" and schedule["timezone"] == "America/New_York"
    assert [run["utc"] for run in schedule["next_runs"]] == [
        fire.astimezone(UTC).isoformat() for fire in expected_runs
    ]
    assert [run["local"] for run in schedule["next_runs"]] == [fire.isoformat() for fire in expected_runs]
    assert [slot["key"] for slot in schedule["slots"]] == [row["key"] for row in reversed(rows[1:])]
    newest = schedule["slots"][0]
    assert newest["outcome"] == "error" and newest["issue_id"] is None
    assert newest["detail"] == "<script>alert(1)</script> & co"  # JSON carries the raw text
    assert schedule["slots"][1]["issue_id"] == "2026-W48"
    assert data["subscribers"]["confirmed"] == 0  # the rest of the dashboard is still there
