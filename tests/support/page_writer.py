"""Render a ``Comparison`` as the site would, in either layout, with the layout variations
the parser must survive; ``carried`` is what that page can say about the comparison.

The property test checks ``parse_page(write(c, layout)) == carried(c, layout)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.models import Abstention, Comparison, Review, ToolEntry


@dataclass(frozen=True)
class Layout:
    rich: bool = True  # persona headings, scores, Decision table; else compact quotes
    decision: bool = True  # rich only: the Decision table
    scorecard_first: bool = False  # the scorecard before the Decision table
    scorecard_heading: bool = True  # rich only: "Reviewer scorecard" heading
    verdict_own_line: bool = False  # "80/100" then "Ship"
    quoted_takes: bool = False  # rich only: the takes in quotation marks
    attributions: bool = False  # "— Persona" under each quote
    straight_quotes: bool = False  # compact only: "..." instead of “...”
    initials: bool = True  # rich only: the avatar letter before the card
    split_community: bool = False  # "12 votes · 83% ship" over two lines
    blank_lines: bool = True
    crlf: bool = False


def write(comparison: Comparison, layout: Layout, personas: list[str]) -> str:
    """The page; ``personas`` is the scorecard's order (the model keeps reviews and
    abstentions in two lists)."""
    a, b = comparison.tools
    lines = [f"Compare/{comparison.title}", "AI tool comparison", comparison.title]
    lines.append("Which one should you ship with? Here is the side-by-side panel verdict.")
    for tool in (a, b):
        lines += _card(tool, layout)
    sections = [_scorecard(a, b, layout, personas)]
    if layout.rich and layout.decision:
        sections.insert(0, _decision(a, b))
    if layout.scorecard_first:
        sections.reverse()
    for section in sections:
        lines += section
    lines += [
        "Weekly AI Tool Verdicts",
        "Get the next comparison in your inbox",
        "Bookmarks",
        "No bookmarks yet",
    ]
    text = ("\n\n" if layout.blank_lines else "\n").join(lines)
    return text.replace("\n", "\r\n") if layout.crlf else text


def carried(comparison: Comparison, layout: Layout) -> Comparison:
    """The comparison as far as a page in ``layout`` can carry it."""
    a, b = comparison.tools
    tools = [_carried_tool(a, b, layout), _carried_tool(b, a, layout)]
    categories = [tool.category for tool in tools if tool.category]
    if not categories:
        category = None
    elif len(set(categories)) == 1:
        category = categories[0]
    else:
        category = " / ".join(categories)
    return comparison.model_copy(update={"category": category, "tools": tools})


def _carried_tool(tool: ToolEntry, other: ToolEntry, layout: Layout) -> ToolEntry:
    if layout.rich and layout.decision:
        return tool
    update: dict[str, object] = {
        "pricing_detail": None,
        "best_for": None,
        "panel_ship": None,
        "panel_skip": None,
    }
    if layout.rich:
        return tool.model_copy(update=update)
    update["panel_verdict"] = None
    update["reviews"] = [
        Review(persona=r.persona if layout.attributions else None, quote=r.quote) for r in tool.reviews
    ]
    update["abstentions"] = [
        # A compact page names an abstainer only through the quote on the other tool.
        Abstention(persona=a.persona if layout.attributions and a.persona in _reviewers(other) else None)
        for a in tool.abstentions
    ]
    return tool.model_copy(update=update)


def _reviewers(tool: ToolEntry) -> set[str | None]:
    return {review.persona for review in tool.reviews}


def _card(tool: ToolEntry, layout: Layout) -> list[str]:
    lines = []
    if layout.rich and layout.initials and tool.name[:1].upper().isascii() and tool.name[:1].isalnum():
        lines.append(tool.name[0].upper())
    if tool.category:
        lines.append(tool.category)
    lines.append(tool.name)
    if tool.tagline:
        lines.append(tool.tagline)
    if layout.rich and tool.panel_verdict:
        lines.append(tool.panel_verdict.capitalize())
    lines += [f"{tool.ship_pct}%" if tool.ship_pct is not None else "—", "Panel ship"]
    if tool.community:
        lines += tool.community.split(" · ") if layout.split_community else [tool.community]
    elif not layout.rich:
        lines.append("—")
    lines.append("Community")
    if tool.pricing:
        lines.append(tool.pricing)
    lines.append("Entry")
    if tool.description:
        lines += tool.description.split("\n\n")
    return lines


def _decision(a: ToolEntry, b: ToolEntry) -> list[str]:
    def verdict(tool: ToolEntry) -> str:
        if tool.panel_ship is None or tool.panel_skip is None:
            return (tool.panel_verdict or "—").capitalize()
        label = f"{tool.panel_verdict.capitalize()} · " if tool.panel_verdict else ""
        return f"{label}{tool.panel_ship} ship / {tool.panel_skip} skip"

    return [
        "Decision",
        a.name,
        b.name,
        "Panel verdict",
        verdict(a),
        verdict(b),
        "Community",
        a.community or "No community votes yet",
        b.community or "No community votes yet",
        "Pricing",
        a.pricing_detail or "—",
        b.pricing_detail or "—",
        "Best for",
        a.best_for or "—",
        b.best_for or "—",
        "Category",
        a.category or "—",
        b.category or "—",
    ]


def _scorecard(a: ToolEntry, b: ToolEntry, layout: Layout, personas: list[str]) -> list[str]:
    lines = ["Reviewer scorecard"] if layout.scorecard_heading or not layout.rich else []
    for persona in personas:
        if layout.rich:
            lines.append(persona)
        for tool in (a, b):
            review = next((r for r in tool.reviews if r.persona == persona), None)
            if review is None:
                lines.append("No panel take")
            elif layout.rich:
                lines += _rich_take(review, layout)
            else:
                lines += _compact_take(review, layout)
    return lines


def _rich_take(review: Review, layout: Layout) -> list[str]:
    verdict = review.verdict or ""
    if layout.verdict_own_line:
        lines = [f"{review.score}/100", verdict.capitalize()]
    else:
        lines = [f"{review.score}/100 · {verdict}"]
    lines += _paragraphs(review.quote, "“", "”") if layout.quoted_takes else review.quote.split("\n\n")
    if layout.attributions:
        lines.append(f"— {review.persona}")
    return lines


def _compact_take(review: Review, layout: Layout) -> list[str]:
    opening, closing = ('"', '"') if layout.straight_quotes else ("“", "”")
    lines = _paragraphs(review.quote, opening, closing)
    if layout.attributions:
        lines.append(f"— {review.persona}")
    return lines


def _paragraphs(quote: str, opening: str, closing: str) -> list[str]:
    paragraphs = quote.split("\n\n")
    paragraphs[0] = opening + paragraphs[0]
    paragraphs[-1] += closing
    return paragraphs
