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

The models live in ``content`` (pydantic, so the archive's issue.json is exactly what the
templates rendered); sentence and name wording in ``wording``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from newsletter.issues.content import (
    PREHEADER_LIMIT,
    QUOTE_LIMIT,
    SUBJECT_LIMIT,
    ComparisonSummary,
    IssueContent,
    Outcome,
    QuoteSummary,
    ToolSummary,
    defuse_comparison,
    defuse_url,
)
from newsletter.issues.wording import name_forms, reason_quote, short_name, trim_words
from newsletter.models import Comparison, Review, ToolEntry

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
