"""Layout variants of the seed pages: each one reads right or is refused at the right line.

Every ``tests/fixtures/pages/NAME.txt`` has ``expected/NAME.json``: either the whole parse
(``{"comparison": …}``) or the refusal (``{"error": {"line": …, "reason": …}}``). The
variants were written from seeds 000 (rich) and 001 (compact); each expected parse was
reviewed field by field against the seed's own parse.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine

from newsletter.catalog import import_locations, list_comparisons, list_tools
from newsletter.config import Settings
from newsletter.errors import SourceError
from newsletter.models import tool_key
from newsletter.sources import parse_file
from tests.conftest import SEEDS

PAGES = Path(__file__).parent / "fixtures" / "pages"
EXPECTED = PAGES / "expected"

# Each variant and what it changes (the classes of issue 14).
VARIANTS = {
    "rich_scorecard_before_decision": "sections reordered: scorecard before the Decision table",
    "rich_verdict_on_its_own_line": "`82/100` then `Ship` on the next line",
    "compact_reviewer_on_one_tool_only": "a reviewer took one tool, no placeholder: refused",
    "compact_reviewer_on_one_tool_marked": "a reviewer took one tool, `No panel take` in its place",
    "rich_reviewer_missing_a_take": "rich: a reviewer's second take missing, no placeholder: refused",
    "compact_missing_closing_quote": "one closing ” missing mid-scorecard: refused at that quote",
    "compact_missing_last_closing_quote": "the last closing ” missing before the footer: refused",
    "rich_missing_closing_quote": "rich page with quoted takes, one ” missing: refused",
    "rich_quoted": "rich page whose takes are in quotation marks",
    "compact_attribution_lines": "`— Builder` under each quote: personas read",
    "compact_attribution_inline": "`“…” — Builder` on the quote's line",
    "compact_attribution_mismatch": "tool B's quote attributed to another reviewer: refused",
    "rich_attribution_lines": "rich page with `— Builder` under each quote",
    "compact_no_heading_description_quote": "no scorecard heading, description opens with a quote: refused",
    "rich_no_heading_description_quote": "rich page without the heading, description opens with a quotation",
    "compact_description_quote_with_heading": "a description that is one whole quotation",
    "compact_community_two_lines": "community votes over two lines (`12 votes` / `83% ship`)",
    "rich_no_tagline_short_title": "no tagline, title with short names, no Decision header row",
    "compact_no_tagline_short_title": "compact: no tagline, title with a short name",
    "compact_no_tagline_no_title": "no tagline and a title naming no tool: refused",
    "rich_extra_persona": "a seventh reviewer (accents, emoji, CJK), table and % updated",
    "rich_extra_persona_table_not_updated": "an extra reviewer the Decision votes do not count: refused",
    "rich_missing_persona_table_not_updated": "a reviewer missing from the scorecard: refused",
    "rich_abstention_first": "the first reviewer abstains on tool A",
    "rich_crlf": "Windows line endings",
    "compact_extra_blank_lines": "extra blank lines, whitespace-only and NBSP lines",
    "compact_straight_quotes": 'straight "quotes"',
    "compact_two_paragraph_quote": "a quote over two paragraphs, closed once",
    "compact_two_paragraph_quote_reopened": "a second paragraph reopening “: refused (a missing ”)",
    "compact_no_category": "no category lines",
    "compact_percent_dash": "ship % shown as —",
    "rich_percent_disagrees_with_votes": "ship % against the Decision votes: refused at the %",
    "rich_verdict_disagrees_with_table": "a verdict the Decision votes do not count: refused",
    "rich_score_without_quote": "a score with no quote: refused where the quote should be",
    "rich_tool_named_after_category": "a tool named like its category: refused at the name",
    "rich_stray_text_in_scorecard": "a stray line after the last quote: refused, never appended",
    "rich_text_after_footer": "content after the site footer: refused",
    "rich_decision_row_missing_value": "a Decision row lost a value: refused at the row after it",
    "compact_title_only_in_breadcrumb": "the title only in the breadcrumb (the heading says something else)",
    "compact_price_above_community_label": "the price above 'Community': refused, not read as votes",
    "rich_price_below_entry_label": "the price under 'Entry': refused, not read as the description",
    "compact_category_above_intro": "the category above the intro: refused, not dropped as header",
}


def _expected(name: str) -> dict[str, object]:
    data = json.loads((EXPECTED / f"{name}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_every_fixture_is_listed_and_has_its_expectation() -> None:
    names = {path.stem for path in PAGES.glob("*.txt")}
    assert names == set(VARIANTS)
    assert {path.stem for path in EXPECTED.glob("*.json")} == names


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_reads_right_or_is_refused_at_its_line(name: str) -> None:
    path = PAGES / f"{name}.txt"
    expected = _expected(name)
    if "error" in expected:
        error = expected["error"]
        assert isinstance(error, dict)
        with pytest.raises(SourceError) as info:
            parse_file(path)
        assert (info.value.source, info.value.line, info.value.reason) == (
            str(path),
            error["line"],
            error["reason"],
        )
        assert str(info.value).startswith(f"{path}:{error['line']}: ")
    else:
        [comparison] = parse_file(path)
        assert comparison.model_dump(mode="json") == expected["comparison"]


def test_refusals_name_the_line_they_are_about() -> None:
    """Spot checks that the refused line is the one at fault, read from the file itself."""
    about = {
        "rich_score_without_quote": "No panel take",  # where Creator's quote should have been
        "rich_reviewer_missing_a_take": "Skeptic",
        "rich_percent_disagrees_with_votes": "80%",
        "rich_tool_named_after_category": "Developer Tools",
        "rich_stray_text_in_scorecard": "Read the full methodology →",
        "rich_extra_persona_table_not_updated": "Ship · 3 ship / 1 skip",
        "rich_decision_row_missing_value": "Best for",
        "compact_price_above_community_label": "Paid",
        "rich_price_below_entry_label": "Paid",
        "compact_category_above_intro": "Developer Tools",
    }
    for name, text in about.items():
        error = _expected(name)["error"]
        assert isinstance(error, dict)
        lines = (PAGES / f"{name}.txt").read_text(encoding="utf-8").split("\n")
        assert lines[int(error["line"]) - 1] == text, name


def test_importing_refused_variants_reports_them_and_imports_the_rest(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    shutil.copy(SEEDS / "000_e904615563e0145b.txt", pages / "000.txt")
    refused = [
        "rich_tool_named_after_category",
        "rich_stray_text_in_scorecard",
        "compact_missing_closing_quote",
    ]
    for name in refused:
        shutil.copy(PAGES / f"{name}.txt", pages / f"{name}.txt")
    report = import_locations(settings, engine, [str(pages)])
    assert [(Path(f.origin).stem, f.line) for f in report.failed] == sorted(
        (name, _line(name)) for name in refused
    )
    assert len(report.new) == 1
    assert [c.title for c in list_comparisons(engine)] == [
        "Axolotl v0.16 vs Mistral 8x24B Mixture-of-Experts"
    ]
    # Nothing of a refused page reached the catalog: no tool named after a category.
    assert tool_key("Developer Tools") not in {tool.key for tool in list_tools(engine)}
    assert len(list_tools(engine)) == 2


def _line(name: str) -> int:
    error = _expected(name)["error"]
    assert isinstance(error, dict)
    return int(error["line"])
