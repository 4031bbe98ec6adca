"""`newsletter issue …` and `newsletter preview` commands."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from newsletter.commands._console import make_console
from newsletter.errors import IssueError, NotFoundError
from newsletter.issues import get_issue, list_issues
from newsletter.issues.archive import issue_dir, load_issue
from newsletter.issues.build import build_issue, edit_issue
from newsletter.issues.preview import make_preview_server, write_preview
from newsletter.runtime import settings_and_engine

app = typer.Typer(help="Build and inspect issues.", no_args_is_help=True)
console = make_console()


def _parse_date(value: str | None) -> datetime | date | None:
    if value is None:
        return None
    try:
        if "T" in value or " " in value.strip():
            return datetime.fromisoformat(value.strip())
        return date.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"not an ISO date or datetime: {value!r}", param_hint="--date") from None


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "—"


@app.command("build")
def build(
    date_: str | None = typer.Option(
        None, "--date", help="Issue date (YYYY-MM-DD or ISO datetime); default: now."
    ),
) -> None:
    """Build the next issue (or refresh the draft). Prints the issue id alone on the last line."""
    settings, engine = settings_and_engine()
    result = build_issue(settings, engine, date=_parse_date(date_))
    if result.issue_id is None:
        typer.echo(result.reason)
        return
    typer.echo(result.reason)
    if result.warning:
        typer.echo(f"warning: {result.warning}", err=True)

    html = issue_dir(settings, result.issue_id) / "email.html"
    size = html.stat().st_size if html.is_file() else 0
    if size > GMAIL_CLIP_BYTES:
        # On stderr: the id stays alone on stdout's last line for scripts.
        typer.echo(
            f"warning: email.html is {size // 1024} KB; Gmail clips messages over "
            f"{GMAIL_CLIP_BYTES // 1024} KB (lower NEWSLETTER_ISSUE_SIZE)",
            err=True,
        )
    typer.echo(result.issue_id)


# Gmail shows "[Message clipped]" and hides the rest, footer and unsubscribe link included.
GMAIL_CLIP_BYTES = 102 * 1024


@app.command("list")
def list_() -> None:
    """Every issue: id, status, subject, comparisons, built and sent times."""
    _settings, engine = settings_and_engine()
    issues = list_issues(engine)
    if not issues:
        console.print("No issues yet: run `newsletter issue build`.")
        return
    table = Table(title="Issues")
    table.add_column("id", no_wrap=True)
    table.add_column("status")
    table.add_column("subject")
    table.add_column("comparisons", justify="right")
    table.add_column("built")
    table.add_column("sent")
    for info in issues:
        table.add_row(
            info.id,
            info.status,
            info.subject,
            str(info.comparisons),
            _when(info.built_at),
            _when(info.sent_at),
        )
    console.print(table)


@app.command("show")
def show(issue_id: str = typer.Argument(..., help="The issue id, e.g. 2026-W48.")) -> None:
    """An issue's subject, preheader, verdict summaries and archive folder."""
    settings, engine = settings_and_engine()
    info = get_issue(engine, issue_id)
    heading = f" · {info.status} · {info.issue_date:%Y-%m-%d}"
    console.print(Text.assemble((f"Issue {info.id}", "bold"), heading))
    console.print(f"Subject:   {info.subject}")
    console.print(f"Preheader: {info.preheader}")
    console.print(f"Built:     {_when(info.built_at)}   Sent: {_when(info.sent_at)}")
    console.print(f"Archive:   {issue_dir(settings, info.id).resolve()}")
    try:
        content = load_issue(settings, info.id).content
    except NotFoundError:
        console.print("(archive missing: rebuild the issue)")
        return
    for number, summary in enumerate(content.comparisons, start=1):
        console.print()
        console.print(f"{number}. {summary.title}", markup=False, style="bold")
        console.print(f"   {summary.verdict}")
        for tool in summary.tools:
            facts = [f"{tool.ship_pct}% ship" if tool.ship_pct is not None else "no panel score"]
            if tool.votes:
                facts.append(tool.votes)
            if tool.pricing_line:
                facts.append(tool.pricing_line)
            console.print(f"   - {tool.name}: {', '.join(facts)}")
        console.print(f"   {summary.url}")


@app.command("edit")
def edit(
    issue_id: str = typer.Argument(..., help="The draft's id, e.g. 2026-W48."),
    subject: str | None = typer.Option(None, "--subject", help='The subject ("" for the computed one).'),
    preheader: str | None = typer.Option(None, "--preheader", help='The preheader ("": computed).'),
    note_file: Path | None = typer.Option(
        None, "--note-file", help="The editor's note, Markdown, UTF-8 (an empty file removes it)."
    ),
) -> None:
    """Edit a draft's subject, preheader or editor's note; the draft is re-rendered."""
    note: str | None = None
    if note_file is not None:
        try:
            note = note_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise IssueError(f"cannot read the note file {note_file}: {reason}") from None
    if subject is None and preheader is None and note is None:
        raise IssueError("nothing to change: give --subject, --preheader or --note-file")
    settings, engine = settings_and_engine()
    info = edit_issue(settings, engine, issue_id, subject=subject, preheader=preheader, note=note)
    typer.echo(f"edited draft {info.id}: {info.subject}")
    typer.echo(f"preheader: {info.preheader}")
    typer.echo("note: " + (f"{len(info.note)} characters" if info.note else "none"))


def preview(
    issue_id: str | None = typer.Argument(None, help="Issue id; default: the latest built issue."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Where to write the HTML (the text part goes next to it); default: the issue's archive folder.",
    ),
    serve: bool = typer.Option(
        False, "--serve", help="Serve it on 127.0.0.1 and re-render on template edits."
    ),
    port: int = typer.Option(8025, "--port", help="Port for --serve."),
) -> None:
    """Write (or serve) an issue with a sample recipient's values filled in."""
    settings, engine = settings_and_engine()
    if serve:
        server = make_preview_server(settings, engine, issue_id, port=port)
        host, bound = server.server_address[:2]
        typer.echo(f"Previewing on http://{host!s}:{bound}/ (text part: /email.txt); Ctrl-C to stop")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return
    html_path, text_path = write_preview(settings, engine, issue_id, out)
    typer.echo(f"Wrote {html_path} and {text_path}")
