"""Sources: the site's pages (both layouts), JSON/YAML files, directories, the CLI's parse/schema."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import Settings
from newsletter.errors import SourceError
from newsletter.models import Comparison
from newsletter.sources import iter_source_files, parse_file, parse_page, read_locations
from tests.conftest import SEEDS

SEED_000 = SEEDS / "000_e904615563e0145b.txt"
SEED_001 = SEEDS / "001_f8f0f459cc74e2f8.txt"
SEED_002 = SEEDS / "002_8dda75aabdb20a0c.txt"
AXOLOTL_TAGLINE = "15x faster MoE+LoRA fine-tuning with 40x memory reduction"


def parse_seed(path: Path) -> Comparison:
    return parse_page(path.read_text(encoding="utf-8"), source=str(path))


# --- the seeds: exact values -----------------------------------------------------------


def test_rich_seed_000_tools() -> None:
    comparison = parse_seed(SEED_000)
    assert comparison.title == "Axolotl v0.16 vs Mistral 8x24B Mixture-of-Experts"
    assert comparison.category == "Developer Tools"
    axolotl, mistral = comparison.tools

    assert axolotl.name == "Axolotl v0.16"
    assert axolotl.tagline == AXOLOTL_TAGLINE
    assert axolotl.category == "Developer Tools"
    assert axolotl.ship_pct == 75
    assert axolotl.community is None
    assert axolotl.pricing == "Paid"
    assert axolotl.pricing_detail == "Open Source"
    assert axolotl.best_for == AXOLOTL_TAGLINE
    assert axolotl.description is not None
    assert axolotl.description.startswith("Axolotl is the go-to open-source fine-tuning framework")
    assert axolotl.description.endswith(
        "from a new model release to a fine-tuned, production-ready custom variant."
    )
    assert (axolotl.panel_verdict, axolotl.panel_ship, axolotl.panel_skip) == ("ship", 3, 1)

    assert mistral.name == "Mistral 8x24B Mixture-of-Experts"
    assert mistral.tagline == "Open-weight sparse MoE model: 141B total, 39B active per pass"
    assert mistral.ship_pct == 100
    assert mistral.community is None
    assert mistral.pricing == "Free"
    assert mistral.pricing_detail == (
        "Free / Open-weight (Apache 2.0) — self-host or access via Mistral API (pay-per-token)"
    )
    assert mistral.best_for == "Open-weight sparse MoE model: 141B total, 39B active per pass"
    assert mistral.description is not None
    assert mistral.description.startswith("Mistral AI has released Mistral 8x24B (Mixtral 8x22B)")
    assert mistral.description.endswith("fine-tune, and commercialize without restriction.")
    assert (mistral.panel_verdict, mistral.panel_ship, mistral.panel_skip) == ("ship", 4, 0)


def test_rich_seed_000_scorecard() -> None:
    axolotl, mistral = parse_seed(SEED_000).tools
    assert [(r.persona, r.score, r.verdict) for r in axolotl.reviews] == [
        ("Builder", 80, "ship"),
        ("Skeptic", 80, "ship"),
        ("Futurist", 80, "ship"),
        ("Creator", 45, "skip"),
    ]
    assert [(r.persona, r.score, r.verdict) for r in mistral.reviews] == [
        ("Builder", 88, "ship"),
        ("Skeptic", 82, "ship"),
        ("Futurist", 85, "ship"),
        ("Founder", 78, "ship"),
    ]
    assert axolotl.reviews[0].quote.startswith("40x memory reduction on MoE+LoRA is not a rounding error")
    assert axolotl.reviews[0].quote.endswith("Immediate upgrade for any ML pipeline.")
    assert axolotl.reviews[3].quote.endswith("the developers building the tools creators will use.")
    assert mistral.reviews[0].quote.startswith("The primitive is clean: a 141B sparse MoE transformer")
    assert mistral.reviews[3].quote.startswith("The buyer is the ML platform team")
    # Site chrome after the scorecard is not part of the last quote.
    for review in axolotl.reviews + mistral.reviews:
        assert "Bookmarks" not in review.quote and "Weekly AI Tool Verdicts" not in review.quote
        assert "\n" not in review.quote


@pytest.mark.parametrize(
    ("path", "title", "other", "other_tagline", "other_pct", "other_description_end"),
    [
        (
            SEED_001,
            "Axolotl v0.16 vs Mistral 3 8B & 70B Instruct (Open Source)",
            "Mistral 3 8B & 70B Instruct (Open Source)",
            "Apache 2.0 open-weight models that punch above their size class",
            75,
            "including chat, code, and instruction-following tasks.",
        ),
        (
            SEED_002,
            "Axolotl v0.16 vs Mistral 3 Small (24B)",
            "Mistral 3 Small (24B)",
            "24B open-weight model that punches above its size at the edge",
            100,
            "while remaining small enough for edge hardware.",
        ),
    ],
)
def test_compact_seeds(
    path: Path, title: str, other: str, other_tagline: str, other_pct: int, other_description_end: str
) -> None:
    comparison = parse_seed(path)
    assert comparison.title == title
    assert comparison.category == "Developer Tools"
    axolotl, mistral = comparison.tools
    assert (axolotl.name, axolotl.tagline, axolotl.ship_pct) == ("Axolotl v0.16", AXOLOTL_TAGLINE, 75)
    assert (mistral.name, mistral.tagline, mistral.ship_pct) == (other, other_tagline, other_pct)
    assert (axolotl.pricing, mistral.pricing) == ("Paid", "Free")
    assert axolotl.community is None and mistral.community is None
    assert axolotl.pricing_detail is None and mistral.pricing_detail is None
    assert axolotl.description is not None and mistral.description is not None
    assert axolotl.description.startswith("Axolotl is the go-to open-source fine-tuning framework")
    assert mistral.description.endswith(other_description_end)
    assert len(axolotl.reviews) == 4 and len(mistral.reviews) == 4
    for review in axolotl.reviews + mistral.reviews:
        assert (review.persona, review.score, review.verdict) == (None, None, None)
        assert review.quote[0] not in "“”" and review.quote[-1] not in "“”"
    # Quotes alternate tool A, tool B in page order.
    assert axolotl.reviews[0].quote.startswith("40x memory reduction on MoE+LoRA")
    assert axolotl.reviews[1].quote.startswith("The numbers sound impressive")
    assert axolotl.reviews[3].quote.startswith("Fine-tuning frameworks are deeply in developer territory")
    assert mistral.reviews[0].quote.startswith("The primitive")
    assert mistral.reviews[3].quote.startswith(("The weights are free", "The buyer here isn't a developer"))


def test_the_seeds_name_four_distinct_tools() -> None:
    # Six tool mentions: Axolotl v0.16 is in all three pages, each with a different Mistral model.
    names = [tool.name for path in (SEED_000, SEED_001, SEED_002) for tool in parse_seed(path).tools]
    assert names.count("Axolotl v0.16") == 3
    assert sorted(set(names)) == [
        "Axolotl v0.16",
        "Mistral 3 8B & 70B Instruct (Open Source)",
        "Mistral 3 Small (24B)",
        "Mistral 8x24B Mixture-of-Experts",
    ]


# --- pages the parser has never seen ---------------------------------------------------------


@dataclass
class Take:
    score: int
    verdict: str
    quote: str


@dataclass
class FakeTool:
    name: str
    category: str
    tagline: str
    pct: int | None
    pricing: str
    description: list[str]
    community: str | None = None
    detail: str = "Usage-based"
    best_for: str = "teams"
    ship: int = 2
    skip: int = 1


@dataclass
class FakePage:
    a: FakeTool
    b: FakeTool
    personas: list[tuple[str, Take | None, Take | None]] = field(default_factory=list)
    decision: bool = True
    blank_lines: bool = True


def render_rich(page: FakePage) -> str:
    lines = [
        f"Compare/{page.a.name} vs {page.b.name}",
        "AI tool comparison",
        f"{page.a.name} vs {page.b.name}",
    ]
    lines.append("Which one should you ship with? Here is the side-by-side panel verdict.")
    for tool in (page.a, page.b):
        lines += [tool.name[0].upper(), tool.category, tool.name, tool.tagline, "Ship"]
        lines += [f"{tool.pct}%" if tool.pct is not None else "—", "Panel ship"]
        if tool.community is not None:
            lines.append(tool.community)
        lines += ["Community", tool.pricing, "Entry", *tool.description]
    if page.decision:
        lines += ["Decision", page.a.name, page.b.name]
        lines += ["Panel verdict"] + [f"Ship · {t.ship} ship / {t.skip} skip" for t in (page.a, page.b)]
        lines += ["Community"] + [t.community or "No community votes yet" for t in (page.a, page.b)]
        lines += ["Pricing", page.a.detail, page.b.detail]
        lines += ["Best for", page.a.best_for, page.b.best_for]
        lines += ["Category", page.a.category, page.b.category]
    lines.append("Reviewer scorecard")
    for persona, take_a, take_b in page.personas:
        lines.append(persona)
        for take in (take_a, take_b):
            if take is None:
                lines.append("No panel take")
            else:
                lines += [f"{take.score}/100 · {take.verdict}", take.quote]
    lines += [
        "Weekly AI Tool Verdicts",
        "Get the next comparison in your inbox",
        "Bookmarks",
        "No bookmarks yet",
    ]
    return ("\n\n" if page.blank_lines else "\n").join(lines)


def render_compact(page: FakePage) -> str:
    lines = ["AI tool comparison", f"{page.a.name} vs {page.b.name}", "Which one should you ship with?"]
    for tool in (page.a, page.b):
        lines += [tool.category, tool.name, tool.tagline, f"{tool.pct}%", "Panel ship"]
        lines += [tool.community or "—", "Community", tool.pricing, "Entry", *tool.description]
    lines.append("Reviewer scorecard")
    for _persona, take_a, take_b in page.personas:
        for take in (take_a, take_b):
            if take is not None:
                lines.append(f"“{take.quote}”")
    lines += ["Weekly AI Tool Verdicts", "Get the next comparison in your inbox"]
    return "\n".join(lines)


def _tools() -> tuple[FakeTool, FakeTool]:
    a = FakeTool(
        name="Quillstream 2.1",
        category="Writing Assistants",
        tagline="Drafts release notes from your merged pull requests",
        pct=33,
        pricing="Freemium",
        description=["Quillstream reads your repository history.", "It then writes notes people read."],
        community="12 ship & 3 skip",
        detail="$9/seat/month after 100 drafts",
        best_for="Small product teams",
        ship=1,
        skip=2,
    )
    b = FakeTool(
        name="Zephyr Voice Cloner",
        category="Writing Assistants",
        tagline="Clone a voice from 30 seconds of audio",
        pct=0,
        pricing="Paid",
        description=["Zephyr turns short samples into a reusable voice model."],
        detail="From $29/month",
        best_for="Podcasters",
        ship=0,
        skip=3,
    )
    return a, b


def _votes_from(page: FakePage) -> FakePage:
    """Give each tool the Decision votes and ship % its takes add up to (the parser checks them)."""
    for side, tool in enumerate((page.a, page.b)):
        takes = [p[1 + side] for p in page.personas if p[1 + side] is not None]
        tool.ship = sum(1 for take in takes if take is not None and take.verdict == "ship")
        tool.skip = len(takes) - tool.ship
        if tool.pct is not None and takes:
            tool.pct = round(100 * tool.ship / len(takes))
    return page


SIX_PERSONAS = [
    ("Operator", Take(61, "ship", "Runs fine in our stack."), Take(12, "skip", "Latency kills it.")),
    ("Lawyer", None, Take(30, "skip", "Voice consent is a minefield.")),
    ("Designer", Take(91, "ship", "Clean output, no fuss."), None),
    ("Teacher", Take(55, "skip", "Students would misuse it."), Take(5, "skip", "No.")),
    ("Investor", Take(70, "ship", "A wedge into a big market."), Take(44, "skip", "Commodity.")),
    ("Nurse", None, Take(100, "ship", "Gave a patient her voice back.")),
]


def test_unseen_rich_page_with_six_other_personas() -> None:
    a, b = _tools()
    comparison = parse_page(render_rich(_votes_from(FakePage(a, b, SIX_PERSONAS))), source="unseen.txt")
    assert comparison.title == "Quillstream 2.1 vs Zephyr Voice Cloner"
    assert comparison.category == "Writing Assistants"
    qa, zb = comparison.tools
    assert (qa.name, qa.tagline, qa.ship_pct, qa.pricing) == (a.name, a.tagline, 75, "Freemium")
    assert (zb.name, zb.tagline, zb.ship_pct, zb.pricing) == (b.name, b.tagline, 20, "Paid")
    assert qa.community == "12 ship & 3 skip" and zb.community is None
    assert qa.description == "Quillstream reads your repository history.\n\nIt then writes notes people read."
    assert zb.description == "Zephyr turns short samples into a reusable voice model."
    assert (qa.pricing_detail, zb.pricing_detail) == (a.detail, b.detail)
    assert (qa.best_for, zb.best_for) == ("Small product teams", "Podcasters")
    assert (qa.panel_ship, qa.panel_skip, zb.panel_ship, zb.panel_skip) == (3, 1, 1, 4)
    assert [x.persona for x in qa.abstentions] == ["Lawyer", "Nurse"]
    assert [x.persona for x in zb.abstentions] == ["Designer"]
    expected_a = [(p, t.score, t.verdict, t.quote) for p, t, _ in SIX_PERSONAS if t is not None]
    expected_b = [(p, t.score, t.verdict, t.quote) for p, _, t in SIX_PERSONAS if t is not None]
    assert [(r.persona, r.score, r.verdict, r.quote) for r in qa.reviews] == expected_a
    assert [(r.persona, r.score, r.verdict, r.quote) for r in zb.reviews] == expected_b


def test_unseen_rich_page_without_decision_table_or_blank_lines() -> None:
    a, b = _tools()
    b.category = "Audio"
    personas = SIX_PERSONAS[:3]
    text = render_rich(_votes_from(FakePage(a, b, personas, decision=False, blank_lines=False)))
    qa, zb = parse_page(text, source="x.txt").tools
    assert (qa.category, zb.category) == ("Writing Assistants", "Audio")
    assert qa.pricing_detail is None and qa.best_for is None and qa.panel_ship is None
    assert qa.panel_verdict == "ship"  # from the card's label when there is no table
    assert zb.description == "Zephyr turns short samples into a reusable voice model."
    assert [r.persona for r in qa.reviews] == ["Operator", "Designer"]
    assert [r.persona for r in zb.reviews] == ["Operator", "Lawyer"]
    assert zb.reviews[1].score == 30


def test_unseen_compact_page() -> None:
    a, b = _tools()
    b.pct = 67
    personas = [
        (p, ta or Take(1, "ship", f"{p} on A"), tb or Take(1, "ship", f"{p} on B"))
        for p, ta, tb in SIX_PERSONAS
    ]
    comparison = parse_page(render_compact(FakePage(a, b, personas)), source="compact.txt")
    qa, zb = comparison.tools
    assert (qa.name, zb.name) == (a.name, b.name)
    assert (qa.ship_pct, zb.ship_pct) == (33, 67)
    assert qa.community == "12 ship & 3 skip" and zb.community is None
    assert [r.quote for r in qa.reviews] == [ta.quote for _, ta, _ in personas]
    assert [r.quote for r in zb.reviews] == [tb.quote for _, _, tb in personas]
    assert all(r.persona is None and r.score is None for r in qa.reviews + zb.reviews)


def test_title_that_does_not_name_the_tools_falls_back_to_card_positions() -> None:
    a, b = _tools()
    text = render_compact(FakePage(a, b, [])).replace(f"{a.name} vs {b.name}", "This week's head to head")
    comparison = parse_page(text, source="x.txt")
    assert [t.name for t in comparison.tools] == [a.name, b.name]
    assert [t.tagline for t in comparison.tools] == [a.tagline, b.tagline]
    assert comparison.title == f"{a.name} vs {b.name}"


# --- pages that cannot be read: SourceError with file and line ---------------------------


def _seed_lines() -> list[str]:
    return SEED_000.read_text(encoding="utf-8").split("\n")


def test_bad_ship_percentage_names_its_line() -> None:
    lines = _seed_lines()
    assert lines[40] == "100%"
    lines[40] = "a lot"
    with pytest.raises(SourceError) as info:
        parse_page("\n".join(lines), source="bad.txt")
    assert (info.value.source, info.value.line) == ("bad.txt", 41)
    assert str(info.value).startswith("bad.txt:41: ")


def test_score_over_100_names_its_line() -> None:
    lines = _seed_lines()
    assert lines[87] == "82/100 · ship"
    lines[87] = "182/100 · ship"
    with pytest.raises(SourceError) as info:
        parse_page("\n".join(lines), source="bad.txt")
    assert info.value.line == 88


def test_third_tool_card_is_an_error() -> None:
    lines = _seed_lines()
    lines[41:41] = ["Panel ship"]  # now line 42; Mistral's own label moves to line 44
    with pytest.raises(SourceError, match="third") as info:
        parse_page("\n".join(lines), source="bad.txt")
    assert info.value.line == 44


@pytest.mark.parametrize("text", ["", "\n\n", "just some prose\nwith two lines"])
def test_not_a_page(text: str) -> None:
    with pytest.raises(SourceError) as info:
        parse_page(text, source="empty.txt")
    assert info.value.source == "empty.txt" and info.value.line is not None and info.value.line >= 1


def test_broken_decision_row() -> None:
    lines = _seed_lines()
    assert lines[56] == "Ship · 3 ship / 1 skip"
    lines[56] = "Maybe"
    with pytest.raises(SourceError) as info:
        parse_page("\n".join(lines), source="bad.txt")
    assert info.value.line == 57


# --- structured files -----------------------------------------------------------------------


def _structured(title: str = "Alpha vs Beta") -> dict[str, object]:
    return {
        "title": title,
        "category": "Coding",
        "published_at": "2026-03-02T09:00:00Z",
        "tools": [
            {
                "name": "Alpha",
                "ship_pct": 80,
                "reviews": [{"persona": "Builder", "score": 90, "verdict": "ship", "quote": "Good."}],
            },
            {"name": "Beta", "ship_pct": 20, "pricing": "Free"},
        ],
    }


@pytest.mark.parametrize("shape", ["object", "list", "wrapped"])
@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_structured_files(tmp_path: Path, shape: str, suffix: str) -> None:
    one, two = _structured(), _structured("Gamma vs Delta")
    data: object = {"object": one, "list": [one, two], "wrapped": {"comparisons": [one, two]}}[shape]
    path = tmp_path / f"c{suffix}"
    path.write_text(json.dumps(data) if suffix == ".json" else yaml.safe_dump(data), encoding="utf-8")
    comparisons = parse_file(path)
    assert [c.title for c in comparisons] == (
        ["Alpha vs Beta"] if shape == "object" else ["Alpha vs Beta", "Gamma vs Delta"]
    )
    first = comparisons[0]
    assert first.published_at is not None and first.published_at.isoformat() == "2026-03-02T09:00:00+00:00"
    assert first.tools[0].reviews[0].score == 90 and first.tools[1].pricing == "Free"


def test_json_validation_error_names_the_line(tmp_path: Path) -> None:
    data = [_structured(), _structured("Gamma vs Delta")]
    data[1]["tools"][1]["ship_pct"] = 140  # type: ignore[index]
    path = tmp_path / "bad.json"
    text = json.dumps(data, indent=2)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourceError) as info:
        parse_file(path)
    expected = next(i for i, line in enumerate(text.splitlines(), 1) if "140" in line)
    assert (info.value.source, info.value.line) == (str(path), expected)
    assert "1.tools.1.ship_pct" in str(info.value)


def test_invalid_json_and_yaml_name_the_line(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{\n  "title": "x",\n  "tools": [,]\n}', encoding="utf-8")
    with pytest.raises(SourceError) as info:
        parse_file(bad_json)
    assert info.value.line == 3
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("title: x\ntools:\n  - name: [unclosed\n", encoding="utf-8")
    with pytest.raises(SourceError) as info:
        parse_file(bad_yaml)
    assert info.value.line is not None and info.value.line >= 3


def test_structured_example_sample_parses() -> None:
    comparisons = parse_file(SEEDS.parent / "structured" / "example.json")
    assert comparisons and all(isinstance(c, Comparison) for c in comparisons)
    assert parse_file(SEEDS.parent / "structured" / "example.yaml")


# --- directories and locations ------------------------------------------------------------


def test_directory_reads_supported_files_recursively_and_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "b" / "page.txt").write_text(SEED_001.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "a.json").write_text(json.dumps(_structured()), encoding="utf-8")
    (tmp_path / "c.yml").write_text(yaml.safe_dump(_structured("Gamma vs Delta")), encoding="utf-8")
    (tmp_path / ".hidden" / "x.txt").write_text("ignored", encoding="utf-8")
    (tmp_path / ".dot.json").write_text("ignored", encoding="utf-8")
    (tmp_path / "notes.csv").write_text("ignored", encoding="utf-8")
    assert [p.relative_to(tmp_path).as_posix() for p in iter_source_files(tmp_path)] == [
        "a.json",
        "b/page.txt",
        "c.yml",
    ]


def test_read_locations_reports_bad_files_and_reads_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "pages"
    folder.mkdir()
    for seed in (SEED_000, SEED_001):
        (folder / seed.name).write_text(seed.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "broken.txt").write_text("Compare/x\nnothing here\n", encoding="utf-8")
    report = read_locations([str(folder), str(SEED_002), str(tmp_path / "missing.json")], Settings())
    assert [item.origin for item in report.items] == [
        str(folder / SEED_000.name),
        str(folder / SEED_001.name),
        str(SEED_002),
    ]
    assert [(e.source, e.line) for e in report.errors] == [
        (str(folder / "broken.txt"), 2),
        (str(tmp_path / "missing.json"), None),
    ]


def test_not_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"line one\nline \xe9two\n")
    with pytest.raises(SourceError) as info:
        parse_file(path)
    assert info.value.line == 2


# --- CLI: parse and schema ------------------------------------------------------------------


def test_cli_parse_prints_the_comparison_as_json(sqlite_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["comparisons", "parse", str(SEED_000)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["title"] == "Axolotl v0.16 vs Mistral 8x24B Mixture-of-Experts"
    assert data["category"] == "Developer Tools"
    assert [t["name"] for t in data["tools"]] == ["Axolotl v0.16", "Mistral 8x24B Mixture-of-Experts"]
    axolotl = data["tools"][0]
    for key in ("tagline", "ship_pct", "community", "pricing", "description", "reviews"):
        assert key in axolotl
    assert axolotl["ship_pct"] == 75 and axolotl["community"] is None and axolotl["pricing"] == "Paid"
    assert axolotl["reviews"][3] == {
        "persona": "Creator",
        "score": 45,
        "verdict": "skip",
        "quote": axolotl["reviews"][3]["quote"],
    }


def test_cli_parse_list_and_error(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    path.write_text(json.dumps([_structured(), _structured("Gamma vs Delta")]), encoding="utf-8")
    result = CliRunner().invoke(app, ["comparisons", "parse", str(path)])
    assert result.exit_code == 0
    assert [c["title"] for c in json.loads(result.stdout)] == ["Alpha vs Beta", "Gamma vs Delta"]

    bad = tmp_path / "bad.txt"
    bad.write_text("hello\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["comparisons", "parse", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:1" in result.stderr
    assert "Traceback" not in result.output


def test_cli_schema_is_the_models_json_schema(sqlite_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["comparisons", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == Comparison.model_json_schema()
    assert {"title", "tools"} <= set(schema["required"])


def test_unknown_numbers_and_a_quoted_paragraph_in_a_description() -> None:
    a, b = _tools()
    a.pct = None
    b.description = ["Zephyr turns short samples into a voice.", "“It sounds like me,” one tester said."]
    personas = SIX_PERSONAS[:2]
    text = render_rich(_votes_from(FakePage(a, b, personas))).replace("Ship · 1 ship / 0 skip", "—")
    qa, zb = parse_page(text, source="x.txt").tools
    assert qa.ship_pct is None and zb.ship_pct == 0
    assert (qa.panel_ship, qa.panel_skip, qa.panel_verdict) == (None, None, "ship")
    assert (zb.panel_ship, zb.panel_skip) == (0, 2)
    assert (
        zb.description == "Zephyr turns short samples into a voice.\n\n“It sounds like me,” one tester said."
    )
    assert [r.persona for r in zb.reviews] == ["Operator", "Lawyer"]


def test_compact_page_with_an_odd_number_of_quotes_is_refused_at_the_last_quote() -> None:
    """Which tool a missing quote was about cannot be known: refused, never guessed."""
    a, b = _tools()
    personas = [
        ("x", Take(1, "ship", "First on A."), Take(1, "ship", "First on B.")),
        ("y", Take(1, "ship", "Last."), None),
    ]
    text = render_compact(FakePage(a, b, personas))
    with pytest.raises(SourceError, match="odd number") as info:
        parse_page(text, source="x.txt")
    assert info.value.line == text.split("\n").index("“Last.”") + 1


def _as_markdown(text: str) -> str:
    """Seed 000 as an editor would save it in Markdown: same content, Markdown structure."""
    lines = [line for line in text.splitlines() if line.strip()]
    personas = {"Builder", "Skeptic", "Futurist", "Creator", "Founder"}
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line == "Decision":
            tool_a, tool_b = lines[index + 1], lines[index + 2]
            out += ["## Decision", "", f"| | {tool_a} | {tool_b} |", "|---|:---:|---:|"]
            index += 3
            while lines[index] != "Reviewer scorecard":
                label, value_a, value_b = lines[index : index + 3]
                out.append(f"| **{label}** | {value_a} | {value_b} |")
                index += 3
            out.append("")
            continue
        if line == "Reviewer scorecard" or line in personas:
            out.append(("## " if line == "Reviewer scorecard" else "### ") + line)
        elif "/100" in line:
            out.append(f"**{line}**")
        elif len(line) > 80 and out and out[-1].startswith("**"):
            out.append(f"> {line}")  # a reviewer's quote
        elif " vs " in line and not line.startswith("Compare"):
            out.append(f"# {line}")
        else:
            out.append(line)
        out.append("")
        index += 1
    return "\n".join(out)


def test_a_page_saved_as_markdown_reads_like_the_text(tmp_path: Path) -> None:
    markdown = tmp_path / "000.md"
    markdown.write_text(_as_markdown(SEED_000.read_text(encoding="utf-8")), encoding="utf-8")
    assert "| **Panel verdict** |" in markdown.read_text(encoding="utf-8")
    [from_markdown] = parse_file(markdown)
    assert from_markdown.model_dump() == parse_seed(SEED_000).model_dump()


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:text/html,<b>hi</b>", "ftp://example.com/x", "//x.io"]
)
def test_a_comparison_url_must_be_http_or_https(tmp_path: Path, url: str) -> None:
    data = _structured()
    data["url"] = url
    path = tmp_path / "bad-url.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    with pytest.raises(SourceError, match=r"^.*bad-url\.json:\d+: url: .*http:// or https://") as info:
        parse_file(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    assert info.value.line is not None and '"url"' in lines[info.value.line - 1]


def test_an_https_comparison_url_is_kept(tmp_path: Path) -> None:
    data = _structured()
    data["url"] = "https://example.com/compare/alpha-vs-beta?ref=señal"
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert parse_file(path)[0].url == "https://example.com/compare/alpha-vs-beta?ref=señal"


def test_a_file_over_the_size_limit_is_refused_and_the_rest_read(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "000.txt").write_text(SEED_000.read_text(encoding="utf-8"), encoding="utf-8")
    huge = pages / "001_huge.txt"
    with huge.open("wb") as handle:
        handle.truncate(50_000_000)  # sparse: 50 MB that costs no disk
    report = read_locations([str(pages)], Settings())
    assert [item.comparison.tools[0].name for item in report.items] == ["Axolotl v0.16"]
    [error] = report.errors
    assert (error.source, error.line) == (str(huge), None)
    assert error.reason == "larger than 5,000,000 bytes (NEWSLETTER_MAX_SOURCE_BYTES): not read"


def test_the_size_limit_is_a_setting(tmp_path: Path) -> None:
    path = tmp_path / "page.txt"
    path.write_text(SEED_000.read_text(encoding="utf-8"), encoding="utf-8")
    size = path.stat().st_size
    assert parse_file(path, max_bytes=size)[0].title.startswith("Axolotl")
    with pytest.raises(SourceError, match=f"larger than {size - 1:,} bytes"):
        parse_file(path, max_bytes=size - 1)
