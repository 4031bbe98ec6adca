"""The first pass over a comparison page: physical lines into typed tokens.

Blank lines are dropped (one layout has them, the other does not), Windows and old
Mac line endings count as one break, a page saved as Markdown reads like the plain
text, and each remaining line gets a ``Kind`` from its text alone. What a token
means in context (a ``Community`` label in a card or a row label in the Decision
table) is the grammar's business, in ``page.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

# Values the site shows when a number or a value is missing.
EMPTY_VALUES = {"—", "–", "-", "n/a", "no community votes yet", "no votes yet"}
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
MAX_CHROME = 80
MAX_LABEL = 120
MAX_ATTRIBUTION = 60
# Opening quotation mark -> the mark that closes it.
QUOTE_PAIRS = {"“": "”", '"': '"', "«": "»", "„": "“"}

SCORE_RE = re.compile(r"^(\d{1,3})\s*/\s*100\b\s*(?:[·•|:,—–-]\s*)?(ship|skip)?\s*$", re.IGNORECASE)
PCT_RE = re.compile(r"^(\d{1,4})\s*%$")
# "— Builder" after a quote: a name, never a sentence.
ATTRIBUTION_RE = re.compile(rf"^[—–]\s*(\S.{{0,{MAX_ATTRIBUTION}}}(?<![.!?…]))$")


class Kind(Enum):
    TEXT = "text"
    PANEL = "panel ship"
    COMMUNITY = "community"
    ENTRY = "entry"
    DECISION = "decision"
    SCORECARD = "reviewer scorecard"
    NO_TAKE = "no panel take"
    SCORE = "score"  # 80/100, optionally with its verdict
    VERDICT = "verdict"  # Ship / Skip alone on a line
    ATTRIBUTION = "attribution"  # — Builder
    CHROME = "chrome"  # the site's footer: sign-up, bookmarks


LABEL_KINDS = {
    "panel ship": Kind.PANEL,
    "community": Kind.COMMUNITY,
    "entry": Kind.ENTRY,
    "decision": Kind.DECISION,
    "reviewer scorecard": Kind.SCORECARD,
    "no panel take": Kind.NO_TAKE,
    "ship": Kind.VERDICT,
    "skip": Kind.VERDICT,
}
# Words a tool may never be named after: they are the page's own labels.
SECTION_WORDS = set(LABEL_KINDS) | {"panel verdict", "pricing", "best for", "category"}
TAKE_KINDS = (Kind.SCORE, Kind.NO_TAKE)


@dataclass(frozen=True)
class Token:
    number: int  # 1-based line number in the source text
    text: str
    kind: Kind

    @property
    def low(self) -> str:
        return self.text.casefold()

    @property
    def score(self) -> tuple[int, str | None]:
        match = SCORE_RE.match(self.text)
        assert match is not None, "only SCORE tokens have a score"
        verdict = match.group(2)
        return int(match.group(1)), verdict.lower() if verdict else None


def tokenize(text: str) -> list[Token]:
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [
        Token(number, cleaned, _kind(cleaned))
        for number, line in enumerate(raw, start=1)
        for cell in _markdown_cells(line)
        if (cleaned := _clean(cell))
    ]


def line_count(text: str) -> int:
    return text.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 1


def _kind(text: str) -> Kind:
    low = text.casefold()
    if low in LABEL_KINDS:
        return LABEL_KINDS[low]
    if SCORE_RE.match(text):
        return Kind.SCORE
    if ATTRIBUTION_RE.match(text) and not is_empty(text):
        return Kind.ATTRIBUTION
    if low.startswith(FOOTER_PREFIXES) and len(low) <= MAX_CHROME:
        return Kind.CHROME
    return Kind.TEXT


# --- quotations -----------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteScan:
    """Where a quotation that opens at the start of a line closes."""

    end: int  # index of the token holding the closing mark
    text: str  # the quotation without its outer marks, paragraphs joined by a blank line
    rest: str  # what follows the closing mark on that line ("" for a whole quote)


class QuoteNotClosed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def opens_quote(text: str) -> bool:
    return text[:1] in QUOTE_PAIRS


def scan_quote(tokens: list[Token], start: int, stop: int) -> QuoteScan:
    """Follow the quotation opening ``tokens[start]`` to its closing mark.

    Raises QuoteNotClosed when a line before the closing mark opens a new quotation
    or is a take, or when ``stop`` comes first: a missing ``”`` must never merge two
    quotes."""
    opening = tokens[start].text[0]
    closing = QUOTE_PAIRS[opening]
    depth = 0
    parts: list[str] = []
    for index in range(start, stop):
        token = tokens[index]
        if index > start and (token.kind in TAKE_KINDS or opens_quote(token.text)):
            break
        for position, char in enumerate(token.text):
            if opening == closing:  # straight quotes: each mark toggles
                depth = depth ^ 1 if char == opening else depth
                closed = char == opening and depth == 0
            elif char == opening:
                depth += 1
                closed = False
            else:
                depth -= 1 if char == closing else 0
                closed = char == closing and depth == 0
            if closed:
                parts.append(token.text[:position])
                body = "\n\n".join(parts)[1:].strip()
                return QuoteScan(index, body, token.text[position + 1 :].strip())
        parts.append(token.text)
    raise QuoteNotClosed(f"quotation opened here has no closing {closing}")


def balanced(text: str) -> bool:
    """Every curly or angle quotation mark inside the text is closed (straight ones pair up)."""
    return (
        text.count("“") == text.count("”") and text.count("«") == text.count("»") and text.count('"') % 2 == 0
    )


# --- line cleaning ---------------------------------------------------------------------

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


def is_empty(text: str) -> bool:
    return text.casefold() in EMPTY_VALUES


def looks_like_label(text: str) -> bool:
    """A heading, a category or a name: short, not a sentence, not a quotation."""
    return (
        len(text) <= MAX_LABEL
        and text[-1] not in '.!?:;”"'
        and not opens_quote(text)
        and _kind(text) in (Kind.TEXT, Kind.CHROME)
    )
