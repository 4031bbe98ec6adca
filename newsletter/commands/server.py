"""`newsletter serve`, `tick`, `schedule show`, `db upgrade`."""

from __future__ import annotations

import getpass
import logging
import signal
import threading
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import typer
import uvicorn
from rich.table import Table
from sqlalchemy.engine import make_url

from newsletter.commands._console import make_console
from newsletter.errors import ConfigError
from newsletter.runtime import settings_and_engine
from newsletter.states import SlotOutcome

console = make_console()
err_console = make_console(stderr=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
schedule_app = typer.Typer(help="The weekly schedule.", no_args_is_help=True)
log = logging.getLogger(__name__)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the database schema to the newest migration."""
    settings, _engine = settings_and_engine()
    console.print(f"database is up to date ({_safe_url(settings.database_url)})")


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


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
    from newsletter.scheduler import run_tick

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
    from newsletter.schedule import schedule_view

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
    from newsletter.schedule import pause

    _settings, engine = settings_and_engine()
    state = pause(engine, reason=reason, by=_who())
    console.print("the schedule is paused" + (f": {state.reason}" if state.reason else ""))


@schedule_app.command("resume")
def schedule_resume() -> None:
    """Resume the weekly job (and cancel a skip of a slot still to come)."""
    from newsletter.schedule import resume, schedule_view

    settings, engine = settings_and_engine()
    resume(settings, engine, by=_who())
    upcoming = schedule_view(settings, engine, runs=1).next_runs_text
    console.print("the schedule is running" + (f"; next run {upcoming[0][0]}" if upcoming else ""))


@schedule_app.command("skip")
def schedule_skip() -> None:
    """Skip the next slot: it is recorded as skipped and sends nothing; the one after runs."""
    from newsletter.schedule import skip_next

    settings, engine = settings_and_engine()
    skipped = skip_next(settings, engine, by=_who())
    console.print(f"skipped slot {skipped.key}")


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
) -> None:
    """Serve the web app (subscribe, archive, admin, webhooks) and run the weekly scheduler."""
    settings, engine = settings_and_engine()  # bad settings stop here, before anything starts

    from newsletter.scheduler import start_scheduler
    from newsletter.web import create_app

    app = create_app(settings)
    token, generated = settings.admin_secret()
    console.print(f"Weekly AI Tool Verdicts on http://{host}:{port}/  (admin: http://{host}:{port}/admin)")
    if generated:
        console.print(f"admin token (generated, kept in {settings.data_dir / '.admin_token'}): {token}")
    elif settings.admin_token is None:
        console.print(f"admin token: see {settings.data_dir / '.admin_token'}")
    stop = threading.Event()
    app.state.stop_event = stop
    scheduler = None
    if settings.scheduler == "on":
        scheduler = start_scheduler(settings, engine, stop=stop)
        job = scheduler.get_job("weekly-issue")
        next_run = getattr(job, "next_run_time", None)
        if next_run is not None:
            console.print(f"scheduler on: next weekly run {next_run:%a %Y-%m-%d %H:%M %Z}")
    else:
        console.print("scheduler off (NEWSLETTER_SCHEDULER=off)")
    server = _GracefulServer(
        uvicorn_config(app, host=host, port=port), stop=stop
    )
    # uvicorn re-raises the signal it caught once it has shut down; with the default
    # SIGTERM handler that kills the process before the scheduler below is stopped.
    # A Python handler makes the re-raised signal a no-op, so `finally` always runs.
    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set())
    try:
        server.run()  # returns after SIGINT/SIGTERM once open requests are done
    finally:
        signal.signal(signal.SIGTERM, previous)
        # Ask a running send to stop after its current batch, then wait for it.
        stop.set()
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        console.print("stopped")


def uvicorn_config(app: Any, *, host: str, port: int) -> uvicorn.Config:
    """uvicorn with its proxy headers off: by default it believes X-Forwarded-For from
    127.0.0.1, so anyone on the host could pick the IP the rate limits count. The app
    believes only NEWSLETTER_TRUSTED_PROXIES (web/app.py)."""
    return uvicorn.Config(
        app, host=host, port=port, log_level="info", access_log=False, proxy_headers=False
    )


class _GracefulServer(uvicorn.Server):
    """uvicorn's server that also tells a running send to stop the moment a signal arrives."""

    def __init__(self, config: uvicorn.Config, *, stop: threading.Event) -> None:
        super().__init__(config)
        self._stop = stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._stop.set()  # the send finishes its current batch while open requests drain
        super().handle_exit(sig, frame)
