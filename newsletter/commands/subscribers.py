"""`newsletter subscribers …` commands: add, import, export, list, remove."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from newsletter import mail, subscribers
from newsletter.commands._console import make_console
from newsletter.errors import SubscriberError
from newsletter.runtime import settings_and_engine

app = typer.Typer(help="Subscribers: add, import, export, list, remove.", no_args_is_help=True)
console = make_console()
err_console = make_console(stderr=True)
MAX_ERRORS_SHOWN = 50


@app.command("add")
def add(
    emails: list[str] = typer.Argument(..., help="One or more addresses."),
    confirmed: bool = typer.Option(
        False,
        "--confirmed",
        help="Add as confirmed (you hold their consent); otherwise a confirmation mail goes out.",
    ),
    name: str | None = typer.Option(None, "--name", help="The subscriber's name (for a single address)."),
) -> None:
    """Add subscribers by hand. Exits 1 if any address is invalid (the valid ones are still added)."""
    if name is not None and len(emails) > 1:
        raise SubscriberError("--name is for one address: add the others without it")
    settings, engine = settings_and_engine()
    results = mail.add(settings, engine, emails, confirmed=confirmed, name=name)
    bad = 0
    for result in results:
        if result.action == "invalid":
            bad += 1
            err_console.print(Text.assemble(("invalid", "red"), f"  {result.message}"))
        elif result.action == "suppressed":
            err_console.print(Text.assemble(("skipped", "yellow"), f"  {result.email}: {result.message}"))
        else:
            console.print(
                f"{result.action:<9} {result.email}" + (f"  ({result.message})" if result.message else "")
            )
    if bad:
        raise typer.Exit(1)


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="CSV with a header row naming 'email' (and optionally 'name')."),
    confirmed: bool = typer.Option(
        False, "--confirmed", help="Import as confirmed (you hold their consent); no mail is sent either way."
    ),
) -> None:
    """Import a CSV: bad rows are reported with their line number, the good ones imported."""
    settings, engine = settings_and_engine()
    started = time.perf_counter()
    report = subscribers.import_csv(settings, engine, file, confirmed=confirmed, source_label="import")
    elapsed = time.perf_counter() - started
    for error in report.errors[:MAX_ERRORS_SHOWN]:
        err_console.print(f"{file}:{error.line}: {error.message}")
    if len(report.errors) > MAX_ERRORS_SHOWN:
        err_console.print(f"… and {len(report.errors) - MAX_ERRORS_SHOWN} more bad rows")
    table = Table(title=f"import of {file.name}", show_header=False)
    table.add_row("imported", str(report.imported))
    table.add_row("already known (merged)", str(report.existing))
    if report.upgraded:
        table.add_row("pending -> confirmed", str(report.upgraded))
    table.add_row("duplicates in the file", str(report.duplicates))
    table.add_row("suppressed (not re-added)", str(report.suppressed))
    table.add_row("bad rows", str(len(report.errors)))
    rate = report.rows / elapsed if elapsed > 0 else 0.0
    table.add_row("time", f"{elapsed:.2f} s ({rate:,.0f} rows/s)")
    console.print(table)
    if report.errors:
        # As `comparisons import` does: the good rows are in, and the exit code says some were not.
        raise typer.Exit(1)


@app.command("export")
def export(
    status: str | None = typer.Option(None, "--status", help="Only this status."),
) -> None:
    """Write every subscriber with an address as CSV to stdout, as it is read (streamed)."""
    _settings, engine = settings_and_engine()
    for chunk in subscribers.iter_export_csv(engine, status=status):
        sys.stdout.write(chunk)
    sys.stdout.flush()


@app.command("list")
def list_(
    status: str | None = typer.Option(
        None, "--status", help=f"Only this status ({', '.join(subscribers.STATUSES)})."
    ),
    limit: int = typer.Option(1000, "--limit", min=1, help="At most this many rows."),
) -> None:
    """List subscribers (and the counts by status)."""
    _settings, engine = settings_and_engine()
    rows = subscribers.list_subscribers(engine, status=status, limit=limit)
    counts = subscribers.count_by_status(engine)
    table = Table("id", "email", "name", "status", "source", "since (UTC)")
    for sub in rows:
        table.add_row(
            str(sub.id),
            sub.email or "(erased)",
            sub.name or "",
            sub.status,
            sub.source or "",
            f"{sub.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table if rows else "no subscribers" + (f" with status {status}" if status else ""))
    console.print(", ".join(f"{status_}: {count}" for status_, count in counts.items()))


@app.command("remove")
def remove(email: str = typer.Argument(..., help="The address to erase.")) -> None:
    """Erase a subscriber's personal data (right to be forgotten); only a hash stays, for suppression."""
    _settings, engine = settings_and_engine()
    if not email.strip():
        raise SubscriberError("give the address to remove")
    removed = subscribers.remove(engine, email)
    console.print(
        f"erased subscriber {removed.id}: address, name and consent details deleted; "
        "the address hash stays on the suppression list"
    )
