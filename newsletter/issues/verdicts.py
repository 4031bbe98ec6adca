"""Verdict summaries: what the issue says about each comparison, computed from the data.

Nothing here is invented. Each tool's call is the panel's (ship at >= 50 % panel
ship); the outcome says whether one tool wins, the panel ships both, skips both,
scored only one, or scored neither. Equal percentages never make a winner. Votes,
averages, dissent, pricing, "best for" and quotes are shown only when the page
gives them; a page without personas (the compact layout) never gets one, and a
tool without a skip vote is never said to be skipped.

Quotes are whole sentences (``sentencex`` segments them, so "v0.16", "$1.5K" and
"e.g." stay inside their sentence), chosen for carrying the reason: a verdict
word, a number, a comparison.

The models are pydantic so the archive's issue.json is written from (and read
back into) exactly what the templates rendered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sentencex
from pydantic import BaseModel, Field

from newsletter.models import Comparison, Review, ToolEntry, tool_key

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


# --- sentences -------------------------------------------------------------------------------

_REASON = re.compile(
    r"\b(ship|skip|worth|upgrade|earns?|recommend\w*|because|unlock|moat|risk|kills?|breaks?|"
    r"justify|matters?|wins?|loses?|problem|differentiator|decision)\b",
    re.IGNORECASE,
)
_COMPARISON = re.compile(
    r"\b(than|vs\.?|versus|against|instead|better|worse|faster|slower|cheaper|difference|unlike|"
    r"categorically|compared)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d")


def sentences(text: str) -> list[str]:
    """Whole sentences of ``text`` (whitespace collapsed), by ``sentencex``."""
    clean = " ".join(text.split())
    return [clean[start:end] for start, end in _spans(clean)]


def _spans(clean: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence in ``clean``: runs of sentences are sliced from the text
    itself, so a quote never gains or loses a character between its sentences."""
    spans: list[tuple[int, int]] = []
    position = 0
    for part in sentencex.segment("en", clean) if clean else []:
        stripped = part.strip()
        if not stripped:
            continue
        start = clean.find(stripped, position)
        if start < 0:  # the segmenter changed the text: fall back to the rest as one sentence
            spans.append((position, len(clean)))
            break
        spans.append((start, start + len(stripped)))
        position = start + len(stripped)
    return spans


def sentence_weight(sentence: str) -> int:
    """How much of a reason a sentence carries: a verdict word, a number, a comparison."""
    return (
        3 * bool(_REASON.search(sentence))
        + 2 * bool(_NUMBER.search(sentence))
        + bool(_COMPARISON.search(sentence))
    )


def reason_quote(text: str, limit: int = QUOTE_LIMIT) -> tuple[str, bool]:
    """Whole sentences of ``text`` within ``limit`` characters, the weightiest first chosen,
    shown in their order; left-out stretches are marked with an ellipsis between sentences.

    Never cuts a sentence: when no sentence fits, the shortest of the weightiest is kept whole.
    """
    clean = " ".join(text.split())
    spans = _spans(clean)
    if not spans:
        return "", False
    if len(clean) <= limit:
        return clean, False
    parts = [clean[start:end] for start, end in spans]

    def joined(indices: list[int]) -> str:
        runs: list[str] = []
        run_start = previous = -2
        for index in sorted(indices):
            if index != previous + 1:
                if previous >= 0:
                    runs.append(clean[spans[run_start][0] : spans[previous][1]])
                run_start = index
            previous = index
        runs.append(clean[spans[run_start][0] : spans[previous][1]])
        return ELISION.join(runs)

    ranked = sorted(range(len(parts)), key=lambda i: (-sentence_weight(parts[i]), len(parts[i]), i))
    chosen: list[int] = []
    for index in ranked:
        if len(joined([*chosen, index])) <= limit:
            chosen.append(index)
    if not chosen:
        best = sentence_weight(parts[ranked[0]])
        chosen = [min((i for i in ranked if sentence_weight(parts[i]) == best), key=lambda i: len(parts[i]))]
    return joined(chosen), True


def trim_words(text: str, limit: int = QUOTE_LIMIT) -> tuple[str, bool]:
    """Collapse whitespace, cut at a word boundary under ``limit`` and add an ellipsis.

    Only for labels we write ourselves; quotes use ``reason_quote``.
    """
    clean = " ".join(text.split())
    if len(clean) <= limit:
        return clean, False
    cut = clean[: limit - len(ELLIPSIS) + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else cut[: limit - len(ELLIPSIS)]
    cut = cut.rstrip(" ,;:.-—–'\"“(")
    return cut + ELLIPSIS, True


# --- names -----------------------------------------------------------------------------------


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


def _word_prefix(short: str, name: str) -> bool:
    a, b = tool_key(short).split(), tool_key(name).split()
    return bool(a) and b[: len(a)] == a


def name_forms(name: str, others: Iterable[str]) -> list[str]:
    """``name`` and its shortenings that no other tool of the issue could be read as.

    "Mistral 3" is not offered for "Mistral 3 Small (24B)" when the issue also has
    "Mistral 3 8B & 70B Instruct": a shortening must not be a word-prefix of another name.
    """
    rivals = [other for other in others if tool_key(other) != tool_key(name)]
    forms = [name]
    plain = short_name(name)
    candidates = [plain] + [short_name(name, n) for n in range(len(plain.split()) - 1, 1, -1)]
    for candidate in candidates:
        if candidate in forms or not candidate.strip():
            continue
        if any(_word_prefix(candidate, rival) or _word_prefix(rival, candidate) for rival in rivals):
            continue
        forms.append(candidate)
    return forms


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _same_words(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    return " ".join(a.casefold().split()) == " ".join(b.casefold().split())


# --- one tool --------------------------------------------------------------------------------

_ABSTAIN = re.compile(r"^\s*no panel take\s*\.?\s*$", re.IGNORECASE)
_FREE = re.compile(r"\b(free|open[- ]source|open[- ]weight|apache|mit license)\b", re.IGNORECASE)
_PAID = re.compile(r"\bpaid\b|\$\s?\d", re.IGNORECASE)


def is_abstention(review: Review) -> bool:
    """ "No panel take": a named persona with no verdict and no score (or that very text)."""
    quote = getattr(review, "quote", None) or ""
    if _ABSTAIN.match(quote):
        return True
    return bool(review.persona) and review.verdict is None and review.score is None and not quote.strip()


def _abstainers(tool: ToolEntry) -> list[str]:
    """The personas the page names as not reviewing this tool ("No panel take"), in page order."""
    named = [a.persona for a in tool.abstentions if a.persona]
    named += [r.persona for r in tool.reviews if r.persona and is_abstention(r) and r.persona not in named]
    return named


def _quote_text(review: Review) -> str:
    return (getattr(review, "quote", None) or "").strip()


def panel_votes(tool: ToolEntry) -> tuple[int | None, int | None]:
    """(ship, skip) from the decision table, else counted from named panelists' verdicts."""
    if tool.panel_ship is not None and tool.panel_skip is not None:
        return tool.panel_ship, tool.panel_skip
    named = [review for review in tool.reviews if review.persona and review.verdict]
    if not named:
        return None, None
    ship = sum(1 for review in named if review.verdict == "ship")
    return ship, len(named) - ship


def panel_call(tool: ToolEntry) -> str | None:
    """The panel's call: ship at >= 50 % (a 50 % the page labels "skip" stays a skip)."""
    if tool.ship_pct is None:
        return None
    if tool.ship_pct == 50 and tool.panel_verdict == "skip":
        return "skip"
    return "ship" if tool.ship_pct >= 50 else "skip"


def pricing_conflict(pricing: str | None, detail: str | None) -> bool:
    """Entry label "Paid" but decision table "Open Source" (or the reverse)."""
    if not pricing or not detail:
        return False

    def kind(text: str) -> str | None:
        free, paid = bool(_FREE.search(text)), bool(_PAID.search(text))
        return "free" if free and not paid else "paid" if paid and not free else None

    label, table = kind(pricing), kind(detail)
    return label is not None and table is not None and label != table


def telling_quote(reviews: list[Review]) -> Review | None:
    """The highest-scored review (first among equals), else the first one; never an abstention."""
    usable = [review for review in reviews if _quote_text(review) and not is_abstention(review)]
    if not usable:
        return None
    scored = [review for review in usable if review.score is not None]
    if scored:
        return max(scored, key=lambda review: review.score or 0)
    return usable[0]


@dataclass
class IssueMemory:
    """What earlier comparisons of the same issue already said: say it once."""

    introduced: dict[str, str] = field(default_factory=dict)  # tool key -> title it was introduced in
    quotes: dict[str, set[str]] = field(default_factory=dict)  # tool key -> review texts already shown


def _as_quote(review: Review, limit: int = QUOTE_LIMIT) -> QuoteSummary | None:
    text, trimmed = reason_quote(_quote_text(review), limit)
    if not text:
        return None
    return QuoteSummary(
        text=text, persona=review.persona, score=review.score, verdict=review.verdict, trimmed=trimmed
    )


def _reason_review(tool: ToolEntry, call: str | None, shown: set[str]) -> Review | None:
    """The strongest reason for the panel's call: a voter on the call's side, best score first."""
    usable = [
        r for r in tool.reviews if _quote_text(r) and not is_abstention(r) and _quote_text(r) not in shown
    ]
    on_side = [r for r in usable if r.verdict == call] if call else []
    pool = on_side or [r for r in usable if r.verdict is None] or ([] if call else usable)
    if call == "skip" and on_side:
        # The strongest reason for a skip is the most convinced skipper: the lowest score.
        return min(on_side, key=lambda r: 101 if r.score is None else r.score)
    return telling_quote(pool)


def _dissent_review(tool: ToolEntry, call: str | None) -> Review | None:
    """A named reviewer against the panel's call: the lowest score against a ship, highest against a skip."""
    if call is None:
        return None
    against = "skip" if call == "ship" else "ship"
    dissenters = [r for r in tool.reviews if r.persona and r.verdict == against and _quote_text(r)]
    if not dissenters:
        return None
    if against == "skip":
        return min(dissenters, key=lambda r: 101 if r.score is None else r.score)
    return max(dissenters, key=lambda r: -1 if r.score is None else r.score)


def summarise_tool(tool: ToolEntry, memory: IssueMemory | None = None, *, title: str = "") -> ToolSummary:
    ship, skip = panel_votes(tool)
    call = panel_call(tool)
    key = tool.key
    shown = memory.quotes.setdefault(key, set()) if memory else set()
    reason = _reason_review(tool, call, shown)
    dissent = _dissent_review(tool, call)
    reviews = [r for r in tool.reviews if not is_abstention(r)]
    scores = [r.score for r in reviews if r.score is not None]
    introduced_in = memory.introduced.get(key) if memory else None
    summary = ToolSummary(
        name=tool.name,
        key=key,
        short_name=short_name(tool.name),
        tagline=tool.tagline,
        category=tool.category,
        ship_pct=tool.ship_pct,
        panel_verdict=tool.panel_verdict,
        ship_votes=ship,
        skip_votes=skip,
        reviewers=len(reviews),
        ship_voters=[r.persona for r in reviews if r.persona and r.verdict == "ship"],
        skip_voters=[r.persona for r in reviews if r.persona and r.verdict == "skip"],
        abstainers=_abstainers(tool),
        avg_score=round(sum(scores) / len(scores)) if scores else None,
        community=tool.community,
        pricing=tool.pricing,
        pricing_detail=tool.pricing_detail,
        pricing_conflict=pricing_conflict(tool.pricing, tool.pricing_detail),
        best_for=tool.best_for,
        quote=_as_quote(reason) if reason else None,
        dissent=_as_quote(dissent) if dissent and dissent is not reason else None,
        call=call,
        introduced=introduced_in is None,
        seen_in=introduced_in,
    )
    if memory is not None:
        if introduced_in is None:
            memory.introduced[key] = title
        if reason is not None:
            shown.add(_quote_text(reason))
    return summary


# --- one comparison --------------------------------------------------------------------------


def summarise(comparison: Comparison, *, url: str, memory: IssueMemory | None = None) -> ComparisonSummary:
    """The verdict summary of one comparison. ``url`` is its full page on the site."""
    safe = defuse_comparison(comparison)
    a, b = (summarise_tool(tool, memory, title=safe.title) for tool in safe.tools)
    outcome, leader = _outcome(a, b)
    if leader is not None:
        leader.is_winner = True
    verdict, glance = _verdict_lines(a, b, outcome, leader)
    return ComparisonSummary(
        slug=safe.stable_slug,
        title=safe.title,
        category=safe.category or a.category or b.category,
        url=defuse_url(url),
        published_at=safe.published_at,
        tools=[a, b],
        outcome=outcome,
        winner=leader.name if leader else None,
        verdict=verdict,
        glance=glance,
        decisiveness=_decisiveness(a, b, outcome),
    )


def _outcome(a: ToolSummary, b: ToolSummary) -> tuple[Outcome, ToolSummary | None]:
    """(outcome, the tool with the higher %, None on equal or missing percentages)."""
    if a.ship_pct is None and b.ship_pct is None:
        return "no_panel", None
    if a.ship_pct is None or b.ship_pct is None:
        return "one_scored", None
    leader = None if a.ship_pct == b.ship_pct else (a if a.ship_pct > b.ship_pct else b)
    if a.call != b.call:
        return "winner", leader or (a if a.call == "ship" else b)
    return ("both_ship" if a.call == "ship" else "both_skip"), leader


def _decisiveness(a: ToolSummary, b: ToolSummary, outcome: Outcome) -> int:
    """A clear winner leads, then a lead among two ships or two skips by its margin; ties last
    of the scored; unscored at the end."""
    margin = abs((a.ship_pct or 0) - (b.ship_pct or 0))
    base = {"winner": 300, "both_ship": 200, "both_skip": 100, "one_scored": -100, "no_panel": -200}[outcome]
    if outcome in ("both_ship", "both_skip") and margin == 0:
        return 0
    return base + margin


def _pct(tool: ToolSummary) -> str:
    return f"{tool.ship_pct}%"


def _verdict_lines(
    a: ToolSummary, b: ToolSummary, outcome: Outcome, leader: ToolSummary | None
) -> tuple[str, str]:
    """(the verdict sentence, the at-a-glance line)."""
    other = (b if leader is a else a) if leader is not None else None
    if outcome == "winner" and leader is not None and other is not None:
        return (
            f"Ship {leader.name}, skip {other.name}: {_pct(leader)} of the panel ship {leader.name}, "
            f"{_pct(other)} ship {other.name}.",
            f"Ship {leader.name}, skip {other.name} ({_pct(leader)} vs {_pct(other)})",
        )
    if outcome == "both_ship":
        if leader is None or other is None:
            how = "unanimously" if a.ship_pct == 100 else f"at {_pct(a)} each"
            return (
                f"The panel ships both, {how}: a tie, no winner.",
                f"{a.name} and {b.name} tie at {_pct(a)}; both ship",
            )
        return (
            f"The panel ships both; {leader.name} is its pick at {_pct(leader)}, "
            f"{other.name} has {_pct(other)}.",
            f"{leader.name} leads {other.name}, {_pct(leader)} to {_pct(other)}; both ship",
        )
    if outcome == "both_skip":
        if leader is None or other is None:
            return (
                f"The panel skips both: {_pct(a)} each, neither reaches half.",
                f"Both skipped: {a.name} and {b.name} at {_pct(a)} each",
            )
        return (
            f"The panel skips both: neither reaches half; {leader.name} fares better "
            f"({_pct(leader)} vs {_pct(other)}).",
            f"Both skipped: {leader.name} {_pct(leader)}, {other.name} {_pct(other)}",
        )
    if outcome == "one_scored":
        scored, unscored = (a, b) if a.ship_pct is not None else (b, a)
        call = "ships" if scored.call == "ship" else "does not ship"
        return (
            f"No head-to-head verdict: only {scored.name} has a panel score "
            f"({_pct(scored)}: the panel {call} it); {unscored.name} was not scored.",
            f"Only {scored.name} scored ({_pct(scored)}); {unscored.name} not yet",
        )
    return (
        "No panel verdict yet: the panel has not scored these tools.",
        f"{a.name} vs {b.name}: no panel verdict yet",
    )


# --- the issue -------------------------------------------------------------------------------


def summarise_issue(comparisons: Sequence[tuple[Comparison, str]]) -> list[ComparisonSummary]:
    """Summaries of an issue's comparisons, most decisive first (a tie never leads a decisive one),
    each tool introduced once: later comparisons refer to it by name and repeat no quote."""
    first_pass = [summarise(comparison, url=url) for comparison, url in comparisons]
    order = sorted(range(len(first_pass)), key=lambda i: (-first_pass[i].decisiveness, i))
    memory = IssueMemory()
    return [summarise(comparisons[i][0], url=comparisons[i][1], memory=memory) for i in order]


def _subject_candidates(lead: ComparisonSummary, forms: dict[str, list[str]]) -> list[str]:
    a, b = lead.tools
    leader = next((tool for tool in lead.tools if tool.is_winner), None)
    out: list[str] = []
    for depth in range(max(len(f) for f in forms.values())):

        def pick(tool: ToolSummary, depth: int = depth) -> str:
            options = forms[tool.key]
            return options[min(depth, len(options) - 1)]

        if lead.outcome == "winner" and leader is not None:
            other = b if leader is a else a
            out.append(f"Ship {pick(leader)} over {pick(other)} ({_pct(leader)} vs {_pct(other)})")
            out.append(f"Ship {pick(leader)} over {pick(other)}")
        elif leader is not None:
            other = b if leader is a else a
            both = "both ship" if lead.outcome == "both_ship" else "both skipped"
            out.append(f"{pick(leader)} leads {pick(other)}, {_pct(leader)} to {_pct(other)}; {both}")
            out.append(f"{pick(leader)} leads {pick(other)}; {both}")
        elif lead.outcome == "both_ship":
            out.append(f"{pick(a)} and {pick(b)}: the panel ships both")
        elif lead.outcome == "both_skip":
            out.append(f"{pick(a)} and {pick(b)}: the panel skips both")
        else:
            out.append(f"{pick(a)} vs {pick(b)}")
    return out


def subject_line(summaries: list[ComparisonSummary], limit: int = SUBJECT_LIMIT) -> str:
    """≤ ``limit`` characters: the lead's winner (its full name, or a shortening no other tool
    of the issue shares), and how many more verdicts."""
    if not summaries:
        raise ValueError("an issue needs at least one comparison")
    lead = summaries[0]
    more = len(summaries) - 1
    tail = f" — +{more} more verdict{'s' if more != 1 else ''}" if more else ""
    names = [tool.name for summary in summaries for tool in summary.tools]
    forms = {tool.key: name_forms(tool.name, names) for tool in lead.tools}
    candidates = _subject_candidates(lead, forms)
    for candidate in candidates:
        if len(candidate + tail) <= limit:
            return candidate + tail
    head, _ = trim_words(candidates[-1], limit - len(tail))
    return (head + tail)[:limit]


def preheader_line(summaries: list[ComparisonSummary], limit: int = PREHEADER_LIMIT) -> str:
    """What the subject does not say: the lead's split and dissent, then the other comparisons by
    whole title (never cut mid-title; "+N more" for those that do not fit)."""
    lead = summaries[0]
    facts: list[str] = []
    ordered = sorted(lead.tools, key=lambda tool: not tool.is_winner)  # the subject's order
    splits = [_compact_votes(tool) for tool in ordered]
    if all(splits):
        facts.append("votes " + " vs ".join(s for s in splits if s))
    for tool, dissent in lead.dissents:
        if dissent.persona:
            facts.append(f"the {dissent.persona} dissents on {tool.short_name}")
    if not facts and lead.pricing_contrast:
        facts.append(f"pricing: {lead.pricing_contrast}")
    text = ""
    for fact in facts:
        candidate = f"{text}, {fact}" if text else fact[:1].upper() + fact[1:]
        if len(candidate) + 1 <= limit:
            text = candidate
    text = f"{text}." if text else ""
    rest = summaries[1:]
    titles: list[str] = []
    for summary in rest:  # whole titles only, while they fit with the "+N more" that follows
        if len(_with_titles(text, [*titles, summary.title], len(rest))) > limit:
            break
        titles.append(summary.title)
    if titles:
        text = _with_titles(text, titles, len(rest))
    elif rest and len(text) + 24 <= limit:
        text = f"{text} +{len(rest)} more verdict{'s' if len(rest) != 1 else ''} inside.".strip()
    if not text:
        text, _ = trim_words(lead.verdict, limit)
    return text


def _with_titles(head: str, titles: list[str], total: int) -> str:
    left = total - len(titles)
    also = "Also: " + "; ".join(titles) + (f" +{left} more." if left else ".")
    return f"{head} {also}".strip()


def _compact_votes(tool: ToolSummary) -> str | None:
    """ "3–1" (ship–skip), "3 of 4"; None when the page gives no split."""
    if tool.ship_votes is not None and tool.skip_votes is not None:
        return f"{tool.ship_votes}–{tool.skip_votes}"
    line = tool.vote_line
    return line.removesuffix(" reviewers ship") if line else None


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
