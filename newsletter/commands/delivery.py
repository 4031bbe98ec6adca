"""`newsletter send` and `newsletter status`."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from newsletter.commands._console import make_console
from newsletter.delivery import SendProgress, delivery_status, dry_run, send_issue, send_test
from newsletter.errors import DeliveryError, NewsletterError
from newsletter.runtime import settings_and_engine
from newsletter.states import IssueStatus, Provider

console = make_console()
err_console = make_console(stderr=True)

INTERRUPTED_EXIT = 130


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        rate = task.fields.get("rate", 0.0)
        return Text(f"{rate:,.0f} recipients/s")


class _FailuresColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        failed = task.fields.get("failed", 0)
        uncertain = task.fields.get("uncertain", 0)
        text = f"{failed} failed"
        if uncertain:
            text += f", {uncertain} uncertain"
        return Text(text, style="red" if failed or uncertain else "dim")


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM: finish and record the current batch, then stop."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            err_console.print(
                f"{signal.Signals(signum).name}: finishing the current batch, then stopping…", style="yellow"
            )
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def send(
    issue_id: str = typer.Argument(..., help="The issue to send (see `newsletter issue list`)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    test_to: str | None = typer.Option(
        None,
        "--test-to",
        help="Comma-separated addresses: send a [TEST] copy to them only, outside the ledger.",
    ),
    dry: bool = typer.Option(False, "--dry-run", help="Count recipients and batches; send nothing."),
    provider: str | None = typer.Option(
        None, "--provider", help="outbox, smtp or sendgrid (default: setting)."
    ),
    resend_uncertain: bool = typer.Option(
        False,
        "--resend-uncertain",
        help="Also resend batches left in flight by a crash (their recipients may get the issue twice).",
    ),
) -> None:
    """Send an issue to every confirmed subscriber not yet mailed (safe to run again)."""
    if provider is not None and provider not in tuple(Provider):
        raise typer.BadParameter("choose outbox, smtp or sendgrid", param_hint="--provider")
    settings, engine = settings_and_engine()
    if test_to is not None:
        result = send_test(settings, issue_id, test_to.split(","), provider, engine=engine)
        for address in result.accepted:
            console.print(f"test copy of {issue_id} sent to {address} via {result.provider}")
        for address, error in result.failed.items():
            err_console.print(Text.assemble((f"not sent to {address}:", "red"), f" {error}"))
        if result.failed:
            raise typer.Exit(1)
        return

    plan = dry_run(settings, engine, issue_id, provider=provider)
    if dry:
        console.print(
            f"dry run: issue {issue_id} ({plan.issue_status}) would go to {plan.recipients} recipients "
            f"in {plan.batches} batches of up to {plan.batch_size} via {plan.provider}; nothing sent."
        )
        if plan.uncertain:
            console.print(
                f"{plan.uncertain} recipients are in uncertain in-flight batches "
                "(see `newsletter status`; `--resend-uncertain` would resend them)."
            )
        return
    if plan.issue_status == IssueStatus.SENT:
        console.print(
            f"issue {issue_id} was already sent; nothing to do (see `newsletter status {issue_id}`)."
        )
        return
    if not yes:
        if not sys.stdin.isatty():
            raise NewsletterError(
                "refusing to send without confirmation: stdin is not a terminal; pass --yes to send"
            )
        extra = f" (plus {plan.uncertain} uncertain)" if resend_uncertain and plan.uncertain else ""
        if not typer.confirm(
            f"Send issue {issue_id} to {plan.recipients} recipients{extra} via {plan.provider}?",
            default=False,
        ):
            console.print("not sent.")
            raise typer.Exit(1)

    stop = threading.Event()
    columns: list[Any] = [
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        _FailuresColumn(),
    ]
    with (
        _stop_on_signals(stop),
        Progress(*columns, console=err_console, transient=False) as bar,
    ):
        task = bar.add_task(f"sending {issue_id}", total=max(plan.recipients, 1), rate=0.0, failed=0)

        def on_progress(state: SendProgress) -> None:
            bar.update(
                task,
                total=max(state.total, state.done, 1),
                completed=state.done,
                rate=state.rate,
                failed=state.failed,
                uncertain=state.uncertain,
            )

        try:
            report = send_issue(
                settings,
                engine,
                issue_id,
                provider=provider,
                resend_uncertain=resend_uncertain,
                progress=on_progress,
                stop=stop,
            )
        except DeliveryError as error:
            done = getattr(error, "report", None)
            if done is not None:
                err_console.print(
                    f"stopped after {done.sent} recipients were sent (progress is kept); "
                    f"fix the problem and run `newsletter send {issue_id}` again to send the rest."
                )
            raise
    console.print(
        f"issue {issue_id}: {report.sent} sent, {report.failed} failed, {report.suppressed} suppressed "
        f"in {report.elapsed:.1f}s via {report.provider} ({report.rate:,.0f} recipients/s); "
        f"issue is {report.issue_status}."
    )
    if report.requeued:
        console.print(f"{report.requeued} recipients of uncertain batches were sent again on request.")
    if report.reconciled:
        console.print(f"{report.reconciled} recipients of interrupted outbox batches settled from the files.")
    if report.gave_up:
        err_console.print(
            f"{report.gave_up} recipients deferred by the server for longer than DEFER_GIVE_UP are "
            f"marked failed (see `newsletter status {issue_id}`).",
            style="yellow",
        )
    for batch in report.live:
        until = f"{batch.lease_until:%H:%M:%S} UTC" if batch.lease_until else "?"
        err_console.print(
            f"not resent: batch {batch.batch_id} ({batch.recipients} recipients) belongs to a live "
            f"send by {batch.worker or '?'} (its lease runs to {until} and is being renewed). Wait for "
            "that send to end; if it was killed, its lease expires within NEWSLETTER_LEASE_SECONDS.",
            style="yellow",
        )
    if report.uncertain:
        err_console.print(
            f"{report.uncertain} recipients are uncertain (no answer from the provider); they are "
            f"not resent automatically: see `newsletter status {issue_id}`.",
            style="yellow",
        )
    elif report.in_flight and not report.interrupted:
        err_console.print(
            f"{report.in_flight} recipients are still in flight: uncertain batches left by an "
            f"earlier crash (never resent automatically) or another send in progress. See `newsletter "
            f"status {issue_id}`; `newsletter send {issue_id} --resend-uncertain` resends them on purpose.",
            style="yellow",
        )
    if report.interrupted:
        err_console.print(
            f"interrupted: {report.remaining} recipients not yet sent. "
            f"Run `newsletter send {issue_id}` to resume where it stopped."
        )
        raise typer.Exit(INTERRUPTED_EXIT)
    if not report.complete:
        pending = max(0, report.remaining - report.in_flight - report.deferred)
        line = f"incomplete: {report.in_flight} in flight / {report.deferred} deferred"
        if pending:
            line += f" / {pending} pending"
        err_console.print(f"{line}; issue {issue_id} is not fully sent (see `newsletter status {issue_id}`).")
        raise typer.Exit(1)


def status(issue_id: str = typer.Argument(..., help="The issue.")) -> None:
    """Delivery counts by state, uncertain in-flight batches and webhook counts for an issue."""
    _settings, engine = settings_and_engine()
    report = delivery_status(engine, issue_id)
    table = Table(title=f"issue {issue_id}: {report.issue_status}", show_header=True)
    table.add_column("state")
    table.add_column("recipients", justify="right")
    for state, count in report.counts.items():
        table.add_row(state, str(count))
    table.add_row("total", str(report.total), style="bold")
    console.print(table)
    console.print("events: " + ", ".join(f"{name} {count}" for name, count in report.events.items()))
    if report.deferred:
        console.print(f"{report.deferred} recipients deferred by the server, retried by the next send.")
    if report.failed:
        console.print(f"failed addresses ({report.counts.get('failed', 0)}):")
        for address, reason in report.failed:
            console.print(f"  {address}: {reason}", markup=False, highlight=False)
    if report.uncertain:
        console.print(
            f"{len(report.uncertain)} batch(es) in flight with {report.uncertain_recipients} recipients "
            "(in progress, or left by a crash: whether the provider took them is unknown):"
        )
        for batch in report.uncertain:
            when = f"{batch.created_at:%Y-%m-%d %H:%M:%S}"
            line = f"  batch {batch.batch_id}  {batch.recipients} recipients  claimed {when}"
            line += f" by {batch.worker or '?'} via {batch.provider or '?'}"
            if batch.error:
                line += f"  ({batch.error})"
            console.print(line)
        console.print(
            "They are never resent automatically. Webhook events resolve them; to send them again "
            "on purpose (some recipients may get the issue twice): "
            f"`newsletter send {issue_id} --resend-uncertain`."
        )
