"""The site's comparison pages as text, in both layouts.

A page is read by its structure, never by the words of one particular page:

* the two tool cards are found by their "Panel ship" label, with the ship
  percentage on the line before it (``75%``, or ``—`` when unknown); the tool
  name is the card line that matches one side of the "X vs Y" title (or, when
  the title does not help, the card's lines are read by position: category,
  name, tagline);
* after the percentage come the community value and its ``Community`` label,
  the entry price and its ``Entry`` label, then the description paragraphs;
* the optional ``Decision`` table has a header row (tool A, tool B), then rows of
  a label followed by the value for tool A and the value for tool B;
* the ``Reviewer scorecard`` is either "rich" — persona headings, each followed by
  one take per tool (``80/100 · ship`` and the quote, or ``No panel take``) — or
  "compact" — quotes in curly quotes alternating tool A, tool B;
* the site chrome after the content (newsletter sign-up, bookmarks) is dropped.

Blank lines carry no meaning (one layout has them, the other does not). Any page
that cannot be read raises SourceError with the 1-based line where the problem
was seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import ValidationError

from newsletter.errors import SourceError
from newsletter.models import Comparison, Review, ToolEntry, tool_key

PANEL_LABEL = "panel ship"
COMMUNITY_LABEL = "community"
ENTRY_LABEL = "entry"
DECISION_HEADING = "decision"
SCORECARD_HEADING = "reviewer scorecard"
NO_TAKE = "no panel take"
# Values the site shows when a number is missing.
EMPTY_VALUES = {"—", "–", "-", "n/a", "no community votes yet", "no votes yet"}
VERDICT_LABELS = {"ship", "skip"}
# Site chrome that follows the comparison content on every page.
FOOTER_PREFIXES = (
    "weekly ai tool verdicts",
    "get the next comparison",
    "new ai tools ship daily",
    "bookmarks",
    "loading bookmarks",
    "no bookmarks yet",
    "bookmark tools to save",
)

PCT_RE = re.compile(r"^(\d{1,3})\s*%$")
SCORE_RE = re.compile(r"^(\d{1,3})\s*/\s*100\b\s*(?:[·•|:,-]\s*)?(ship|skip)?\s*$", re.IGNORECASE)
PANEL_VERDICT_RE = re.compile(r"^(?P<verdict>ship|skip)\b", re.IGNORECASE)
PANEL_VOTES_RE = re.compile(r"(?P<ship>\d{1,6})\s*ship\s*/\s*(?P<skip>\d{1,6})\s*skip\b", re.IGNORECASE)
INITIAL_RE = re.compile(r"^[A-Z0-9]{1,2}$")
VS_RE = re.compile(r"\s+vs\.?\s+", re.IGNORECASE)
OPEN_QUOTES = '“"«„'
CLOSE_QUOTES = '”"»“'
MAX_SHORT = 120


@dataclass
class Line:
    number: int  # 1-based line number in the source text
    text: str


@dataclass
class _Card:
    """One tool card as found on the page, with where its parts are."""

    name: str
    name_line: int
    start: int  # index (in the non-blank lines) of the card's first line
    pct_index: int  # index of the ship % line
    tagline: str | None = None
    category: str | None = None
    label_verdict: str | None = None
    ship_pct: int | None = None
    community: str | None = None
    pricing: str | None = None
    description: str | None = None
    body_start: int = 0  # index of the first description line
    extra: dict[str, str | None] = field(default_factory=dict)
    reviews: list[Review] = field(default_factory=list)
    panel_verdict: str | None = None
    panel_ship: int | None = None
    panel_skip: int | None = None


def parse_page(text: str, *, source: str = "<page>") -> Comparison:
    """Read one comparison page (either layout) into a Comparison."""
    return _PageParser(text, source).parse()


class _PageParser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self.total_lines = max(len(raw), 1)
        self.lines = [
            Line(number, cleaned)
            for number, line in enumerate(raw, start=1)
            for cell in _markdown_cells(line)
            if (cleaned := _clean(cell))
        ]

    # --- helpers -----------------------------------------------------------------

    def error(self, message: str, index: int | None = None) -> SourceError:
        if index is None:
            line = self.lines[-1].number if self.lines else 1
        elif index >= len(self.lines):
            line = self.total_lines
        else:
            line = self.lines[index].number
        return SourceError(message, source=self.source, line=line)

    def low(self, index: int) -> str:
        return self.lines[index].text.casefold() if 0 <= index < len(self.lines) else ""

    def text_at(self, index: int) -> str:
        return self.lines[index].text

    # --- the page ----------------------------------------------------------------------

    def parse(self) -> Comparison:
        if not self.lines:
            raise SourceError("empty page: no comparison found", source=self.source, line=1)
        end = self._content_end()
        markers = [i for i in range(end) if self.low(i) == PANEL_LABEL]
        if len(markers) < 2:
            where = markers[0] if markers else None
            raise self.error(
                f"expected two tool cards (a '{PANEL_LABEL.capitalize()}' label for each tool), "
                f"found {len(markers)}",
                where,
            )
        if len(markers) > 2:
            raise self.error(
                f"more than two tool cards: a third '{PANEL_LABEL.capitalize()}' label", markers[2]
            )
        title_index, title = self._title(markers[0])
        names = _title_names(title) if title else set()

        first_start = title_index + 1 if title_index is not None else 0
        card_a = self._card(first_start, markers[0], names, position=0)
        after_a = self._card_values(card_a, markers[0], markers[1])
        card_b = self._card(after_a, markers[1], names, position=1)
        card_a.description = self._description(after_a, card_b.start)
        after_b = self._card_values(card_b, markers[1], end)
        section = self._next_section(after_b, end)
        card_b.description = self._description(after_b, section)

        cards = [card_a, card_b]
        index = section
        if index < end and self.low(index) == DECISION_HEADING:
            index = self._decision(index, end, cards)
        if index < end and self.low(index) == SCORECARD_HEADING:
            index += 1
        self._scorecard(index, end, cards)

        if title is None:
            title = f"{card_a.name} vs {card_b.name}"
        return self._build(title, cards)

    def _content_end(self) -> int:
        """Index of the first line of site chrome after the content (or len(lines))."""
        seen_panel = False
        for index, line in enumerate(self.lines):
            low = line.text.casefold()
            if low == PANEL_LABEL:
                seen_panel = True
            elif seen_panel and low.startswith(FOOTER_PREFIXES) and len(low) <= 80:
                return index
        return len(self.lines)

    def _title(self, first_marker: int) -> tuple[int | None, str | None]:
        """The "X vs Y" heading before the first card (the breadcrumb is a fallback)."""
        crumb: str | None = None
        for index in range(first_marker):
            text = self.text_at(index)
            if text.casefold().startswith("compare/"):
                crumb = text.split("/", 1)[1].strip() or None
                continue
            if VS_RE.search(text) and len(text) <= 300:
                return index, text
        return None, crumb

    def _card(self, start: int, marker: int, names: set[str], *, position: int) -> _Card:
        """The lines from ``start`` to the ship % line: [initial] category, name, tagline [label]."""
        pct_index = marker - 1
        if pct_index < start:
            raise self.error("'Panel ship' label without a ship percentage before it", marker)
        stop = pct_index
        label_verdict = None
        if stop - 1 >= start and self.low(stop - 1) in VERDICT_LABELS:
            label_verdict = self.low(stop - 1)
            stop -= 1
        region = list(range(start, stop))
        name_at = next((i for i in reversed(region) if tool_key(self.text_at(i)) in names), None)
        if name_at is None:
            # Read by position: the last three lines are category, name, tagline.
            if not region:
                raise self.error(f"tool {'AB'[position]} has no name before its ship percentage", pct_index)
            name_at = region[-2] if len(region) >= 2 else region[-1]
        tagline_lines = [self.text_at(i) for i in range(name_at + 1, stop)]
        name = self.text_at(name_at)
        card_start = name_at
        category = None
        before = name_at - 1
        if before >= start:
            if before - 1 >= start and _is_initial(self.text_at(before - 1), name):
                category, card_start = self.text_at(before), before - 1
            elif _is_initial(self.text_at(before), name):
                card_start = before
            elif _looks_like_label(self.text_at(before)):
                category, card_start = self.text_at(before), before
        card = _Card(
            name=name,
            name_line=self.lines[name_at].number,
            start=card_start,
            pct_index=pct_index,
            tagline=" ".join(tagline_lines) or None,
            category=category,
            label_verdict=label_verdict,
        )
        pct = self.text_at(pct_index)
        match = PCT_RE.match(pct)
        if match:
            value = int(match.group(1))
            if value > 100:
                raise self.error(f"ship percentage {value}% is over 100", pct_index)
            card.ship_pct = value
        elif pct.casefold() not in EMPTY_VALUES:
            raise self.error(
                f"expected a ship percentage like '75%' before 'Panel ship', got {pct!r}", pct_index
            )
        return card

    def _card_values(self, card: _Card, marker: int, limit: int) -> int:
        """Community and entry price after 'Panel ship'; returns the index after them."""
        index = marker + 1
        # [value] Community
        for offset in (0, 1):
            if index + offset < limit and self.low(index + offset) == COMMUNITY_LABEL:
                if offset == 1:
                    card.community = _value(self.text_at(index))
                index += offset + 1
                break
        # [price] Entry
        for offset in (0, 1):
            if index + offset < limit and self.low(index + offset) == ENTRY_LABEL:
                if offset == 1:
                    card.pricing = _value(self.text_at(index))
                index += offset + 1
                break
        return index

    def _next_section(self, start: int, end: int) -> int:
        """Where a description (or the Decision table) stops: the next section heading,
        or, on a page without headings, the first persona heading or curly quote."""
        for index in range(start, end):
            if self.low(index) in (DECISION_HEADING, SCORECARD_HEADING):
                return index
        for index in range(start, end):
            if self.text_at(index)[0] == "“":
                return index
            if _is_take(self.low(index)):
                # A take belongs to the persona heading on the line before it.
                return max(start, index - 1)
        return end

    def _description(self, start: int, stop: int) -> str | None:
        parts = [self.text_at(i) for i in range(start, stop)]
        return "\n\n".join(parts) or None

    # --- decision table --------------------------------------------------------------

    def _decision(self, heading: int, end: int, cards: list[_Card]) -> int:
        stop = self._next_section(heading + 1, end)
        index = heading + 1
        # Header row: the two tool names (optional).
        if index + 1 < stop and {tool_key(self.text_at(index)), tool_key(self.text_at(index + 1))} == {
            tool_key(cards[0].name),
            tool_key(cards[1].name),
        }:
            if tool_key(self.text_at(index)) != tool_key(cards[0].name):
                raise self.error("Decision table names the tools in the other order", index)
            index += 2
        while index < stop:
            if self.low(index) == DECISION_HEADING:
                raise self.error("a second Decision table", index)
            if index + 2 >= stop:
                raise self.error(
                    f"Decision row {self.text_at(index)!r} needs a value for each of the two tools", index
                )
            label = self.low(index)
            for card, value_index in zip(cards, (index + 1, index + 2), strict=True):
                self._decision_value(card, label, value_index)
            index += 3
        return stop

    def _decision_value(self, card: _Card, label: str, index: int) -> None:
        value = self.text_at(index)
        if label == "panel verdict":
            if _value(value) is None:
                return
            verdict = PANEL_VERDICT_RE.match(value)
            votes = PANEL_VOTES_RE.search(value)
            if verdict is None and votes is None:
                raise self.error(
                    f"panel verdict should read like 'Ship · 3 ship / 1 skip', got {value!r}", index
                )
            if verdict is not None:
                card.panel_verdict = verdict.group("verdict").lower()
            if votes is not None:
                card.panel_ship = int(votes.group("ship"))
                card.panel_skip = int(votes.group("skip"))
        elif label == "community":
            if card.community is None:
                card.community = _value(value)
        elif label == "pricing":
            card.extra["pricing_detail"] = _value(value)
        elif label == "best for":
            card.extra["best_for"] = _value(value)
        elif label == "category" and card.category is None:
            card.category = _value(value)
        # Unknown rows are kept out of the model: the page may grow new rows.

    # --- reviewer scorecard ----------------------------------------------------------

    def _scorecard(self, start: int, end: int, cards: list[_Card]) -> None:
        if any(_is_take(self.low(i)) for i in range(start, end)):
            self._rich_scorecard(start, end, cards)
        else:
            self._compact_scorecard(start, end, cards)

    def _rich_scorecard(self, start: int, end: int, cards: list[_Card]) -> None:
        persona: str | None = None
        persona_index = start
        takes = 0
        index = start
        while index < end:
            low = self.low(index)
            if _is_take(low):
                if persona is None:
                    raise self.error("a score before any persona heading", index)
                if takes >= 2:
                    raise self.error(f"persona {persona!r} has more than two takes (one per tool)", index)
                card = cards[takes]
                takes += 1
                index += 1
                if low == NO_TAKE:
                    continue
                match = SCORE_RE.match(self.text_at(index - 1))
                assert match is not None  # _is_take matched it
                score = int(match.group(1))
                if score > 100:
                    raise self.error(f"score {score}/100 is over 100", index - 1)
                quote_lines: list[str] = []
                while index < end and not self._starts_take_or_heading(index, end, takes):
                    quote_lines.append(self.text_at(index))
                    index += 1
                if not quote_lines:
                    raise self.error(f"{persona}'s score has no quote after it", index - 1)
                card.reviews.append(
                    Review(
                        persona=persona,
                        score=score,
                        verdict=match.group(2).lower() if match.group(2) else None,
                        quote=_unquote("\n\n".join(quote_lines)),
                    )
                )
                continue
            if index + 1 < end and _is_take(self.low(index + 1)) and (persona is None or takes != 1):
                if persona is not None and takes == 0:
                    raise self.error(f"persona {persona!r} has no take", persona_index)
                persona, persona_index, takes = self.text_at(index), index, 0
            # Anything else (a sub-heading, stray chrome) carries no review.
            index += 1
        if persona is not None and takes == 0:
            raise self.error(f"persona {persona!r} has no take", persona_index)

    def _starts_take_or_heading(self, index: int, end: int, takes: int) -> bool:
        if _is_take(self.low(index)):
            return True
        # Once a persona has its two takes, a line followed by a take is the next heading.
        return takes >= 2 and index + 1 < end and _is_take(self.low(index + 1))

    def _compact_scorecard(self, start: int, end: int, cards: list[_Card]) -> None:
        quotes: list[str] = []
        index = start
        while index < end:
            text = self.text_at(index)
            if text[0] in OPEN_QUOTES:
                parts = [text]
                while not _closed(parts[-1]) and index + 1 < end:
                    index += 1
                    parts.append(self.text_at(index))
                quotes.append(_unquote("\n\n".join(parts)))
            index += 1
        for position, quote in enumerate(quotes):
            if quote:
                cards[position % 2].reviews.append(Review(quote=quote))

    # --- the model ---------------------------------------------------------------------

    def _build(self, title: str, cards: list[_Card]) -> Comparison:
        tools = []
        for card in cards:
            verdict = card.panel_verdict or card.label_verdict
            try:
                tools.append(
                    ToolEntry(
                        name=card.name,
                        tagline=card.tagline,
                        category=card.category,
                        ship_pct=card.ship_pct,
                        community=card.community,
                        pricing=card.pricing,
                        pricing_detail=card.extra.get("pricing_detail"),
                        description=card.description,
                        best_for=card.extra.get("best_for"),
                        panel_verdict=verdict,
                        panel_ship=card.panel_ship,
                        panel_skip=card.panel_skip,
                        reviews=card.reviews,
                    )
                )
            except ValidationError as exc:
                raise SourceError(
                    f"tool {card.name!r}: {_first_problem(exc)}", source=self.source, line=card.name_line
                ) from None
        categories = [card.category for card in cards if card.category]
        if not categories:
            category = None
        elif len(set(categories)) == 1 or len(categories) == 1:
            category = categories[0]
        else:
            category = " / ".join(categories)
        try:
            return Comparison(title=title, category=category, tools=tools)
        except ValidationError as exc:
            raise SourceError(_first_problem(exc), source=self.source, line=self.lines[0].number) from None


# --- small pure helpers ------------------------------------------------------------------


_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
_MD_QUOTE_OR_BULLET = re.compile(r"^\s{0,3}(?:>\s?|[-*+]\s+)(?=\S)")
_MD_EMPHASIS = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_MD_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def _markdown_cells(line: str) -> list[str]:
    """A page saved as Markdown reads like the plain text: headings, emphasis, quote and
    list markers are dropped, and a table row ``| label | A | B |`` becomes one line per
    cell (the Decision table's label / tool A / tool B lines)."""
    stripped = line.strip()
    if _MD_TABLE_RULE.match(stripped) and "-" in stripped:
        return []
    if stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1:
        return [_markdown_inline(cell) for cell in stripped[1:-1].split("|")]
    heading = _MD_HEADING.match(line)
    line = heading.group(1) if heading else _MD_QUOTE_OR_BULLET.sub("", line, count=1)
    return [_markdown_inline(line)]


def _markdown_inline(text: str) -> str:
    return _MD_EMPHASIS.sub(r"\2", text)


def _clean(line: str) -> str:
    # Non-breaking and zero-width spaces are page layout, not content.
    line = line.replace("\u00a0", " ").replace("\u200b", "").replace("\ufeff", "")
    return " ".join(line.split())


def _value(text: str) -> str | None:
    return None if text.casefold() in EMPTY_VALUES else text


def _is_take(low: str) -> bool:
    return low == NO_TAKE or SCORE_RE.match(low) is not None


def _looks_like_label(text: str) -> bool:
    """A heading or category: short, not a sentence, not a quote."""
    return (
        len(text) <= MAX_SHORT
        and text[-1] not in '.!?:;”"'
        and text[0] not in OPEN_QUOTES
        and not _is_take(text.casefold())
    )


def _is_initial(text: str, name: str) -> bool:
    """The avatar letter(s) shown before a tool's card: "A" for Axolotl."""
    return INITIAL_RE.match(text) is not None and text[0] == name[:1].upper()


def _closed(text: str) -> bool:
    return len(text) >= 2 and text[-1] in CLOSE_QUOTES


def _unquote(text: str) -> str:
    text = text.strip()
    if text and text[0] in OPEN_QUOTES:
        text = text[1:]
    if text and text[-1] in CLOSE_QUOTES:
        text = text[:-1]
    return text.strip()


def _title_names(title: str) -> set[str]:
    """Every tool name the "X vs Y" title could mean (a name may itself contain "vs")."""
    names: set[str] = set()
    for match in VS_RE.finditer(title):
        left, right = title[: match.start()], title[match.end() :]
        for name in (left, right):
            key = tool_key(name)
            if key:
                names.add(key)
    return names


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
