"""The schedule itself: slots, DST, misfire grace and the instance lock (no sending here)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError
from newsletter.schedule import current_slot, next_run_times, recent_slots
from newsletter.scheduler import instance_lock, run_tick


def _settings(zone: str, **extra: object) -> Settings:
    return load_settings(timezone=zone, **extra)


@pytest.mark.parametrize(
    ("zone", "after", "expected_utc"),
    [
        # Europe/Berlin: summer time starts Sun 2026-03-29, ends Sun 2026-10-25.
        ("Europe/Berlin", "2026-03-24T00:00Z", ["2026-03-30T07:00", "2026-04-06T07:00"]),
        ("Europe/Berlin", "2026-03-20T00:00Z", ["2026-03-23T08:00", "2026-03-30T07:00"]),
        ("Europe/Berlin", "2026-10-20T00:00Z", ["2026-10-26T08:00", "2026-11-02T08:00"]),
        # America/New_York: DST starts Sun 2026-03-08, ends Sun 2026-11-01.
        ("America/New_York", "2026-03-03T00:00Z", ["2026-03-09T13:00", "2026-03-16T13:00"]),
        ("America/New_York", "2026-10-27T00:00Z", ["2026-11-02T14:00", "2026-11-09T14:00"]),
    ],
)
def test_next_runs_stay_at_nine_local_across_dst(zone: str, after: str, expected_utc: list[str]) -> None:
    runs = next_run_times(_settings(zone), after=datetime.fromisoformat(after), count=2)
    assert [f"{run.astimezone(UTC):%Y-%m-%dT%H:%M}" for run in runs] == expected_utc
    assert all((run.hour, run.minute, run.weekday()) == (9, 0, 0) for run in runs)


def test_slot_is_the_latest_fire_time_in_the_zone() -> None:
    settings = _settings("Europe/Berlin")
    # Monday 2026-11-23 10:30 UTC = 11:30 in Berlin: the slot is this Monday 09:00.
    slot = current_slot(settings, datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    assert slot is not None
    assert slot.key == "2026-11-23T09:00 Europe/Berlin"
    # Monday 07:59 UTC = 08:59 Berlin: still last week's slot.
    earlier = current_slot(settings, datetime(2026, 11, 23, 7, 59, tzinfo=UTC))
    assert earlier is not None and earlier.key == "2026-11-16T09:00 Europe/Berlin"


def test_slot_boundary_is_the_fire_time_itself() -> None:
    slot = current_slot(_settings("UTC"), datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    assert slot is not None and slot.key == "2026-11-23T09:00 UTC"


def test_tick_beyond_grace_sends_nothing(sqlite_env: dict[str, str]) -> None:
    from newsletter.runtime import settings_and_engine

    settings, engine = settings_and_engine()
    # Friday after a Monday 09:00 slot with the default 6 h grace: stale.
    result = run_tick(settings, engine, now=datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
    assert result.outcome == "missed"
    assert "grace" in result.message and "2026-11-23T09:00 UTC" in result.message

    assert recent_slots(engine) == []


def _second_lock_attempt(engine: Engine) -> bool:
    """Try the lock from another process, as a second instance would."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return bool(pool.apply(_try_lock_in_child, (engine.url.render_as_string(hide_password=False),)))


def _try_lock_in_child(url: str) -> bool:
    from newsletter.db import make_engine

    with instance_lock(make_engine(url)) as got:
        return got


def test_instance_lock_excludes_a_second_process(engine: Engine) -> None:
    with instance_lock(engine) as got:
        assert got is True
        assert _second_lock_attempt(engine) is False
    # Released: the next process gets it.
    assert _second_lock_attempt(engine) is True


def test_numeric_weekdays_are_refused_because_apscheduler_counts_from_monday(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="weekday names"):
        load_settings(schedule="0 9 * * 1", data_dir=tmp_path)
    assert load_settings(schedule="0 9 * * MON-FRI", data_dir=tmp_path).schedule == "0 9 * * MON-FRI"
    assert load_settings(schedule="0 9 */2 * *", data_dir=tmp_path).schedule == "0 9 */2 * *"
