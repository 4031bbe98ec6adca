"""The editor's note: a short Markdown intro at the top of the email, its text part and the
archive page. Markdown (CommonMark, raw HTML off) -> HTML, then sanitised by nh3 (Ammonia):
only text formatting and http(s)/mailto links survive, whatever the editor pasted.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

NOTE_LIMIT = 10_000
ALLOWED_TAGS = {"p", "br", "strong", "em", "b", "i", "a", "ul", "ol", "li", "code", "blockquote"}
# A placeholder the per-recipient substitution fills (%%UNSUBSCRIBE_URL%%) must never come
# out of the editor's text: a zero-width space between the two percent signs breaks it.
_BREAK = "%\u200b%"

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).disable(["image", "heading"])


def _defuse(text: str) -> str:
    while "%%" in text:
        text = text.replace("%%", _BREAK)
    return text


def note_html(source: str | None) -> str | None:
    """Sanitised HTML of the note, or None when there is none."""
    if not source or not source.strip():
        return None
    rendered = _markdown.render(source.strip())
    clean = nh3.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )
    return _defuse(clean.strip()) or None


def note_text(source: str | None) -> str | None:
    """The note for the plain-text part: its Markdown source, which reads as text."""
    if not source or not source.strip():
        return None
    lines = [line.rstrip() for line in source.strip().splitlines()]
    return _defuse("\n".join(lines))
