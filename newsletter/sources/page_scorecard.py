"""The reviewer scorecard of a comparison page, in its rich and compact layouts."""

from __future__ import annotations

from typing import overload

from newsletter.models import Abstention, Review, tool_key
from newsletter.sources.page_parts import (
    MAX_PERSONA,
    _Card,
    _looks_like_persona,
    _ParserBase,
    _Section,
    _verdict,
)
from newsletter.sources.page_tokens import (
    ATTRIBUTION_RE,
    TAKE_KINDS,
    Kind,
    QuoteNotClosed,
    QuoteScan,
    balanced,
    looks_like_label,
    opens_quote,
    scan_quote,
)


class _ScorecardParser(_ParserBase):
    # --- the reviewer scorecard ----------------------------------------------------------

    def _scorecard(self, section: _Section, cards: list[_Card]) -> None:
        first = self.tokens[section.start] if section.start < section.end else None
        rich_start = first is not None and first.kind is Kind.TEXT and not opens_quote(first.text)
        if rich_start or any(self.tokens[i].kind is Kind.SCORE for i in range(section.start, section.end)):
            self._rich(section, cards)
        else:
            self._compact(section, cards)

    def _rich(self, section: _Section, cards: list[_Card]) -> None:
        index = section.start
        seen: dict[str, int] = {}
        while index < section.end:
            token = self.tokens[index]
            if (
                token.kind is not Kind.TEXT
                or self.kind(index + 1) not in TAKE_KINDS
                or len(token.text) > MAX_PERSONA
            ):
                raise self.error(
                    "expected a reviewer's name followed by a score like '80/100 · ship' or "
                    f"'No panel take', got {token.text!r}",
                    index,
                )
            persona = token.text
            if tool_key(persona) in seen:
                raise self.error(
                    f"reviewer {persona!r} again (first at line {seen[tool_key(persona)]})", index
                )
            seen[tool_key(persona)] = token.number
            index += 1
            for card in cards:
                if index >= section.end or self.tokens[index].kind not in TAKE_KINDS:
                    raise self.error(
                        f"{persona}: expected a take on tool {card.side} here (a score like '80/100 · ship' "
                        "or 'No panel take'): every reviewer has one per tool",
                        index,
                    )
                index = self._rich_take(section, card, persona, index)

    def _rich_take(self, section: _Section, card: _Card, persona: str, index: int) -> int:
        token = self.tokens[index]
        if token.kind is Kind.NO_TAKE:
            card.abstentions.append(Abstention(persona=persona))
            return index + 1
        score, verdict = token.score
        if score > 100:
            raise self.error(f"score {score}/100 is over 100", index)
        index += 1
        if verdict is None and self.kind(index) is Kind.VERDICT and index < section.end:
            verdict = self.tokens[index].low
            index += 1
        quote, index = self._rich_quote(section, card, persona, index)
        card.reviews.append(Review(persona=persona, score=score, verdict=_verdict(verdict), quote=quote))
        return index

    def _rich_quote(self, section: _Section, card: _Card, persona: str, start: int) -> tuple[str, int]:
        """The quote after a score: a quotation, or paragraphs up to the next take or reviewer."""
        if start >= section.end or self.tokens[start].kind is not Kind.TEXT:
            raise self.error(
                f"{persona}'s score on tool {card.side} has no quote after it: expected it here", start
            )
        scan = self._quote(start, section.end, prose_ok=True) if opens_quote(self.text(start)) else None
        if scan is not None:
            quote, index = scan.text, scan.end + 1
            if scan.rest:
                self._attribution(scan.rest, persona, scan.end)
        else:
            index = start
            parts: list[str] = []
            while index < section.end and self.tokens[index].kind is Kind.TEXT:
                if self.kind(index + 1) in TAKE_KINDS:
                    if card.position == 0 and _looks_like_persona(self.text(index)):
                        raise self.error(
                            f"{self.text(index)!r} reads like the next reviewer's name, but {persona} has no "
                            "take on tool B yet: expected a score or 'No panel take' before it",
                            index,
                        )
                    if card.position == 1:
                        break
                if parts and looks_like_label(self.text(index)):
                    # A quote's later paragraphs are prose; a short label here is stray text.
                    raise self.error(
                        f"unexpected {self.text(index)!r} after {persona}'s quote on tool {card.side}: "
                        "expected a paragraph of the quote, the next take or the next reviewer",
                        index,
                    )
                parts.append(self.text(index))
                index += 1
            quote = "\n\n".join(parts)
            if not balanced(quote):
                raise self.error(
                    f"{persona}'s quote on tool {card.side} has unbalanced quotation marks", start
                )
        if index < section.end and self.tokens[index].kind is Kind.ATTRIBUTION:
            self._attribution(self.text(index), persona, index)
            index += 1
        if not quote:
            raise self.error(f"{persona}'s quote on tool {card.side} is empty", start)
        return quote, index

    @overload
    def _quote(self, start: int, stop: int) -> QuoteScan: ...
    @overload
    def _quote(self, start: int, stop: int, *, prose_ok: bool) -> QuoteScan | None: ...

    def _quote(self, start: int, stop: int, *, prose_ok: bool = False) -> QuoteScan | None:
        """The quotation opening at ``start``; with ``prose_ok``, None when the line goes on
        after its closing mark (a paragraph that starts with a quotation)."""
        try:
            scan = scan_quote(self.tokens, start, stop)
        except QuoteNotClosed as exc:
            raise self.error(exc.reason, start) from None
        if prose_ok and scan.rest and ATTRIBUTION_RE.match(scan.rest) is None and scan.end == start:
            return None
        if scan.rest and ATTRIBUTION_RE.match(scan.rest) is None:
            raise self.error(f"unexpected text after the closing quotation mark: {scan.rest!r}", scan.end)
        if not balanced(scan.text):
            raise self.error("unbalanced quotation marks inside this quote", start)
        return scan

    def _attribution(self, text: str, persona: str | None, index: int) -> str:
        match = ATTRIBUTION_RE.match(text)
        assert match is not None
        name = match.group(1).strip()
        if persona is not None and tool_key(name) != tool_key(persona):
            raise self.error(f"quote attributed to {name!r} under reviewer {persona!r}", index)
        return name

    def _compact(self, section: _Section, cards: list[_Card]) -> None:
        """Quotes alternate tool A, tool B; ``No panel take`` holds the place of a missing one."""
        slots: list[tuple[int, Review | None, str | None]] = []  # (line, review, persona)
        index = section.start
        while index < section.end:
            token = self.tokens[index]
            if token.kind is Kind.NO_TAKE:
                slots.append((token.number, None, None))
                index += 1
                continue
            if not opens_quote(token.text):
                raise self.error(
                    f"expected a reviewer's quote in quotation marks or 'No panel take', got {token.text!r}",
                    index,
                )
            scan = self._quote(index, section.end)
            persona = self._attribution(scan.rest, None, scan.end) if scan.rest else None
            index = scan.end + 1
            if index < section.end and self.tokens[index].kind is Kind.ATTRIBUTION:
                persona = self._attribution(self.text(index), persona, index)
                index += 1
            if not scan.text:
                raise self.error("empty quote", index - 1)
            slots.append((token.number, Review(persona=persona, quote=scan.text), persona))
        if len(slots) % 2:
            raise self.error_at_line(
                f"{len(slots)} takes in the scorecard: an odd number cannot alternate tool A, tool B "
                "(a reviewer who skipped a tool needs 'No panel take' in its place)",
                slots[-1][0],
            )
        for pair in range(0, len(slots), 2):
            persona_a, persona_b = slots[pair][2], slots[pair + 1][2]
            if persona_a and persona_b and tool_key(persona_a) != tool_key(persona_b):
                raise self.error_at_line(
                    f"take on tool B attributed to {persona_b!r}, expected {persona_a!r}'s second take",
                    slots[pair + 1][0],
                )
            for card, (_line, review, _persona) in zip(cards, slots[pair : pair + 2], strict=True):
                if review is None:
                    card.abstentions.append(Abstention(persona=persona_a or persona_b))
                else:
                    card.reviews.append(review.model_copy(update={"persona": persona_a or persona_b}))
