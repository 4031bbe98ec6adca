"""The site's comparison pages as text, in both layouts: right or loud, never quietly wrong.

``page_tokens.tokenize`` turns the page into typed lines; this module is the grammar,
one small reader per part of the page:

    page      := header card card section* footer
    header    := anything before the first card (breadcrumb, kicker, "X vs Y" title, intro)
    card      := [initial] [category] name [tagline] [Ship|Skip] pct "Panel ship"
                 [community [community]] "Community" [price] "Entry" description*
    section   := "Decision" [toolA toolB] (label valueA valueB)*
               | ["Reviewer scorecard"] (rich | compact)
    rich      := (persona take take)*          take := score [verdict] quote [— persona]
                                                     | "No panel take"
    compact   := (quote [— persona] | "No panel take")*   alternating tool A, tool B
    footer    := site chrome only (sign-up, bookmarks)

Sections come in any order after the two cards. The tool's name is the card line the
title (or the Decision table's header row) names, exactly or as a short name; only a
page whose title names no tool is read by position (category, name, tagline).

Every line of a card and of a section is consumed by a rule or refused, and the
parts are checked against each other (Decision votes against the counted verdicts and
the ship %, takes against personas x tools, balanced quotation marks, tool names that
are labels). A page that fails raises SourceError naming the line where the problem
is, ``file:line: what was expected there``.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from newsletter.errors import SourceError
from newsletter.models import Comparison, ToolEntry, tool_key
from newsletter.sources.page_parts import (
    DECISION_ROWS,
    MAX_CARD_LINES,
    MAX_TITLE,
    PANEL_VERDICT_RE,
    PLAIN_KINDS,
    VS_RE,
    _Card,
    _first_problem,
    _is_initial,
    _Section,
    _starts_with_name,
    _title_names,
    _title_splits,
    _value,
    _verdict,
)
from newsletter.sources.page_scorecard import _ScorecardParser
from newsletter.sources.page_tokens import (
    ATTRIBUTION_RE,
    PCT_RE,
    SECTION_WORDS,
    TAKE_KINDS,
    Kind,
    QuoteNotClosed,
    is_empty,
    looks_like_label,
    opens_quote,
    scan_quote,
)


def parse_page(text: str, *, source: str = "<page>") -> Comparison:
    """Read one comparison page (either layout) into a Comparison, or raise SourceError."""
    return _PageParser(text, source).parse()


class _PageParser(_ScorecardParser):
    # --- the page ------------------------------------------------------------------------

    def parse(self) -> Comparison:
        if not self.tokens:
            raise SourceError("empty page: no comparison found", source=self.source, line=1)
        markers = [i for i, token in enumerate(self.tokens) if token.kind is Kind.PANEL]
        if len(markers) < 2:
            raise self.error(
                f"expected two tool cards (a 'Panel ship' label for each tool), found {len(markers)}",
                markers[0] if markers else None,
            )
        footer = self._footer(markers[1])
        if len(markers) > 2 and markers[2] < footer:
            raise self.error("more than two tool cards: a third 'Panel ship' label", markers[2])
        cards = [_Card(0, markers[0]), _Card(1, markers[1])]
        cards[0].values_end = self._card_values(cards[0], markers[1])
        cards[1].values_end = self._card_values(cards[1], footer)
        description_end, sections = self._sections(cards[1].values_end, footer)
        decision = next((s for s in sections if s.kind is Kind.DECISION), None)
        header_names = self._decision_header(decision)

        title_index, title = self._title(markers[0])
        names = _title_names(title) if title else set()
        names |= {tool_key(name) for name in header_names}
        floor = title_index + 1 if title_index is not None else 0
        # Two lines of a card may both be names the title allows ("Cursor vs 東京" vs a
        # tagline "東京 🚀"): the card's name is the one that, with the other card's, makes
        # the title (or the Decision table's header).
        pairs = set(_title_splits(title)) if title else set()
        if len(header_names) == 2:
            pairs.add((tool_key(header_names[0]), tool_key(header_names[1])))
        first_card_lines = {tool_key(self.text(i)) for i in range(floor, cards[0].marker)}
        self._identity(
            cards[1],
            cards[0].values_end,
            names,
            fits=lambda name: any(a in first_card_lines and b == tool_key(name) for a, b in pairs),
        )
        self._identity(
            cards[0], floor, names, fits=lambda name: (tool_key(name), tool_key(cards[1].name)) in pairs
        )
        self._header(title_index, cards[0])
        cards[0].description = self._description(cards[0], cards[0].values_end, cards[1].start)
        cards[1].description = self._description(cards[1], cards[1].values_end, description_end)

        for section in sections:
            if section.kind is Kind.DECISION:
                self._decision(section, cards, bool(header_names))
            else:
                self._scorecard(section, cards)
        self._check(cards)
        if title is None:
            title = f"{cards[0].name} vs {cards[1].name}"
        return self._build(title, cards)

    def _footer(self, last_marker: int) -> int:
        """Index of the site chrome after the content; only chrome may follow it."""
        start = next(
            (i for i in range(last_marker, len(self.tokens)) if self.tokens[i].kind is Kind.CHROME),
            len(self.tokens),
        )
        for index in range(start, len(self.tokens)):
            if self.tokens[index].kind is not Kind.CHROME:
                raise self.error(
                    f"expected only site chrome (sign-up, bookmarks) after line "
                    f"{self.tokens[start].number}, got {self.text(index)!r}",
                    index,
                )
        return start

    def _header(self, title_index: int | None, card: _Card) -> None:
        """Between the title and the first card only the intro's sentences may stand."""
        if title_index is None:
            return
        for index in range(title_index + 1, card.start):
            if looks_like_label(self.text(index)):
                raise self.error(
                    f"expected the intro or tool A's card after the title, got the short label "
                    f"{self.text(index)!r} (a card line out of place?)",
                    index,
                )

    def _title(self, first_marker: int) -> tuple[int | None, str | None]:
        """The "X vs Y" heading before the first card (the breadcrumb is a fallback)."""
        crumb: str | None = None
        for index in range(first_marker):
            text = self.text(index)
            if text.casefold().startswith("compare/"):
                crumb = text.split("/", 1)[1].strip() or None
                continue
            if VS_RE.search(text) and len(text) <= MAX_TITLE:
                return index, text
        return None, crumb

    # --- the cards -----------------------------------------------------------------------

    def _card_values(self, card: _Card, limit: int) -> int:
        """``[community [community]] Community [price] Entry`` after "Panel ship"."""
        index = card.marker + 1
        community = self._labelled(index, limit, Kind.COMMUNITY, 2, "the community votes", card)
        card.community = self._community(card, index, community)
        price = self._labelled(community + 1, limit, Kind.ENTRY, 1, "the entry price", card)
        card.pricing = _value(" ".join(self.text(i) for i in range(community + 1, price)))
        return price + 1

    def _community(self, card: _Card, start: int, stop: int) -> str | None:
        """One or two lines of votes (``12 votes`` / ``83% ship``), or ``—`` alone."""
        if stop - start == 1 and is_empty(self.text(start)):
            return None
        # Votes are counted: a value without a number is a price or a label out of place.
        for index in sorted(range(start, stop), key=lambda i: is_empty(self.text(i))):
            if not any(char.isdigit() for char in self.text(index)):
                raise self.error(
                    f"tool {card.side}: expected the community votes (a number, or '—' alone) before "
                    f"'Community', got {self.text(index)!r}",
                    index,
                )
        return " · ".join(self.text(i) for i in range(start, stop)) or None

    def _labelled(self, start: int, limit: int, label: Kind, most: int, what: str, card: _Card) -> int:
        """Index of the ``label`` token after at most ``most`` value lines."""
        for index in range(start, min(start + most + 1, limit)):
            if self.tokens[index].kind is label:
                return index
            if self.tokens[index].kind is not Kind.TEXT:
                break
        raise self.error(
            f"tool {card.side}: expected {what} then a '{label.value.capitalize()}' label here", start
        )

    def _identity(
        self, card: _Card, floor: int, names: set[str], fits: Callable[[str], bool] | None = None
    ) -> None:
        """The lines above the ship %: [initial] [category] name [tagline] [Ship|Skip]."""
        pct_index = card.marker - 1
        if pct_index < floor:
            raise self.error("'Panel ship' label without a ship percentage before it", card.marker)
        self._pct(card, pct_index)
        stop = pct_index
        if stop - 1 >= floor and self.kind(stop - 1) is Kind.VERDICT:
            card.label_verdict, card.label_line = self.tokens[stop - 1].low, self.tokens[stop - 1].number
            stop -= 1
        window = list(range(max(floor, stop - MAX_CARD_LINES), stop))
        for index in window:
            if self.kind(index) not in PLAIN_KINDS:
                raise self.error(
                    f"tool {card.side}: expected the card's name, category or tagline, "
                    f"got {self.text(index)!r}",
                    index,
                )
        name_at = self._name_line(card, window, names, stop, fits)
        taglines = list(range(name_at + 1, stop))
        if len(taglines) > 1:
            raise self.error(
                f"tool {card.side}: one tagline line expected after the name, got a second line", taglines[1]
            )
        card.name, card.name_line = self.text(name_at), self.tokens[name_at].number
        card.tagline = self.text(taglines[0]) if taglines else None
        card.start = name_at
        before = name_at - 1
        if before >= floor and _is_initial(self.text(before), card.name):
            card.start = before
        elif before >= floor and looks_like_label(self.text(before)) and not self._is_title(before):
            card.category, card.start = self.text(before), before
            if before - 1 >= floor and _is_initial(self.text(before - 1), card.name):
                card.start = before - 1

    def _is_title(self, index: int) -> bool:
        return VS_RE.search(self.text(index)) is not None

    def _name_line(
        self, card: _Card, window: list[int], names: set[str], stop: int, fits: Callable[[str], bool] | None
    ) -> int:
        if not window:
            raise self.error(f"tool {card.side} has no name before its ship percentage", stop)
        exact = [i for i in window if tool_key(self.text(i)) in names]
        if len(exact) > 1 and fits is not None:
            exact = [i for i in exact if fits(self.text(i))] or exact
        if exact:
            return exact[-1]
        # A short name only names a short line: a description sentence may start with it too.
        labels = [i for i in window if looks_like_label(self.text(i))]
        short = [i for i in labels if any(_starts_with_name(tool_key(self.text(i)), n) for n in names)]
        if len(short) == 1:
            return short[0]
        if names:
            raise self.error(
                f"tool {card.side}: no line of the card is a tool the title or Decision table names "
                f"({' / '.join(sorted(names))}); expected the name here",
                window[-1],
            )
        # No title to go by: the card's lines are read by position (category, name, tagline).
        lines = [i for i in window if not _is_initial(self.text(i), self.text(i))]
        if len(lines) == 1:
            return lines[0]
        if len(lines) >= 3 and looks_like_label(self.text(lines[-3])):
            return lines[-2]
        raise self.error(
            f"tool {card.side}: the title names no tool, so the card needs category, name and "
            "tagline lines to tell its name apart",
            window[-1],
        )

    def _pct(self, card: _Card, index: int) -> None:
        text = self.text(index)
        card.pct_line = self.tokens[index].number
        match = PCT_RE.match(text)
        if match:
            value = int(match.group(1))
            if value > 100:
                raise self.error(f"ship percentage {value}% is over 100", index)
            card.ship_pct = value
        elif not is_empty(text):
            raise self.error(
                f"expected a ship percentage like '75%' before 'Panel ship', got {text!r}", index
            )

    def _description(self, card: _Card, start: int, stop: int) -> str | None:
        for index in range(start, stop):
            if self.tokens[index].kind not in PLAIN_KINDS:
                raise self.error(
                    f"tool {card.side}'s description: expected paragraphs of text, got {self.text(index)!r} "
                    "(sections come after both tool cards)",
                    index,
                )
            if looks_like_label(self.text(index)):
                # Prose ends in a full stop; a short label here is a card line out of place.
                raise self.error(
                    f"tool {card.side}'s description: expected a paragraph, got the short label "
                    f"{self.text(index)!r} (a price, category or name out of place?)",
                    index,
                )
        return "\n\n".join(self.text(i) for i in range(start, stop)) or None

    # --- sections ------------------------------------------------------------------------

    def _sections(self, start: int, end: int) -> tuple[int, list[_Section]]:
        """Where tool B's description ends, and the Decision / scorecard sections after it."""
        headings = [i for i in range(start, end) if self.tokens[i].kind in (Kind.DECISION, Kind.SCORECARD)]
        first = headings[0] if headings else end
        # With its heading on the page, the scorecard starts there and nowhere else.
        headed = any(self.tokens[i].kind is Kind.SCORECARD for i in headings)
        description_end = first
        if not headed:
            description_end = next((i for i in range(start, first) if self._starts_scorecard(i)), first)
        sections: list[_Section] = []
        if description_end < first:
            self._refuse_compact_without_heading(description_end)
            sections.append(_Section(Kind.SCORECARD, None, description_end, first))
        for number, heading in enumerate(headings):
            stop = headings[number + 1] if number + 1 < len(headings) else end
            kind = self.tokens[heading].kind
            if kind is Kind.DECISION:
                # A scorecard without its heading may follow the table.
                scorecard = stop
                if not headed:
                    scorecard = next((i for i in range(heading + 1, stop) if self._starts_scorecard(i)), stop)
                sections.append(_Section(kind, heading, heading + 1, scorecard))
                if scorecard < stop:
                    self._refuse_compact_without_heading(scorecard)
                    sections.append(_Section(Kind.SCORECARD, None, scorecard, stop))
            else:
                sections.append(_Section(kind, heading, heading + 1, stop))
        seen: set[Kind] = set()
        for section in sections:
            if section.kind in seen:
                where = section.heading if section.heading is not None else section.start
                raise self.error(f"a second {section.kind.value.capitalize()} section", where)
            seen.add(section.kind)
        return description_end, sections

    def _starts_scorecard(self, index: int) -> bool:
        """A take, a persona heading (a name followed by a take) or a whole quotation."""
        if self.tokens[index].kind in TAKE_KINDS or self.kind(index + 1) in TAKE_KINDS:
            return True
        if not opens_quote(self.text(index)):
            return False
        try:
            scan = scan_quote(self.tokens, index, len(self.tokens))
        except QuoteNotClosed:
            return False
        return scan.rest == "" or ATTRIBUTION_RE.match(scan.rest) is not None

    def _refuse_compact_without_heading(self, index: int) -> None:
        if self.tokens[index].kind in TAKE_KINDS or self.kind(index + 1) in TAKE_KINDS:
            return  # persona headings and scores mark the rich scorecard without a heading
        raise self.error(
            "reviewers' quotes need a 'Reviewer scorecard' heading before them: without one a "
            "quotation ending a description cannot be told from a review",
            index,
        )

    # --- the decision table --------------------------------------------------------------

    def _decision_header(self, section: _Section | None) -> list[str]:
        """The table's optional header row: tool A's and tool B's names."""
        if section is None or section.end - section.start < 2:
            return []
        first, second = self.tokens[section.start], self.tokens[section.start + 1]
        if first.low in DECISION_ROWS or second.low in DECISION_ROWS:
            return []
        if (section.end - section.start) % 3 != 2:
            return []
        return [first.text, second.text]

    def _decision(self, section: _Section, cards: list[_Card], header: bool) -> None:
        index = section.start
        if not header and section.end - section.start >= 2:
            # The header row names the cards' tools even when a row below lost a value.
            first_two = [tool_key(self.text(index)), tool_key(self.text(index + 1))]
            header = first_two == [tool_key(card.name) for card in cards]
        if header:
            for card in cards:
                if tool_key(self.text(index)) != tool_key(card.name) and not _starts_with_name(
                    tool_key(card.name), tool_key(self.text(index))
                ):
                    raise self.error(
                        f"Decision table header: expected tool {card.side} ({card.name!r}), "
                        f"got {self.text(index)!r}",
                        index,
                    )
                index += 1
        while index < section.end:
            label = self.tokens[index]
            if label.kind is not Kind.COMMUNITY and (
                label.kind is not Kind.TEXT or not looks_like_label(label.text)
            ):
                raise self.error(
                    f"expected a Decision row label (such as 'Pricing'), got {label.text!r}", index
                )
            for offset, card in enumerate(cards, start=1):
                value = index + offset
                if value >= section.end or self.tokens[value].low in DECISION_ROWS:
                    raise self.error(
                        f"Decision row {label.text!r}: expected the value for tool {card.side} here",
                        min(value, section.end),
                    )
                self._decision_value(card, label.low, value)
            index += 3

    def _decision_value(self, card: _Card, label: str, index: int) -> None:
        value = self.text(index)
        if self.tokens[index].kind not in (*PLAIN_KINDS, Kind.VERDICT):
            raise self.error(f"Decision row {label!r}: expected a value, got {value!r}", index)
        if label == "panel verdict":
            match = PANEL_VERDICT_RE.match(value)
            if is_empty(value):
                return
            if match is None or not (match.group("verdict") or match.group("ship")):
                raise self.error(
                    f"panel verdict should read like 'Ship · 3 ship / 1 skip', got {value!r}", index
                )
            if match.group("verdict"):
                card.panel_verdict = match.group("verdict").lower()
            if match.group("ship") is not None:
                card.panel_ship, card.panel_skip = int(match.group("ship")), int(match.group("skip"))
                card.votes_line = self.tokens[index].number
        elif label == "community":
            if card.community is None:
                card.community = _value(value)
        elif label == "pricing":
            card.extra["pricing_detail"] = _value(value)
        elif label == "best for":
            card.extra["best_for"] = _value(value)
        elif label == "category":
            if card.category is None:
                card.category = _value(value)
            elif _value(value) is None or tool_key(value) != tool_key(card.category):
                raise self.error(
                    f"Decision table says tool {card.side}'s category is {value!r}, "
                    f"its card says {card.category!r}",
                    index,
                )
        # Other rows are kept out of the model: the page may grow new rows.

    # --- cross-checks ---------------------------------------------------------------------

    def _check(self, cards: list[_Card]) -> None:
        labels = SECTION_WORDS | {tool_key(c.category) for c in cards if c.category}
        if tool_key(cards[0].name) == tool_key(cards[1].name):
            raise self.error_at_line(f"both tools are named {cards[1].name!r}", cards[1].name_line)
        for card in cards:
            if tool_key(card.name) in labels:
                raise self.error_at_line(
                    f"tool {card.side} is named {card.name!r}, a category or section label: "
                    "expected the tool's name on this line",
                    card.name_line,
                )
            self._check_votes(card)

    def _check_votes(self, card: _Card) -> None:
        verdicts = [r.verdict for r in card.reviews]
        counted: tuple[int, int] | None = None
        if all(verdicts):
            counted = (verdicts.count("ship"), verdicts.count("skip"))
        if card.panel_ship is not None and card.panel_skip is not None:
            said = (card.panel_ship, card.panel_skip)
            if counted is not None and card.reviews and counted != said:
                raise self.error_at_line(
                    f"tool {card.side}: the Decision table says {said[0]} ship / {said[1]} skip, "
                    f"the scorecard has {counted[0]} ship / {counted[1]} skip",
                    card.votes_line,
                )
            if counted is None and card.reviews and len(card.reviews) != sum(said):
                raise self.error_at_line(
                    f"tool {card.side}: the Decision table counts {sum(said)} takes, "
                    f"the scorecard has {len(card.reviews)}",
                    card.votes_line,
                )
            counted = said
        total = counted[0] + counted[1] if counted is not None else 0
        if counted is not None and total and card.ship_pct is not None:
            share = 100 * counted[0] / total
            if abs(share - card.ship_pct) >= 1:
                raise self.error_at_line(
                    f"tool {card.side}: ship {card.ship_pct}% but the panel voted "
                    f"{counted[0]} ship / {counted[1]} skip ({share:.0f}%)",
                    card.pct_line,
                )
        if card.label_verdict and card.panel_verdict and card.label_verdict != card.panel_verdict:
            raise self.error_at_line(
                f"tool {card.side}'s card says {card.label_verdict!r}, "
                f"the Decision table says {card.panel_verdict!r}",
                card.label_line,
            )

    # --- the model ---------------------------------------------------------------------

    def _build(self, title: str, cards: list[_Card]) -> Comparison:
        tools = []
        for card in cards:
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
                        panel_verdict=_verdict(card.panel_verdict or card.label_verdict),
                        panel_ship=card.panel_ship,
                        panel_skip=card.panel_skip,
                        reviews=card.reviews,
                        abstentions=card.abstentions,
                    )
                )
            except ValidationError as exc:
                raise self.error_at_line(
                    f"tool {card.name!r}: {_first_problem(exc)}", card.name_line
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
            raise self.error(_first_problem(exc), 0) from None
