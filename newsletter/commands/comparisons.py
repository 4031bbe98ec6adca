"""`newsletter comparisons …` commands: import, list, parse, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from newsletter.catalog import import_locations, list_comparisons
from newsletter.commands._console import make_console
from newsletter.config import get_settings
from newsletter.models import Comparison
from newsletter.runtime import settings_and_engine
from newsletter.sources import fetch_feed, is_url, parse_file

app = typer.Typer(help="Import, list and inspect comparisons.", no_args_is_help=True)


def _console() -> Console:
    return make_console(soft_wrap=False)


@app.command("import")
def import_command(
    locations: list[str] = typer.Argument(..., help="Files, directories or http(s) feed URLs."),
) -> None:
    """Import comparisons; report new / updated / unchanged / failed. Exit 1 if anything failed."""
    settings, engine = settings_and_engine()
    report = import_locations(settings, engine, locations)

    table = Table(title="Comparisons imported")
    for column in ("new", "updated", "unchanged", "failed"):
        table.add_column(column, justify="right")
    counts = report.counts
    table.add_row(*(str(counts[key]) for key in ("new", "updated", "unchanged", "failed")))
    _console().print(table)
    for failure in report.failed:
        typer.echo(f"failed: {failure}", err=True)
    if report.failed:
        raise typer.Exit(1)


@app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The catalog, newest first."""
    _settings, engine = settings_and_engine()
    entries = list_comparisons(engine)
    if as_json:
        rows = [
            {
                "slug": e.slug,
                "title": e.title,
                "published_at": e.published_at.isoformat(),
                "tools": e.tool_names,
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not entries:
        typer.echo("No comparisons yet: run `newsletter comparisons import samples/comparisons`.")
        return
    table = Table(title=f"{len(entries)} comparisons")
    table.add_column("published", no_wrap=True)
    table.add_column("slug", overflow="fold", ratio=3)
    table.add_column("title", overflow="fold", ratio=3)
    table.add_column("tools", overflow="fold", ratio=3)
    for entry in entries:
        table.add_row(
            entry.published_at.strftime("%Y-%m-%d"),
            entry.slug,
            entry.title,
            " / ".join(entry.tool_names),
        )
    _console().print(table)


@app.command("parse")
def parse_command(
    file: str = typer.Argument(..., help="A page (.txt/.md), JSON or YAML file, or a feed URL."),
) -> None:
    """Print the parsed comparison as JSON (a list when the file holds several)."""
    if is_url(file):
        comparisons = fetch_feed(file, get_settings())
    else:
        comparisons = parse_file(Path(file), max_bytes=get_settings().max_source_bytes)
    data: Any = [c.model_dump(mode="json") for c in comparisons]
    if len(data) == 1:
        data = data[0]
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of a comparison (the format of JSON/YAML source files)."""
    typer.echo(json.dumps(Comparison.model_json_schema(), ensure_ascii=False, indent=2))
