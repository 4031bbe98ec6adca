"""The per-recipient placeholders of a rendered issue and their substitution.

The templates print these tokens instead of a recipient's values; they survive MJML
and premailer untouched. Each recipient's copy is made by plain substitution
(``Personalizer``), or, for a provider that substitutes server-side (SendGrid
``substitutions``), by sending the parts once and ``substitutions(values)`` per
recipient. Kept apart from ``render`` so that sending never loads the renderer.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping

from newsletter.config import Settings
from newsletter.errors import RenderError

# Per-recipient values, by name. HTML part:
PLACEHOLDERS: dict[str, str] = {
    "unsubscribe_url": "%%UNSUBSCRIBE_URL%%",
    "first_name": "%%FIRST_NAME%%",
}
# ... and the text part (distinct tokens, so one substitution map can carry the
# HTML-escaped value for the HTML part and the raw value for the text part).
TEXT_PLACEHOLDERS: dict[str, str] = {
    "unsubscribe_url": "%%UNSUBSCRIBE_URL_TXT%%",
    "first_name": "%%FIRST_NAME_TXT%%",
}
# Used when a recipient has no value for a placeholder ("Hi there,").
DEFAULT_VALUES: dict[str, str] = {"first_name": "there"}

_PLACEHOLDER_RE = re.compile(r"%%[A-Z][A-Z0-9_]*%%")
_BY_TOKEN = {token: name for name, token in PLACEHOLDERS.items()} | {
    token: name for name, token in TEXT_PLACEHOLDERS.items()
}
_PLACEHOLDER_SPLIT = re.compile("(" + "|".join(re.escape(token) for token in _BY_TOKEN) + ")")


def split_placeholders(text: str) -> list[str]:
    """``text`` cut at its placeholder tokens: literal, token, literal, ..., literal.

    Every occurrence of a known token counts, as in a provider's server-side substitution.
    """
    return _PLACEHOLDER_SPLIT.split(text)


# --- personalisation ---------------------------------------------------------------------


class Personalizer:
    """A rendered part compiled once into literal segments and placeholder slots.

    ``fill(values)`` joins the segments with the recipient's values: no parsing,
    no template engine, a few microseconds per recipient.
    """

    __slots__ = ("_escape", "_names", "_parts", "_slots")

    def __init__(self, template: str, *, html: bool) -> None:
        self._escape = html
        pieces = split_placeholders(template)  # odd indices are the placeholders
        self._slots = tuple((index, _BY_TOKEN[piece]) for index, piece in enumerate(pieces) if index % 2)
        self._parts = [piece if index % 2 == 0 else "" for index, piece in enumerate(pieces)]
        self._names = frozenset(name for _index, name in self._slots)

    @property
    def names(self) -> frozenset[str]:
        """The placeholders this part uses."""
        return self._names

    def fill(self, values: Mapping[str, str]) -> str:
        filled: dict[str, str] = {}
        for name in self._names:
            value = values.get(name)
            if value is None:
                value = DEFAULT_VALUES.get(name)
                if value is None:
                    raise RenderError(f"no value for the placeholder {name!r}")
            filled[name] = html_lib.escape(value) if self._escape else value
        parts = self._parts.copy()
        for index, name in self._slots:
            parts[index] = filled[name]
        return "".join(parts)


def substitutions(values: Mapping[str, str]) -> dict[str, str]:
    """Placeholder -> value for server-side substitution (both parts, HTML ones escaped)."""
    merged = {**DEFAULT_VALUES, **{k: v for k, v in values.items() if v is not None}}
    missing = set(PLACEHOLDERS) - set(merged)
    if missing:
        raise RenderError(f"no value for the placeholder(s) {', '.join(sorted(missing))}")
    result: dict[str, str] = {}
    for name, value in merged.items():
        if name in PLACEHOLDERS:
            result[PLACEHOLDERS[name]] = html_lib.escape(value)
            result[TEXT_PLACEHOLDERS[name]] = value
    return result


def leftover_placeholders(text: str) -> list[str]:
    """Placeholder tokens still present in ``text`` (should be none after filling)."""
    return [token for token in _PLACEHOLDER_RE.findall(text) if token in _BY_TOKEN]


def neutral_values(settings: Settings) -> dict[str, str]:
    """What the browser (archive) version shows instead of a recipient's values."""
    return {"unsubscribe_url": f"{settings.base_url}/", "first_name": "there"}


def sample_values(settings: Settings) -> dict[str, str]:
    """A sample recipient, for previews."""
    return {"unsubscribe_url": f"{settings.base_url}/unsubscribe/preview-sample-token", "first_name": "Ada"}
