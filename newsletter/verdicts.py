"""Verdict summaries: what the issue says about each comparison, computed from the data.

Nothing here is invented. The winner is the tool with the higher panel ship %;
equal percentages are a split decision and the summary says so. Votes, community
figures, pricing, "best for" and quotes are shown only when the page gives them.

The models are pydantic so the archive's issue.json is written from (and read
back into) exactly what the templates rendered.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field

from newsletter.models import Comparison, Review, ToolEntry

QUOTE_LIMIT = 220
SUBJECT_LIMIT = 78
PREHEADER_LIMIT = 140
ELLIPSIS = "…"


class QuoteSummary(BaseModel):
    text: str
    persona: str | None = None
    score: int | None = None
    verdict: str | None = None
    trimmed: bool = False

    @property
    def attribution(self) -> str:
        """ "Builder, 80/100 · ship"; empty when the page names nobody and scores nothing."""
        parts = []
        if self.persona:
            parts.append(self.persona)
        if self.score is not None:
            parts.append(f"{self.score}/100")
        head = ", ".join(parts)
        if self.verdict:
            head = f"{head} · {self.verdict}" if head else self.verdict
        return head


class ToolSummary(BaseModel):
    name: str
    short_name: str
    tagline: str | None = None
    category: str | None = None
    ship_pct: int | None = None
    panel_verdict: str | None = None
    ship_votes: int | None = None
    skip_votes: int | None = None
    community: str | None = None
    pricing: str | None = None
    pricing_detail: str | None = None
    best_for: str | None = None
    quote: QuoteSummary | None = None
    is_winner: bool = False

    @property
    def votes(self) -> str | None:
        """ "3 ship / 1 skip", or None when the panel's votes are unknown."""
        if self.ship_votes is None or self.skip_votes is None:
            return None
        return f"{self.ship_votes} ship / {self.skip_votes} skip"

    @property
    def pricing_note(self) -> str | None:
        """The page's pricing detail, minus a repeat of the entry label ("Free / ..." -> "...")."""
        detail = (self.pricing_detail or "").strip()
        if self.pricing and detail.casefold().startswith(self.pricing.casefold()):
            detail = detail[len(self.pricing) :].lstrip(" /-—–:·,")
        return detail or None

    @property
    def pricing_line(self) -> str | None:
        """E.g. "Free · Open-weight (Apache 2.0) ...", "Paid"; None when the page says nothing."""
        parts = [part for part in (self.pricing, self.pricing_note) if part]
        return " · ".join(parts) or None


class ComparisonSummary(BaseModel):
    slug: str
    title: str
    category: str | None = None
    url: str
    published_at: datetime | None = None
    tools: list[ToolSummary] = Field(min_length=2, max_length=2)
    # "winner" | "split" | "unknown"
    outcome: str
    winner: str | None = None
    verdict: str
    headline: str

    @property
    def pricing_side_by_side(self) -> str | None:
        a, b = self.tools
        if not (a.pricing or b.pricing):
            return None
        return f"{a.pricing or 'n/a'} vs {b.pricing or 'n/a'}"


class IssueContent(BaseModel):
    """Everything an issue says: the input of every template (email, text, web)."""

    issue_id: str
    issue_date: datetime
    newsletter_name: str
    subject: str
    preheader: str
    archive_url: str
    comparisons: list[ComparisonSummary]
    # The editor's note (notes.py): sanitised HTML and its text-part version; None: no note.
    note_html: str | None = None
    note_text: str | None = None

    @property
    def date_label(self) -> str:
        return f"{self.issue_date.day} {self.issue_date:%B %Y}"


# --- helpers -------------------------------------------------------------------------------


def trim_words(text: str, limit: int = QUOTE_LIMIT) -> tuple[str, bool]:
    """Collapse whitespace, cut at a word boundary under ``limit`` and add an ellipsis."""
    clean = " ".join(text.split())
    if len(clean) <= limit:
        return clean, False
    cut = clean[: limit - len(ELLIPSIS) + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else cut[: limit - len(ELLIPSIS)]
    cut = cut.rstrip(" ,;:.-—–'\"“(")
    return cut + ELLIPSIS, True


def short_name(name: str, words: int | None = None) -> str:
    """A tool's name without its parenthetical, optionally its first ``words`` words."""
    plain = re.sub(r"\s*\([^)]*\)", "", name).strip() or name
    if words is not None:
        kept: list[str] = []
        counted = 0
        for word in plain.split():
            if counted == words:
                break
            kept.append(word)
            counted += any(ch.isalnum() for ch in word)
        while len(kept) > 1 and not any(ch.isalnum() for ch in kept[-1]):
            kept.pop()
        plain = " ".join(kept) or plain
    return plain


def telling_quote(reviews: list[Review]) -> Review | None:
    """The highest-scored review (first among equals), else the first one."""
    if not reviews:
        return None
    scored = [review for review in reviews if review.score is not None]
    if scored:
        best = scored[0]
        for review in scored[1:]:
            assert review.score is not None and best.score is not None
            if review.score > best.score:
                best = review
        return best
    return reviews[0]


def panel_votes(tool: ToolEntry) -> tuple[int | None, int | None]:
    """(ship, skip) from the decision table, else counted from named panelists' verdicts."""
    if tool.panel_ship is not None and tool.panel_skip is not None:
        return tool.panel_ship, tool.panel_skip
    named = [review for review in tool.reviews if review.persona and review.verdict]
    if not named:
        return None, None
    ship = sum(1 for review in named if review.verdict == "ship")
    return ship, len(named) - ship


def summarise_tool(tool: ToolEntry) -> ToolSummary:
    ship, skip = panel_votes(tool)
    review = telling_quote(tool.reviews)
    quote = None
    if review is not None:
        text, trimmed = trim_words(review.quote)
        quote = QuoteSummary(
            text=text,
            persona=review.persona,
            score=review.score,
            verdict=review.verdict,
            trimmed=trimmed,
        )
    return ToolSummary(
        name=tool.name,
        short_name=short_name(tool.name),
        tagline=tool.tagline,
        category=tool.category,
        ship_pct=tool.ship_pct,
        panel_verdict=tool.panel_verdict,
        ship_votes=ship,
        skip_votes=skip,
        community=tool.community,
        pricing=tool.pricing,
        pricing_detail=tool.pricing_detail,
        best_for=tool.best_for,
        quote=quote,
    )


def summarise(comparison: Comparison, *, url: str) -> ComparisonSummary:
    """The verdict summary of one comparison. ``url`` is its full page on the site."""
    a, b = (summarise_tool(tool) for tool in comparison.tools)
    outcome = "unknown"
    winner: ToolSummary | None = None
    if a.ship_pct is not None and b.ship_pct is not None:
        if a.ship_pct == b.ship_pct:
            outcome = "split"
        else:
            outcome = "winner"
            winner = a if a.ship_pct > b.ship_pct else b
            winner.is_winner = True
    verdict, headline = _verdict_lines(a, b, outcome, winner)
    return ComparisonSummary(
        slug=comparison.stable_slug,
        title=comparison.title,
        category=comparison.category or a.category or b.category,
        url=url,
        published_at=comparison.published_at,
        tools=[a, b],
        outcome=outcome,
        winner=winner.name if winner else None,
        verdict=verdict,
        headline=headline,
    )


def _verdict_lines(
    a: ToolSummary, b: ToolSummary, outcome: str, winner: ToolSummary | None
) -> tuple[str, str]:
    """(the verdict sentence, the short form used in a subject line)."""
    if outcome == "split":
        return (
            f"Split decision: {a.name} and {b.name} both reach {a.ship_pct}% panel ship.",
            "split decision",
        )
    if outcome == "winner" and winner is not None:
        loser = b if winner is a else a
        if (winner.ship_pct or 0) >= 50:
            return (
                f"Ship {winner.name}: {winner.ship_pct}% panel ship vs {loser.ship_pct}% for {loser.name}.",
                "ship {winner}",
            )
        return (
            f"{winner.name} edges it with {winner.ship_pct}% panel ship vs {loser.ship_pct}% "
            f"for {loser.name}; neither wins half the panel.",
            "{winner} edges it",
        )
    known = [tool for tool in (a, b) if tool.ship_pct is not None]
    if known:
        tool = known[0]
        return (f"No head-to-head verdict yet: only {tool.name} has a panel score ({tool.ship_pct}%).", "")
    return ("No panel verdict yet: the panel has not scored these tools.", "")


# --- the issue -------------------------------------------------------------------------------


def subject_line(summaries: list[ComparisonSummary], limit: int = SUBJECT_LIMIT) -> str:
    """≤ ``limit`` characters: the lead comparison, its verdict, and how many more."""
    if not summaries:
        raise ValueError("an issue needs at least one comparison")
    lead = summaries[0]
    more = len(summaries) - 1
    tail = f" — +{more} more verdict{'s' if more != 1 else ''}" if more else ""
    a, b = lead.tools
    winner = next((tool for tool in lead.tools if tool.is_winner), None)
    names = [
        (a.name, b.name, winner.name if winner else ""),
        (a.short_name, b.short_name, winner.short_name if winner else ""),
        (short_name(a.name, 2), short_name(b.name, 2), short_name(winner.name, 2) if winner else ""),
        (short_name(a.name, 2), short_name(b.name, 2), short_name(winner.name, 1) if winner else ""),
    ]
    candidates = []
    for first, second, win in names:
        verdict = lead.headline.replace("{winner}", win)
        pair = f"{first} vs {second}"
        candidates.append(f"{pair}: {verdict}{tail}" if verdict else f"{pair}{tail}")
    for first, second, _win in names:
        candidates.append(f"{first} vs {second}{tail}")
    for candidate in candidates:
        if len(candidate) <= limit:
            return candidate
    fallback = candidates[-1]
    room = limit - len(tail)
    head, _ = trim_words(fallback[: len(fallback) - len(tail)], room)
    return (head + tail)[:limit]


def preheader_line(summaries: list[ComparisonSummary], limit: int = PREHEADER_LIMIT) -> str:
    """What the subject does not say: the other comparisons, or the lead's votes and pricing."""
    lead = summaries[0]
    rest = summaries[1:]
    if rest:
        listed = "; ".join(summary.title for summary in rest)
        text = f"Also this week: {listed}. Panel votes, pricing and the sharpest quotes inside."
        if len(text) <= limit:
            return text
        text, _ = trim_words(f"Also this week: {listed}", limit)
        return text
    a, b = lead.tools
    facts = []
    if a.votes and b.votes:
        facts.append(f"Panel {a.votes} vs {b.votes}")
    if lead.pricing_side_by_side:
        facts.append(f"{lead.pricing_side_by_side} pricing")
    facts.append("the sharpest quote from each side")
    text, _ = trim_words(" · ".join(facts) + ".", limit)
    return text


def build_content(
    *,
    issue_id: str,
    issue_date: datetime,
    newsletter_name: str,
    archive_url: str,
    summaries: list[ComparisonSummary],
) -> IssueContent:
    return IssueContent(
        issue_id=issue_id,
        issue_date=issue_date,
        newsletter_name=newsletter_name,
        subject=subject_line(summaries),
        preheader=preheader_line(summaries),
        archive_url=archive_url,
        comparisons=summaries,
    )
