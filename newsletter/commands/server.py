"""`newsletter serve`: the web app and the scheduler in one process."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import typer
import uvicorn

from newsletter.commands._console import make_console
from newsletter.runtime import settings_and_engine
from newsletter.scheduler import start_scheduler
from newsletter.web import create_app

console = make_console()


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
) -> None:
    """Serve the web app (subscribe, archive, admin, webhooks) and run the weekly scheduler."""
    settings, engine = settings_and_engine()  # bad settings stop here, before anything starts

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
    server = _GracefulServer(uvicorn_config(app, host=host, port=port), stop=stop)
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
    return uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False, proxy_headers=False)


class _GracefulServer(uvicorn.Server):
    """uvicorn's server that also tells a running send to stop the moment a signal arrives."""

    def __init__(self, config: uvicorn.Config, *, stop: threading.Event) -> None:
        super().__init__(config)
        self._stop = stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._stop.set()  # the send finishes its current batch while open requests drain
        super().handle_exit(sig, frame)
