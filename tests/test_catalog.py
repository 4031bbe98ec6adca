"""The catalog on SQLite and on the real PostgreSQL: tools deduplicated, re-imports idempotent."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from newsletter.catalog import (
    get_comparison,
    import_comparisons,
    import_locations,
    list_comparisons,
    list_tools,
)
from newsletter.cli import app
from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.errors import NotFoundError
from newsletter.models import tool_key
from newsletter.sources import SourcedComparison, parse_file
from newsletter.tables import ComparisonRow, ComparisonToolRow, ToolRow
from tests.conftest import SEEDS

SEED_FILES = sorted(SEEDS.glob("*.txt"))
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def seed_items() -> list[SourcedComparison]:
    return [SourcedComparison(c, str(path)) for path in SEED_FILES for c in parse_file(path)]


def count(engine: Engine, table: type) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_importing_the_seeds_twice(engine: Engine) -> None:
    first = import_comparisons(engine, seed_items(), now=T0)
    assert (len(first.new), len(first.updated), len(first.unchanged), first.failed) == (3, 0, 0, [])
    assert count(engine, ComparisonRow) == 3
    # Axolotl is in all three pages: one row. Each page pairs it with a different Mistral model.
    tools = list_tools(engine)
    assert sorted(t.name for t in tools) == [
        "Axolotl v0.16",
        "Mistral 3 8B & 70B Instruct (Open Source)",
        "Mistral 3 Small (24B)",
        "Mistral 8x24B Mixture-of-Experts",
    ]
    assert len({t.key for t in tools}) == len(tools) == count(engine, ToolRow)
    axolotl = next(t for t in tools if t.key == tool_key("axolotl  V0.16"))
    with session_scope(engine) as session:
        uses = session.scalar(
            select(func.count()).select_from(ComparisonToolRow).where(ComparisonToolRow.tool_id == axolotl.id)
        )
    assert uses == 3
    assert axolotl.tagline == "15x faster MoE+LoRA fine-tuning with 40x memory reduction"

    second = import_comparisons(engine, seed_items(), now=T0 + timedelta(days=1))
    assert (len(second.new), len(second.updated), len(second.unchanged)) == (0, 0, 3)
    assert count(engine, ComparisonRow) == 3 and count(engine, ToolRow) == 4
    for entry in list_comparisons(engine):
        assert entry.published_at == T0 and entry.updated_at == T0  # nothing written


def test_an_edited_page_updates_the_row_but_keeps_published_at(engine: Engine, tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    shutil.copytree(SEEDS, pages)
    settings = Settings()
    import_locations(settings, engine, [str(pages)], now=T0)
    before = {e.slug: e for e in list_comparisons(engine)}

    page = pages / "001_f8f0f459cc74e2f8.txt"
    page.write_text(
        page.read_text(encoding="utf-8").replace(
            "75%\nPanel ship\n—\nCommunity\nFree", "90%\nPanel ship\n—\nCommunity\nFree"
        ),
        encoding="utf-8",
    )
    later = T0 + timedelta(days=2)
    report = import_locations(settings, engine, [str(pages)], now=later)
    slug = "axolotl-v0-16-vs-mistral-3-8b-70b-instruct-open-source"
    assert (report.new, report.updated, len(report.unchanged), report.failed) == ([], [slug], 2, [])

    edited = get_comparison(engine, slug)
    assert edited.comparison.tools[1].ship_pct == 90
    assert edited.updated_at == later and edited.published_at == T0 == before[slug].published_at
    assert edited.created_at == before[slug].created_at
    for other in (s for s in before if s != slug):
        assert get_comparison(engine, other).updated_at == T0
    assert count(engine, ToolRow) == 4 and count(engine, ComparisonToolRow) == 6


def test_published_at_from_the_source_and_tool_updates(engine: Engine) -> None:
    (comparison,) = parse_file(SEED_FILES[0])
    published = datetime(2025, 12, 24, 8, 30, tzinfo=UTC)
    dated = comparison.model_copy(update={"published_at": published})
    assert import_comparisons(engine, [SourcedComparison(dated, "a")], now=T0).new == [comparison.stable_slug]
    assert get_comparison(engine, comparison.stable_slug).published_at == published

    # A later page says something new about Axolotl: the one tool row follows it.
    tools = [tool.model_copy() for tool in comparison.tools]
    tools[0] = tools[0].model_copy(update={"tagline": "Now 20x faster", "name": "AXOLOTL v0.16"})
    changed = comparison.model_copy(update={"tools": tools})
    report = import_comparisons(engine, [SourcedComparison(changed, "b")], now=T0 + timedelta(hours=1))
    assert report.updated == [comparison.stable_slug]
    axolotl = next(t for t in list_tools(engine) if t.key == tool_key("Axolotl v0.16"))
    assert (axolotl.name, axolotl.tagline) == ("AXOLOTL v0.16", "Now 20x faster")
    assert axolotl.updated_at == T0 + timedelta(hours=1) and axolotl.created_at == T0
    assert count(engine, ToolRow) == 2
    assert get_comparison(engine, comparison.stable_slug).published_at == published


def test_list_is_newest_first_and_get_unknown_slug(engine: Engine) -> None:
    items = seed_items()
    for offset, item in enumerate(items):
        import_comparisons(engine, [item], now=T0 + timedelta(days=offset))
    listed = list_comparisons(engine)
    assert [e.comparison.title for e in listed] == [i.comparison.title for i in reversed(items)]
    assert listed[0].tool_names == ["Axolotl v0.16", "Mistral 3 Small (24B)"]
    assert get_comparison(engine, listed[0].title).slug == listed[0].slug  # a title finds its slug
    with pytest.raises(NotFoundError):
        get_comparison(engine, "no-such-comparison")


def _import_in_process(url: str, data_dir: str, queue: multiprocessing.Queue[object]) -> None:
    from newsletter.catalog import import_locations as run
    from newsletter.config import Settings as S
    from newsletter.db import make_engine

    engine = make_engine(url)
    try:
        report = run(S(database_url=url, data_dir=data_dir), engine, [str(SEEDS)])
        queue.put(report.counts)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_two_processes_importing_at_once(engine: Engine, settings: Settings) -> None:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[object] = context.Queue()
    workers = [
        context.Process(
            target=_import_in_process, args=(settings.database_url, str(settings.data_dir), queue)
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert all(isinstance(r, dict) and r["failed"] == 0 for r in results), results
    assert sum(r["new"] for r in results if isinstance(r, dict)) == 3
    assert count(engine, ComparisonRow) == 3 and count(engine, ToolRow) == 4


# --- the CLI -------------------------------------------------------------------------------


def test_cli_import_reports_a_broken_file_and_imports_the_rest(env: dict[str, str], tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    shutil.copytree(SEEDS, pages)
    broken = pages / "003_broken.txt"
    lines = (SEEDS / "000_e904615563e0145b.txt").read_text(encoding="utf-8").split("\n")
    lines[18] = "seventy-five percent"  # line 19: the ship % of Axolotl
    broken.write_text("\n".join(lines), encoding="utf-8")

    runner = CliRunner()
    result = runner.invoke(app, ["comparisons", "import", str(pages)])
    assert result.exit_code == 1, result.output
    assert f"{broken}:19:" in result.stderr
    assert "ship percentage" in result.stderr
    assert "Traceback" not in result.output
    for column in ("new", "updated", "unchanged", "failed"):
        assert column in result.stdout

    listed = runner.invoke(app, ["comparisons", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.stdout)) == 3

    again = runner.invoke(app, ["comparisons", "import", *(str(p) for p in SEED_FILES)])
    assert again.exit_code == 0, again.output
    assert "│   0 │       0 │         3 │      0 │" in again.stdout

    table = runner.invoke(app, ["comparisons", "list"], env={"COLUMNS": "250"})
    assert table.exit_code == 0
    row = next(line for line in table.stdout.splitlines() if "axolotl-v0-16-vs-mistral-3-small-24b" in line)
    assert "Axolotl v0.16 vs Mistral 3 Small (24B)" in row and "Axolotl v0.16 / Mistral 3 Small (24B)" in row


def test_cli_import_missing_path(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["comparisons", "import", "does/not/exist.json"])
    assert result.exit_code == 1
    assert "does/not/exist.json: no such file" in result.stderr
