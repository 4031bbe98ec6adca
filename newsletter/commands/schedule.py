"""`newsletter tick` and `newsletter schedule show|pause|resume|skip`: the weekly job by hand."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

import typer
from rich.table import Table

from newsletter.commands._console import make_console
from newsletter.errors import ConfigError
from newsletter.runtime import settings_and_engine
from newsletter.schedule import pause, resume, schedule_view, skip_next
from newsletter.scheduler import run_tick
from newsletter.states import SlotOutcome

console = make_console()
err_console = make_console(stderr=True)
schedule_app = typer.Typer(help="The weekly schedule.", no_args_is_help=True)


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(
            f"--now must be an ISO date-time like 2026-11-23T09:05+01:00, not {value!r}"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def tick(
    now: str | None = typer.Option(
        None, "--now", help="Pretend it is this ISO date-time (zone-less means UTC)."
    ),
) -> None:
    """Run the weekly job once, as the scheduler would: import, build this slot's issue, send it."""
    settings, engine = settings_and_engine()
    result = run_tick(settings, engine, now=_parse_now(now))
    if result.outcome in (SlotOutcome.ERROR, SlotOutcome.INCOMPLETE):
        # Both need someone to look: a cron wrapper sees a non-zero exit.
        err_console.print(f"error: {result.message}")
        raise typer.Exit(1)
    console.print(result.message)
    if result.outcome == SlotOutcome.STOPPED:
        raise typer.Exit(130)
    if result.issue_id and result.outcome == SlotOutcome.SENT:
        console.print(result.issue_id)


@schedule_app.command("show")
def schedule_show(count: int = typer.Option(3, min=1, max=50, help="How many next runs.")) -> None:
    """Print the next run times (local zone and UTC), whether it is paused, and the last slots."""
    settings, engine = settings_and_engine()
    view = schedule_view(settings, engine, runs=count)
    console.print(
        f"schedule {settings.schedule} in {settings.timezone} "
        f"(grace {settings.misfire_grace_time}s, scheduler {settings.scheduler})"
    )
    if view.paused:
        why = f": {view.state.reason}" if view.state.reason else ""
        since = f"{view.state.changed_at:%Y-%m-%d %H:%M} UTC" if view.state.changed_at else "now"
        console.print(f"PAUSED since {since}{why} (`newsletter schedule resume`)")
    runs = Table("next run", "local", "UTC", "")
    for index, (local, utc) in enumerate(view.next_runs_text):
        runs.add_row(str(index + 1), local, utc, "skipped" if view.run_is_skipped(index) else "")
    console.print(runs)
    slots = Table("slot", "outcome", "issue", "claimed by", "claimed at (UTC)", "detail")
    for row in view.slots:
        slots.add_row(
            row.key,
            row.outcome,
            row.issue_id or "",
            row.claimed_by,
            f"{row.claimed_at:%Y-%m-%d %H:%M}",
            (row.detail or "")[:80],
        )
    console.print(slots if slots.row_count else "no slot has run yet")


def _who() -> str:
    """Who changed the schedule, for `schedule show` (the OS user; some containers have none)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@schedule_app.command("pause")
def schedule_pause(
    reason: str | None = typer.Option(None, "--reason", help="Why (shown with the schedule)."),
) -> None:
    """Pause the weekly job on every instance: each slot is recorded as paused and sends nothing."""
    _settings, engine = settings_and_engine()
    state = pause(engine, reason=reason, by=_who())
    console.print("the schedule is paused" + (f": {state.reason}" if state.reason else ""))


@schedule_app.command("resume")
def schedule_resume() -> None:
    """Resume the weekly job (and cancel a skip of a slot still to come)."""
    settings, engine = settings_and_engine()
    resume(settings, engine, by=_who())
    upcoming = schedule_view(settings, engine, runs=1).next_runs_text
    console.print("the schedule is running" + (f"; next run {upcoming[0][0]}" if upcoming else ""))


@schedule_app.command("skip")
def schedule_skip() -> None:
    """Skip the next slot: it is recorded as skipped and sends nothing; the one after runs."""
    settings, engine = settings_and_engine()
    skipped = skip_next(settings, engine, by=_who())
    console.print(f"skipped slot {skipped.key}")
