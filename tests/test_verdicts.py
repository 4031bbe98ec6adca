"""Verdict summaries: computed from the data, never invented."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.issues.content import (
    ELISION,
    ELLIPSIS,
    QUOTE_LIMIT,
    SUBJECT_LIMIT,
    ComparisonSummary,
    defuse_text,
    defuse_url,
)
from newsletter.issues.verdicts import (
    preheader_line,
    subject_line,
    summarise,
    summarise_issue,
    telling_quote,
)
from newsletter.issues.wording import name_forms, reason_quote, sentences, trim_words
from newsletter.models import Comparison, Review, ToolEntry
from tests.support.sample_comparisons import (
    MISTRAL_8X24B_REVIEWS_000,
    comparison_000,
    comparison_001,
    comparison_002,
    five_comparisons,
    seed_like,
)


def _summary(comparison: Comparison) -> ComparisonSummary:
    return summarise(comparison, url=f"https://example.com/comparisons/{comparison.stable_slug}")


def _issue(comparisons: list[Comparison]) -> list[ComparisonSummary]:
    return summarise_issue([(c, f"https://example.com/c/{c.stable_slug}") for c in comparisons])


def _pair(a: ToolEntry, b: ToolEntry) -> Comparison:
    return Comparison(title=f"{a.name} vs {b.name}", tools=[a, b])


def test_seed_000_both_ship_with_a_pick_votes_dissent_and_pricing() -> None:
    summary = _summary(comparison_000())
    axolotl, mistral = summary.tools
    # 100 % vs 75 %: the panel ships both; Mistral is the pick, Axolotl is not "skipped".
    assert summary.outcome == "both_ship"
    assert summary.winner == "Mistral 8x24B Mixture-of-Experts"
    assert mistral.is_winner and not axolotl.is_winner
    assert summary.verdict.startswith("The panel ships both; Mistral 8x24B Mixture-of-Experts is its pick")
    assert "skip Axolotl" not in summary.verdict
    assert axolotl.votes == "3 ship / 1 skip" and mistral.votes == "4 ship / 0 skip"
    assert (axolotl.avg_score, mistral.avg_score) == (71, 83)
    # The one dissent on the page, with its reason in whole sentences.
    assert axolotl.dissent is not None and mistral.dissent is None
    assert (axolotl.dissent.persona, axolotl.dissent.score, axolotl.dissent.verdict) == (
        "Creator",
        45,
        "skip",
    )
    assert "deeply in developer territory" in axolotl.dissent.text
    # "Paid" entry label vs "Open Source" in the decision table: shown as a contradiction.
    assert axolotl.pricing_conflict
    assert axolotl.pricing_line is not None and "but the page's decision table says" in axolotl.pricing_line
    assert summary.pricing_contrast == "Axolotl v0.16 Paid, Mistral 8x24B Mixture-of-Experts Free"
    assert mistral.pricing_line is not None and mistral.pricing_line.startswith(
        "Free · Open-weight (Apache 2.0)"
    )
    # "Best for" equals the tagline on this page: not repeated.
    assert axolotl.best_for and axolotl.show_best_for is None
    # The reason quote comes from a ship voter, the best score first; whole sentences.
    assert axolotl.quote is not None and mistral.quote is not None
    assert axolotl.quote.persona == "Builder" and axolotl.quote.score == 80
    assert mistral.quote.persona == "Builder" and mistral.quote.score == 88
    assert mistral.quote.attribution == "Builder, 88/100 · ship"
    assert mistral.quote.trimmed and len(mistral.quote.text) <= QUOTE_LIMIT
    assert "Specific ship decision" in mistral.quote.text
    assert summary.url.endswith("/comparisons/axolotl-v0-16-vs-mistral-8x24b-mixture-of-experts")


def test_equal_percentages_are_a_tie_never_a_winner() -> None:
    summary = _summary(comparison_001())
    assert summary.outcome == "both_ship" and summary.tie
    assert summary.winner is None
    assert not any(tool.is_winner for tool in summary.tools)
    assert summary.verdict == "The panel ships both, at 75% each: a tie, no winner."
    unanimous = _summary(_pair(ToolEntry(name="Á", ship_pct=100), ToolEntry(name="B", ship_pct=100)))
    assert unanimous.verdict == "The panel ships both, unanimously: a tie, no winner."
    both_skip = _summary(_pair(ToolEntry(name="Ça", ship_pct=25), ToolEntry(name="B", ship_pct=25)))
    assert both_skip.outcome == "both_skip" and both_skip.winner is None


def test_compact_pages_say_how_many_ship_from_the_percentage_and_name_nobody() -> None:
    summary = _summary(comparison_002())
    axolotl, small = summary.tools
    assert axolotl.votes is None and small.votes is None
    assert axolotl.vote_line == "3 of 4 reviewers ship"
    assert small.vote_line == "4 of 4 reviewers ship"
    assert small.quote is not None and small.quote.persona is None and small.quote.attribution == ""
    assert axolotl.dissent is None and small.dissent is None
    # 70 % of 4 is not a whole number of reviewers: no count is invented.
    odd = _summary(
        _pair(ToolEntry(name="X", ship_pct=70, reviews=[Review(quote="Fine.")] * 4), ToolEntry(name="Y"))
    )
    assert odd.tools[0].vote_line is None


def test_abstentions_are_kept_and_mentioned() -> None:
    reviews = [
        Review(persona="Builder", score=80, verdict="ship", quote="It ships. Worth it at $1.5K."),
        Review(persona="Founder", quote="No panel take"),
    ]
    summary = _summary(
        _pair(ToolEntry(name="Zoë", ship_pct=100, reviews=reviews), ToolEntry(name="B", ship_pct=0))
    )
    zoe = summary.tools[0]
    assert zoe.abstainers == ["Founder"] and zoe.reviewers == 1
    assert zoe.abstention_note == "the Founder did not review it"
    assert zoe.quote is not None and zoe.quote.persona == "Builder"


def test_votes_are_counted_from_named_panelists_when_the_table_is_missing() -> None:
    tool = ToolEntry(
        name="Counted",
        ship_pct=67,
        reviews=[
            Review(persona="Builder", verdict="ship", quote="yes"),
            Review(persona="Skeptic", verdict="skip", quote="no"),
            Review(persona="Founder", verdict="ship", quote="fine"),
            Review(persona=None, verdict="skip", quote="anonymous: not counted"),
        ],
    )
    summary = _summary(_pair(tool, ToolEntry(name="Other", ship_pct=50)))
    assert summary.tools[0].votes == "2 ship / 1 skip"
    assert summary.tools[1].votes is None


def test_one_scored_and_no_panel() -> None:
    summary = _summary(_pair(ToolEntry(name="A"), ToolEntry(name="B", ship_pct=40)))
    assert summary.outcome == "one_scored" and summary.winner is None
    assert "only B has a panel score (40%" in summary.verdict
    none = _summary(_pair(ToolEntry(name="A"), ToolEntry(name="B")))
    assert none.outcome == "no_panel" and none.verdict.startswith("No panel verdict yet")


def test_one_ship_one_skip_is_a_winner_and_two_skips_are_not() -> None:
    win = _summary(_pair(ToolEntry(name="Low", ship_pct=30), ToolEntry(name="High", ship_pct=80)))
    assert win.outcome == "winner" and win.winner == "High"
    assert win.verdict.startswith("Ship High, skip Low")
    summary = _summary(_pair(ToolEntry(name="Low", ship_pct=40), ToolEntry(name="Lower", ship_pct=20)))
    assert summary.outcome == "both_skip" and summary.winner == "Low"
    assert not summary.verdict.startswith("Ship")
    assert "neither reaches half" in summary.verdict


def test_telling_quote_prefers_the_highest_score() -> None:
    assert telling_quote([]) is None
    best = telling_quote(list(MISTRAL_8X24B_REVIEWS_000))
    assert best is not None and best.score == 88
    unscored = [Review(quote="first"), Review(quote="second")]
    assert telling_quote(unscored) is unscored[0]
    mixed = [Review(quote="no score"), Review(quote="scored", score=10)]
    assert telling_quote(mixed) is mixed[1]


def test_the_segmenter_keeps_versions_prices_and_abbreviations_inside_a_sentence() -> None:
    text = "Axolotl v0.16 costs $1.5K, e.g. on a 4090 — worth it. The 8B model ships. 日本語も大丈夫です。"
    parts = sentences(text)
    assert parts[0] == "Axolotl v0.16 costs $1.5K, e.g. on a 4090 — worth it."
    assert parts[1] == "The 8B model ships."


def test_reason_quote_picks_whole_sentences_that_carry_the_reason() -> None:
    text = (
        "I looked at it on a Tuesday afternoon with coffee and a lot of patience for the docs. "
        "The setup is long and the docs wander between versions without much of a map for newcomers. "
        "It is 3x faster than the old release, which earns it a ship. "
        "The logo is nice."
    )
    quote, trimmed = reason_quote(text, 120)
    assert trimmed
    assert quote.startswith("It is 3x faster than the old release")
    assert quote.endswith((".", "!", "?", "”", '"'))
    short, trimmed = reason_quote("Short. Sweet.", 120)
    assert (short, trimmed) == ("Short. Sweet.", False)


def test_trim_words_cuts_at_a_word_boundary() -> None:
    text, trimmed = trim_words("short quote")
    assert (text, trimmed) == ("short quote", False)
    text, trimmed = trim_words("alpha beta gamma delta epsilon", 20)
    assert trimmed
    assert text == "alpha beta gamma" + ELLIPSIS


def test_issue_is_ordered_most_decisive_first_and_a_tie_never_leads() -> None:
    summaries = _issue(seed_like())
    assert summaries[0].slug == "axolotl-v0-16-vs-mistral-8x24b-mixture-of-experts"
    assert summaries[-1].tie
    assert all(not s.tie for s in summaries[:-1])


def test_a_tool_seen_again_is_introduced_once_and_its_quote_is_not_repeated() -> None:
    summaries = _issue(seed_like())
    axolotl = [tool for s in summaries for tool in s.tools if tool.name == "Axolotl v0.16"]
    assert [tool.introduced for tool in axolotl] == [True, False, False]
    assert axolotl[1].seen_in == summaries[0].title
    texts = [tool.quote.text for tool in axolotl if tool.quote]
    assert len(texts) == len(set(texts)) == 3


def test_subject_names_the_lead_winner_and_how_many_more() -> None:
    summaries = _issue(seed_like())
    subject = subject_line(summaries)
    assert subject.startswith("Mistral 8x24B")
    assert "leads Axolotl v0.16" in subject and subject.endswith("+2 more verdicts")
    assert len(subject) <= SUBJECT_LIMIT
    win = _issue([_pair(ToolEntry(name="Zed", ship_pct=20), ToolEntry(name="Élan", ship_pct=90))])
    assert subject_line(win) == "Ship Élan over Zed (90% vs 20%)"


def test_shortened_names_are_never_ambiguous() -> None:
    names = ["Mistral 3 Small (24B)", "Mistral 3 8B & 70B Instruct (Open Source)", "Axolotl v0.16"]
    forms = name_forms("Mistral 3 Small (24B)", names)
    assert "Mistral 3" not in forms
    assert "Mistral 3 Small" in forms


def test_preheader_adds_to_the_subject_with_whole_titles() -> None:
    summaries = _issue(seed_like())
    subject = subject_line(summaries)
    preheader = preheader_line(summaries)
    assert preheader and subject not in preheader
    assert "the Creator dissents on Axolotl v0.16" in preheader
    # The "Also:" list holds whole titles only, then how many more.
    also = preheader.split("Also: ", 1)[1]
    listed = re.sub(r" \+\d+ more\.$|\.$", "", also).split("; ")
    titles = [summary.title for summary in summaries[1:]]
    assert listed and all(item in titles for item in listed)


def test_placeholders_in_page_text_are_defused() -> None:
    assert "%%" not in defuse_text("100%% sure %%FIRST_NAME%%")
    assert defuse_url("https://evil.example/c?u=%%UNSUBSCRIBE_URL%%&n=%41") == (
        "https://evil.example/c?u=%25%25UNSUBSCRIBE_URL%25%25&n=%41"
    )


# --- properties over generated comparisons ---------------------------------------------------------

PERSONAS = ["Builder", "Skeptic", "Futurist", "Creator", "Founder"]
words = st.sampled_from(
    [
        "ship",
        "skip",
        "v0.16",
        "$1.5K",
        "e.g.",
        "faster",
        "than",
        "the",
        "model",
        "日本",
        "café",
        "—",
        "40x",
        "it's",
    ]
)
sentence = st.lists(words, min_size=1, max_size=12).map(lambda ws: " ".join(ws).capitalize() + ".")
quote_text = st.lists(sentence, min_size=1, max_size=8).map(" ".join)


@st.composite
def reviews(draw: st.DrawFn, rich: bool) -> list[Review]:
    if not rich:
        return [Review(quote=draw(quote_text)) for _ in range(draw(st.integers(0, 4)))]
    out = []
    for persona in draw(st.lists(st.sampled_from(PERSONAS), unique=True, max_size=5)):
        if draw(st.booleans()) and draw(st.booleans()):
            out.append(Review(persona=persona, quote="No panel take"))
            continue
        score = draw(st.integers(0, 100))
        out.append(
            Review(
                persona=persona,
                score=score,
                verdict="ship" if score >= 50 else "skip",
                quote=draw(quote_text),
            )
        )
    return out


@st.composite
def comparisons(draw: st.DrawFn) -> Comparison:
    rich = draw(st.booleans())
    tools = []
    for name in ("Axolotl v0.16", "Mistral 3 Small (24B)"):
        revs = draw(reviews(rich))
        voted = [r for r in revs if r.verdict]
        if rich and voted:
            pct: int | None = round(100 * sum(r.verdict == "ship" for r in voted) / len(voted))
        else:
            pct = draw(st.one_of(st.none(), st.integers(0, 100)))
        tools.append(
            ToolEntry(
                name=name, ship_pct=pct, reviews=revs, pricing=draw(st.sampled_from([None, "Free", "Paid"]))
            )
        )
    return Comparison(title="Axolotl v0.16 vs Mistral 3 Small (24B)", tools=tools)


def _texts(summary: ComparisonSummary) -> list[str]:
    out = [summary.verdict, summary.glance]
    for tool in summary.tools:
        out += [tool.vote_line or "", tool.abstention_note or ""]
        for quote in (tool.quote, tool.dissent):
            if quote is not None:
                out.append(quote.attribution)
    return out


def _has_skip_vote(tool: ToolEntry) -> bool:
    return any(r.verdict == "skip" for r in tool.reviews) or (
        tool.ship_pct is not None and tool.ship_pct < 100
    )


@settings(max_examples=150, deadline=None)
@given(comparisons())
def test_property_summaries_never_invent(comparison: Comparison) -> None:
    summary = _summary(comparison)
    texts = " ".join(_texts(summary))
    page_personas = {r.persona for tool in comparison.tools for r in tool.reviews if r.persona}
    for persona in PERSONAS:
        if persona not in page_personas:
            assert persona not in texts  # never a persona the page does not name
    for entry, tool in zip(comparison.tools, summary.tools, strict=True):
        if not _has_skip_vote(entry):
            assert f"skip {entry.name}" not in texts
            assert tool.call != "skip"
            assert "skip" not in (tool.vote_line or "").replace("0 skip", "")
    a, b = comparison.tools
    if a.ship_pct == b.ship_pct:
        assert summary.winner is None and not any(tool.is_winner for tool in summary.tools)
        assert "pick" not in summary.verdict and " leads " not in summary.glance


@settings(max_examples=150, deadline=None)
@given(quote_text, st.integers(40, 400))
def test_property_every_quote_ends_at_a_sentence_end(text: str, limit: int) -> None:
    quote, _trimmed = reason_quote(text, limit)
    parts = sentences(text)
    # Each stretch is a run of whole sentences of the original, in order.
    for stretch in quote.split(ELISION):
        assert any(
            stretch == " ".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)
        )
    assert re.search(r"[.!?。]$", quote)


@settings(max_examples=50, deadline=None)
@given(st.lists(comparisons(), min_size=1, max_size=6))
def test_property_a_tie_never_leads_a_decisive_comparison(items: list[Comparison]) -> None:
    data = []
    for n, comparison in enumerate(items):
        copy = comparison.model_dump()
        copy["title"] = f"{comparison.title} #{n}"
        data.append(Comparison.model_validate(copy))
    summaries = _issue(data)
    if any(s.outcome == "winner" or (s.winner and s.outcome != "one_scored") for s in summaries):
        assert not summaries[0].tie
    subject = subject_line(summaries)
    assert 0 < len(subject) <= SUBJECT_LIMIT


names = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N", "Zs", "P")), min_size=1, max_size=90
)


@given(names, names, st.integers(0, 100), st.integers(0, 100), st.integers(0, 49))
def test_subject_is_never_longer_than_78(a: str, b: str, pa: int, pb: int, more: int) -> None:
    if not a.strip() or not b.strip():
        return
    lead = _summary(_pair(ToolEntry(name=a, ship_pct=pa), ToolEntry(name=b, ship_pct=pb)))
    subject = subject_line([lead] * (more + 1))
    assert 0 < len(subject) <= SUBJECT_LIMIT
    if more:
        assert f"+{more} more" in subject


def test_five_sample_comparisons_every_quote_is_whole() -> None:
    for summary in _issue(five_comparisons()):
        for tool in summary.tools:
            for quote in (tool.quote, tool.dissent):
                if quote is not None:
                    assert not quote.text.endswith(ELLIPSIS)
                    assert re.search(r"[.!?]$", quote.text)
