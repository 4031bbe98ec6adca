"""The issue's content model (pydantic, so issue.json is exactly what the templates rendered)
and the placeholder defusing applied to page data before it reaches a template."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from newsletter.models import Comparison

QUOTE_LIMIT = 280
SUBJECT_LIMIT = 78
PREHEADER_LIMIT = 140
ELLIPSIS = "…"
# Between two sentences of one review that were not next to each other.
ELISION = " … "

Outcome = Literal["winner", "both_ship", "both_skip", "one_scored", "no_panel"]
Display = Literal["full", "compact", "listed"]


# --- placeholder safety ------------------------------------------------------------------------
# The renderer's per-recipient tokens look like %%NAME%%. Page text must never produce one
# (a comparison URL carrying %%UNSUBSCRIBE_URL%% would hand each reader's token to a stranger),
# so every page string is defused before it reaches a template or the subject line.

_WORD_JOINER = "\u2060"
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def defuse_text(text: str) -> str:
    """``%%`` becomes ``%``+WORD JOINER+``%``: reads the same, never forms a placeholder."""
    while "%%" in text:
        text = text.replace("%%", f"%{_WORD_JOINER}%")
    return text


def defuse_url(url: str) -> str:
    """A ``%`` that does not start a percent-escape is written ``%25`` (what it means in a URL)."""
    return _STRAY_PERCENT.sub("%25", url)


def _defuse_data(value: Any) -> Any:
    if isinstance(value, str):
        return defuse_text(value)
    if isinstance(value, list):
        return [_defuse_data(item) for item in value]
    if isinstance(value, dict):
        return {key: _defuse_data(item) for key, item in value.items()}
    return value


def defuse_comparison(comparison: Comparison) -> Comparison:
    """The comparison with every free-text field defused (URLs percent-encoded instead)."""
    data = _defuse_data(comparison.model_dump(exclude={"url", "published_at", "slug"}))
    data["url"] = defuse_url(comparison.url) if comparison.url else None
    data["published_at"] = comparison.published_at
    data["slug"] = comparison.slug
    return Comparison.model_validate(data)


# --- small text helpers the models use ---


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _same_words(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


# --- models --------------------------------------------------------------------------------------


class QuoteSummary(BaseModel):
    text: str
    persona: str | None = None
    score: int | None = None
    verdict: str | None = None
    # True when sentences of the review were left out (never part of one).
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
    key: str = ""
    short_name: str
    tagline: str | None = None
    category: str | None = None
    ship_pct: int | None = None
    panel_verdict: str | None = None
    ship_votes: int | None = None
    skip_votes: int | None = None
    # Reviews on the page that are not abstentions (compact pages: the quotes of this side).
    reviewers: int = 0
    ship_voters: list[str] = Field(default_factory=list)
    skip_voters: list[str] = Field(default_factory=list)
    abstainers: list[str] = Field(default_factory=list)
    avg_score: int | None = None
    community: str | None = None
    pricing: str | None = None
    pricing_detail: str | None = None
    pricing_conflict: bool = False
    best_for: str | None = None
    quote: QuoteSummary | None = None
    dissent: QuoteSummary | None = None
    # "ship" / "skip": the panel's call on this tool; None when it has no panel score.
    call: str | None = None
    is_winner: bool = False
    # False when an earlier comparison of the same issue introduced this tool.
    introduced: bool = True
    seen_in: str | None = None

    @property
    def votes(self) -> str | None:
        """ "3 ship / 1 skip", or None when the panel's votes are unknown."""
        if self.ship_votes is None or self.skip_votes is None:
            return None
        return f"{self.ship_votes} ship / {self.skip_votes} skip"

    @property
    def vote_line(self) -> str | None:
        """The split as the page gives it: named votes, else "3 of 4 reviewers ship" from the %."""
        if self.votes:
            return self.votes
        if self.ship_pct is None or not self.reviewers or (self.ship_pct * self.reviewers) % 100:
            return None
        shipping = self.ship_pct * self.reviewers // 100
        return f"{shipping} of {self.reviewers} reviewers ship"

    @property
    def abstention_note(self) -> str | None:
        """ "the Founder did not review it", naming only personas the page names."""
        if not self.abstainers:
            return None
        names = _join([f"the {persona}" for persona in self.abstainers])
        return f"{names} did not review it"

    @property
    def pricing_note(self) -> str | None:
        """The page's pricing detail, minus a repeat of the entry label ("Free / ..." -> "...")."""
        detail = (self.pricing_detail or "").strip()
        if self.pricing and detail.casefold().startswith(self.pricing.casefold()):
            detail = detail[len(self.pricing) :].lstrip(" /-—–:·,")
        return detail or None

    @property
    def pricing_line(self) -> str | None:
        """E.g. "Free · Open-weight (Apache 2.0) ...", "Paid"; None when the page says nothing.

        A page that contradicts itself is shown as such, not glued into "Paid · Open Source".
        """
        if self.pricing_conflict and self.pricing and self.pricing_note:
            return f"{self.pricing} (entry label), but the page's decision table says “{self.pricing_note}”"
        parts = [part for part in (self.pricing, self.pricing_note) if part]
        return " · ".join(parts) or None

    @property
    def show_best_for(self) -> str | None:
        """ "Best for", unless it only repeats the tagline."""
        if not self.best_for or _same_words(self.best_for, self.tagline):
            return None
        return self.best_for


class ComparisonSummary(BaseModel):
    slug: str
    title: str
    category: str | None = None
    url: str
    published_at: datetime | None = None
    tools: list[ToolSummary] = Field(min_length=2, max_length=2)
    outcome: Outcome
    # The tool with the higher panel ship % (never set on equal percentages).
    winner: str | None = None
    verdict: str
    # One line for the at-a-glance list: the pair, the outcome, the key number.
    glance: str = ""
    # Higher is more decisive; the at-a-glance list (and the email) lead with the highest.
    decisiveness: int = 0
    display: Display = "full"

    @property
    def anchor(self) -> str:
        return f"c-{self.slug}"[:80]

    @property
    def tie(self) -> bool:
        a, b = self.tools
        return a.ship_pct is not None and a.ship_pct == b.ship_pct

    @property
    def pricing_side_by_side(self) -> str | None:
        a, b = self.tools
        if not (a.pricing or b.pricing):
            return None
        return f"{a.pricing or 'n/a'} vs {b.pricing or 'n/a'}"

    @property
    def pricing_contrast(self) -> str | None:
        """ "Both Free", or "Axolotl v0.16 is Paid, Mistral 3 Small (24B) Free"."""
        a, b = self.tools
        if not (a.pricing or b.pricing):
            return None
        if a.pricing and b.pricing and a.pricing.casefold() == b.pricing.casefold():
            return f"Both {a.pricing}"
        return f"{a.name} {a.pricing or 'n/a'}, {b.name} {b.pricing or 'n/a'}"

    @property
    def dissents(self) -> list[tuple[ToolSummary, QuoteSummary]]:
        return [(tool, tool.dissent) for tool in self.tools if tool.dissent is not None]


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

    @property
    def shown(self) -> list[ComparisonSummary]:
        """The comparisons that get a section (not only a line in the glance)."""
        return [summary for summary in self.comparisons if summary.display != "listed"]

    @property
    def listed(self) -> list[ComparisonSummary]:
        return [summary for summary in self.comparisons if summary.display == "listed"]
