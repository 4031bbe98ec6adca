"""Round trip: a generated comparison, written as a page in either layout (and its
variations), parses back to exactly what that layout can carry; where a page cannot
carry the data (a compact page that drops a take without a placeholder) the parser
refuses it at a line of the scorecard."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from newsletter.errors import SourceError
from newsletter.models import Abstention, Comparison, Review, ToolEntry, tool_key
from newsletter.sources import parse_page
from newsletter.sources.page_tokens import SECTION_WORDS, is_empty
from tests.support.page_writer import Layout, carried, write

# A small budget: the suite must stay fast; each example parses one page (~1 ms).
ROUND_TRIP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORDS = [
    "fast",
    "naïve",
    "café",
    "déjà",
    "東京",
    "模型",
    "🚀",
    "l’équipe",
    "don't",
    "über",
    "Ωmega",
    "R&D",
    "GPU",
    "40x",
    "open-weight",
    "zero-shot",
    "prompts",
    "agents",
    "señal",
    "Zürich",
    "traces",
    "latency",
    "—",
    "$20K",
    "O’Neil",
]
NAME_WORDS = [
    "Axolotl",
    "Quill",
    "Zephyr",
    "東京",
    "Ñandú",
    "Cursor",
    "Émile",
    "3D",
    "Llama",
    "Řeka",
    "Ωmega",
    "Gizmo",
]
PERSONAS = [
    "Builder",
    "Skeptic",
    "Futurist",
    "Creator",
    "Founder",
    "Économiste",
    "設計者",
    "Ops 🚀",
    "Teacher O’Neil",
]


def _words(low: int, high: int) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(WORDS), min_size=low, max_size=high).map(" ".join)


def _not_empty(text: str) -> bool:
    return not is_empty(text)  # "—" alone is how a page says "no value"


def _sentence() -> st.SearchStrategy[str]:
    plain = _words(2, 8).map(lambda text: text[0].upper() + text[1:] + ".")
    # A paragraph may open with a quotation that the sentence goes on after.
    quoted = st.tuples(_words(1, 3), _words(1, 4)).map(lambda p: f"“{p[0]},” {p[1]} said.")
    return plain | quoted


def _paragraphs(most: int) -> st.SearchStrategy[str]:
    later = _words(2, 8).map(lambda text: text[0].upper() + text[1:] + ".")
    return st.tuples(_sentence(), st.lists(later, max_size=most - 1)).map(
        lambda p: "\n\n".join([p[0], *p[1]])
    )


_name = st.one_of(
    st.tuples(
        st.sampled_from(NAME_WORDS), st.sampled_from(["", " v0.16", " 2.1", " (24B)", " & Co", " Pro+"])
    ).map("".join),
    st.tuples(st.sampled_from(NAME_WORDS), st.sampled_from(NAME_WORDS)).map(lambda p: f"{p[0]} vs {p[1]}"),
)
_category = st.none() | st.sampled_from(["Developer Tools", "Écriture", "音声 AI", "Agents & Ops"])
_take = st.none() | st.tuples(st.integers(0, 100), st.sampled_from(["ship", "skip"]), _paragraphs(2))


@st.composite
def comparisons(draw: st.DrawFn) -> tuple[Comparison, list[str]]:
    """A comparison the page can carry, and its reviewers in page order."""
    names = draw(st.lists(_name, min_size=2, max_size=2, unique_by=tool_key))
    categories = [draw(_category), draw(_category)]
    reserved = SECTION_WORDS | {tool_key(c) for c in categories if c}
    names = [name for name in names if tool_key(name) not in reserved]
    if len(names) < 2 or tool_key(f"{names[0]} vs {names[1]}") in {tool_key(n) for n in names}:
        names = ["Axolotl v0.16", "Zephyr 2.1"]
    personas = draw(st.lists(st.sampled_from(PERSONAS), min_size=1, max_size=7, unique=True))
    takes = [(persona, draw(_take), draw(_take)) for persona in personas]
    tools = []
    for side, (name, category) in enumerate(zip(names, categories, strict=True)):
        reviews = [
            Review(persona=persona, score=take[0], verdict=take[1], quote=take[2])
            for persona, *pair in takes
            if (take := pair[side]) is not None
        ]
        abstentions = [Abstention(persona=persona) for persona, *pair in takes if pair[side] is None]
        ship = sum(1 for review in reviews if review.verdict == "ship")
        skip = len(reviews) - ship
        if reviews:
            pct = draw(st.none() | st.just(round(100 * ship / len(reviews))))
        else:
            pct = draw(st.none() | st.integers(0, 100))
        tools.append(
            ToolEntry(
                name=name,
                tagline=draw(st.none() | _words(2, 6)),
                category=category,
                ship_pct=pct,
                community=draw(
                    st.none() | st.sampled_from(["12 votes · 83% ship", "1,204 votes", "3 ship & 1 skip"])
                ),
                pricing=draw(st.none() | st.sampled_from(["Free", "Paid", "Freemium", "$9/mo"])),
                pricing_detail=draw(st.none() | _words(1, 5).filter(_not_empty)),
                description=draw(st.none() | _paragraphs(3)),
                best_for=draw(st.none() | _words(1, 4).filter(_not_empty)),
                panel_verdict=draw(st.none() | st.just("ship" if ship >= skip else "skip")),
                panel_ship=ship,
                panel_skip=skip,
                reviews=reviews,
                abstentions=abstentions,
            )
        )
    title = f"{names[0]} vs {names[1]}"
    return Comparison(title=title, category=None, tools=tools), personas


layouts = st.builds(
    Layout,
    rich=st.booleans(),
    decision=st.booleans(),
    scorecard_first=st.booleans(),
    scorecard_heading=st.booleans(),
    verdict_own_line=st.booleans(),
    quoted_takes=st.booleans(),
    attributions=st.booleans(),
    straight_quotes=st.booleans(),
    initials=st.booleans(),
    split_community=st.booleans(),
    blank_lines=st.booleans(),
    crlf=st.booleans(),
)


@ROUND_TRIP
@given(comparisons(), layouts)
def test_a_written_page_parses_back_to_what_its_layout_carries(
    drawn: tuple[Comparison, list[str]], layout: Layout
) -> None:
    comparison, personas = drawn
    text = write(comparison, layout, personas)
    parsed = parse_page(text, source="written.txt")
    assert parsed.model_dump() == carried(comparison, layout).model_dump()


@ROUND_TRIP
@given(comparisons(), st.booleans(), st.data())
def test_a_compact_page_missing_one_take_is_refused_in_its_scorecard(
    drawn: tuple[Comparison, list[str]], blank_lines: bool, data: st.DataObject
) -> None:
    layout = Layout(rich=False, blank_lines=blank_lines)
    comparison, personas = drawn
    lines = write(comparison, layout, personas).split("\n")
    whole = [n for n, line in enumerate(lines) if line.startswith("“") and line.endswith("”")]
    takes = whole + [n for n, line in enumerate(lines) if line == "No panel take"]
    assume(takes)  # every take may span paragraphs: none to drop whole
    dropped = data.draw(st.sampled_from(takes))
    del lines[dropped]
    try:
        parse_page("\n".join(lines), source="odd.txt")
    except SourceError as error:
        assert error.line is not None
        scorecard = lines.index("Reviewer scorecard") + 1
        assert scorecard < error.line <= len(lines)
        assert "odd number" in error.reason
    else:
        raise AssertionError(f"a page with one take dropped (line {dropped + 1}) was read")


def test_a_tagline_that_reads_like_a_title_name_is_not_taken_for_the_name() -> None:
    """Found by hypothesis: tool B "Axolotl vs 東京" makes "東京" a name the title allows, and
    tool A's tagline "東京 🚀" reduces to it. The card's name is the line that makes the title
    with the other card's name; before, the tagline became the name and the name a category."""
    reviews = [Review(persona="Builder", score=80, verdict="ship", quote="Fast agents.")]
    tools = [
        ToolEntry(name="Axolotl", tagline="東京 🚀", panel_ship=1, panel_skip=0, reviews=reviews),
        ToolEntry(name="Axolotl vs 東京", tagline=None, panel_ship=1, panel_skip=0, reviews=reviews),
    ]
    comparison = Comparison(title="Axolotl vs Axolotl vs 東京", category=None, tools=tools)
    for layout in (Layout(rich=True), Layout(rich=True, initials=False), Layout(rich=False)):
        parsed = parse_page(write(comparison, layout, ["Builder"]), source="written.txt")
        assert [(tool.name, tool.tagline, tool.category) for tool in parsed.tools] == [
            ("Axolotl", "東京 🚀", None),
            ("Axolotl vs 東京", None, None),
        ]
        assert parsed.model_dump() == carried(comparison, layout).model_dump()
