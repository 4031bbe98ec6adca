"""Verdict summaries: computed from the data, never invented."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from newsletter.models import Comparison, Review, ToolEntry
from newsletter.verdicts import (
    ELLIPSIS,
    QUOTE_LIMIT,
    SUBJECT_LIMIT,
    ComparisonSummary,
    preheader_line,
    subject_line,
    summarise,
    telling_quote,
    trim_words,
)
from tests.support.sample_comparisons import (
    MISTRAL_8X24B_REVIEWS_000,
    comparison_000,
    comparison_001,
    comparison_002,
    seed_like,
)


def _summary(comparison: Comparison) -> ComparisonSummary:
    return summarise(comparison, url=f"https://example.com/comparisons/{comparison.stable_slug}")


def _pair(a: ToolEntry, b: ToolEntry) -> Comparison:
    return Comparison(title=f"{a.name} vs {b.name}", tools=[a, b])


def test_seed_000_winner_votes_pricing_and_quotes() -> None:
    summary = _summary(comparison_000())
    axolotl, mistral = summary.tools
    assert summary.outcome == "winner"
    assert summary.winner == "Mistral 8x24B Mixture-of-Experts"
    assert mistral.is_winner and not axolotl.is_winner
    assert summary.verdict == (
        "Ship Mistral 8x24B Mixture-of-Experts: 100% panel ship vs 75% for Axolotl v0.16."
    )
    assert axolotl.votes == "3 ship / 1 skip"
    assert mistral.votes == "4 ship / 0 skip"
    assert summary.pricing_side_by_side == "Paid vs Free"
    assert axolotl.pricing_line == "Paid · Open Source"
    # "Free / Open-weight ..." does not say "Free" twice.
    assert mistral.pricing_line is not None
    assert mistral.pricing_line.startswith("Free · Open-weight (Apache 2.0)")
    assert axolotl.best_for == "15x faster MoE+LoRA fine-tuning with 40x memory reduction"
    # Highest score wins; among equals (three 80s for Axolotl) the first one.
    assert axolotl.quote is not None and mistral.quote is not None
    assert axolotl.quote.persona == "Builder" and axolotl.quote.score == 80
    assert mistral.quote.persona == "Builder" and mistral.quote.score == 88
    assert mistral.quote.attribution == "Builder, 88/100 · ship"
    assert mistral.quote.trimmed and mistral.quote.text.endswith(ELLIPSIS)
    assert len(mistral.quote.text) <= QUOTE_LIMIT
    assert summary.url.endswith("/comparisons/axolotl-v0-16-vs-mistral-8x24b-mixture-of-experts")


def test_equal_ship_percentages_are_a_split_decision() -> None:
    summary = _summary(comparison_001())
    assert summary.outcome == "split"
    assert summary.winner is None
    assert not any(tool.is_winner for tool in summary.tools)
    assert summary.verdict.startswith("Split decision:")
    assert "both reach 75% panel ship" in summary.verdict


def test_compact_pages_without_personas_have_no_invented_votes() -> None:
    summary = _summary(comparison_002())
    axolotl, small = summary.tools
    assert axolotl.votes is None and small.votes is None
    assert small.quote is not None and small.quote.persona is None
    assert small.quote.attribution == ""
    # No scores: the first quote of the tool's side.
    assert small.quote.text.startswith("The primitive is clean: a 24B transformer")


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
    other = ToolEntry(name="Other", ship_pct=50)
    summary = _summary(_pair(tool, other))
    assert summary.tools[0].votes == "2 ship / 1 skip"
    assert summary.tools[1].votes is None


def test_no_ship_percentages_means_no_winner() -> None:
    summary = _summary(_pair(ToolEntry(name="A"), ToolEntry(name="B", ship_pct=40)))
    assert summary.outcome == "unknown"
    assert summary.winner is None
    assert "only B has a panel score (40%)" in summary.verdict
    both_unknown = _summary(_pair(ToolEntry(name="A"), ToolEntry(name="B")))
    assert both_unknown.verdict.startswith("No panel verdict yet")


def test_a_winner_below_half_is_not_called_a_ship() -> None:
    summary = _summary(_pair(ToolEntry(name="Low", ship_pct=40), ToolEntry(name="Lower", ship_pct=20)))
    assert summary.winner == "Low"
    assert not summary.verdict.startswith("Ship")
    assert "neither wins half the panel" in summary.verdict


def test_community_votes_are_shown_only_when_present() -> None:
    summary = _summary(
        _pair(
            ToolEntry(name="A", ship_pct=50, community="12 votes · 83% ship"),
            ToolEntry(name="B", ship_pct=50),
        )
    )
    assert summary.tools[0].community == "12 votes · 83% ship"
    assert summary.tools[1].community is None


def test_telling_quote_prefers_the_highest_score() -> None:
    assert telling_quote([]) is None
    best = telling_quote(list(MISTRAL_8X24B_REVIEWS_000))
    assert best is not None and best.score == 88
    unscored = [Review(quote="first"), Review(quote="second")]
    assert telling_quote(unscored) is unscored[0]
    mixed = [Review(quote="no score"), Review(quote="scored", score=10)]
    assert telling_quote(mixed) is mixed[1]


def test_trim_words_cuts_at_a_word_boundary() -> None:
    text, trimmed = trim_words("short quote")
    assert (text, trimmed) == ("short quote", False)
    text, trimmed = trim_words("alpha beta gamma delta epsilon", 20)
    assert trimmed
    assert text == "alpha beta gamma" + ELLIPSIS


@given(st.text(min_size=1, max_size=600))
def test_trim_words_never_exceeds_the_limit(text: str) -> None:
    out, trimmed = trim_words(text, QUOTE_LIMIT)
    assert len(out) <= QUOTE_LIMIT
    normal = " ".join(text.split())
    if trimmed:
        assert out.endswith(ELLIPSIS)
        assert normal.startswith(out[: -len(ELLIPSIS)])
    else:
        assert out == normal


def test_subject_names_the_lead_comparison_and_how_many_more() -> None:
    summaries = [_summary(c) for c in seed_like()]
    subject = subject_line(summaries)
    assert subject == "Axolotl v0.16 vs Mistral 8x24B: ship Mistral 8x24B — +2 more verdicts"
    assert len(subject) <= SUBJECT_LIMIT
    assert subject_line(summaries[:2]).endswith("+1 more verdict")
    alone = subject_line(summaries[:1])
    assert "more" not in alone
    assert alone.startswith("Axolotl v0.16 vs Mistral 8x24B")
    split = subject_line([summaries[1]])
    assert "split decision" in split


def test_preheader_adds_to_the_subject() -> None:
    summaries = [_summary(c) for c in seed_like()]
    subject = subject_line(summaries)
    preheader = preheader_line(summaries)
    assert preheader and preheader != subject
    assert subject not in preheader
    assert "Mistral 3 Small (24B)" in preheader  # the comparisons the subject only counts
    single = preheader_line(summaries[:1])
    assert "3 ship / 1 skip vs 4 ship / 0 skip" in single
    assert "Paid vs Free" in single


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
