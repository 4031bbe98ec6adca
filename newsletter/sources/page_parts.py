"""The parts of the page grammar that every reader shares: limits and patterns, the card
and section records, the token access and error helpers, small pure helpers."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from pydantic import ValidationError

from newsletter.errors import SourceError
from newsletter.models import Abstention, Review, Verdict, tool_key
from newsletter.sources.page_tokens import (
    Kind,
    is_empty,
    line_count,
    looks_like_label,
    tokenize,
)

INITIAL_RE = re.compile(r"^[A-Z0-9]{1,2}$")
VS_RE = re.compile(r"\s+vs\.?\s+", re.IGNORECASE)
PANEL_VERDICT_RE = re.compile(
    r"^(?P<verdict>ship|skip)?\s*[·•|:,—–-]?\s*(?:(?P<ship>\d{1,6})\s*ship\s*/\s*(?P<skip>\d{1,6})\s*skip)?$",
    re.IGNORECASE,
)
DECISION_ROWS = ("panel verdict", "community", "pricing", "best for", "category")
MAX_TITLE = 300
MAX_CARD_LINES = 4  # initial, category, name, tagline
MAX_PERSONA = 60
# Outside the scorecard "— word" is only text (a tagline or a value may start with a dash).
PLAIN_KINDS = (Kind.TEXT, Kind.ATTRIBUTION)


@dataclass
class _Card:
    """One tool card: its values, and the lines they came from (for errors)."""

    position: int  # 0 for tool A, 1 for tool B
    marker: int  # index of its "Panel ship" token
    values_end: int = 0  # index after its "Entry" label
    start: int = 0  # index of its first line (initial or category or name)
    name: str = ""
    name_line: int = 0
    tagline: str | None = None
    category: str | None = None
    label_verdict: str | None = None
    label_line: int = 0
    ship_pct: int | None = None
    pct_line: int = 0
    community: str | None = None
    pricing: str | None = None
    description: str | None = None
    extra: dict[str, str | None] = field(default_factory=dict)
    reviews: list[Review] = field(default_factory=list)
    abstentions: list[Abstention] = field(default_factory=list)
    panel_verdict: str | None = None
    panel_ship: int | None = None
    panel_skip: int | None = None
    votes_line: int = 0

    @property
    def side(self) -> str:
        return "AB"[self.position]


@dataclass(frozen=True)
class _Section:
    kind: Kind  # DECISION or SCORECARD
    heading: int | None  # index of its heading token (None: a scorecard without one)
    start: int  # first index after the heading
    end: int


class _ParserBase:
    """The page's tokens and the helpers every reader uses (errors name the file and line)."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.tokens = tokenize(text)
        self.total_lines = line_count(text)

    # --- helpers -----------------------------------------------------------------------

    def error(self, message: str, index: int | None = None) -> SourceError:
        if index is None or not self.tokens:
            line = self.tokens[-1].number if self.tokens else 1
        elif index >= len(self.tokens):
            line = self.total_lines
        else:
            line = self.tokens[index].number
        return SourceError(message, source=self.source, line=line)

    def error_at_line(self, message: str, line: int) -> SourceError:
        return SourceError(message, source=self.source, line=line)

    def kind(self, index: int) -> Kind | None:
        return self.tokens[index].kind if 0 <= index < len(self.tokens) else None

    def text(self, index: int) -> str:
        return self.tokens[index].text


# --- small pure helpers ------------------------------------------------------------------


def _value(text: str) -> str | None:
    return None if not text or is_empty(text) else text


def _verdict(text: str | None) -> Verdict | None:
    if text == "ship":
        return "ship"
    if text == "skip":
        return "skip"
    return None


def _is_initial(text: str, name: str) -> bool:
    """The avatar letter(s) shown before a tool's card: "A" for Axolotl, "A" or "Ä" for Äxolotl."""
    return INITIAL_RE.match(text) is not None and _base_letter(text[0]) == _base_letter(name[:1].upper())


def _base_letter(letter: str) -> str:
    # The site may draw an accented initial without its accent: compare base letters.
    return unicodedata.normalize("NFKD", letter)[:1]


def _looks_like_persona(text: str) -> bool:
    """A reviewer's name: a few words, no sentence punctuation."""
    return looks_like_label(text) and len(text) <= MAX_PERSONA and len(text.split()) <= 4


def _starts_with_name(key: str, name: str) -> bool:
    """``axolotl v0 16`` starts with the short name ``axolotl`` (whole words only)."""
    return bool(name) and (key == name or key.startswith(name + " "))


def _title_splits(title: str) -> list[tuple[str, str]]:
    """Every (tool A, tool B) key pair the "X vs Y" title could mean (a name may contain "vs")."""
    return [
        (tool_key(title[: match.start()]), tool_key(title[match.end() :])) for match in VS_RE.finditer(title)
    ]


def _title_names(title: str) -> set[str]:
    """Every tool name the "X vs Y" title could mean."""
    return {key for pair in _title_splits(title) for key in pair if key}


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
