"""Render an issue once: Jinja2 (autoescape on) -> MJML -> HTML -> inlined CSS, plus a text part.

Per-recipient values are never rendered. The templates print placeholders
(``PLACEHOLDERS`` in the HTML, ``TEXT_PLACEHOLDERS`` in the text part) that
survive MJML and premailer untouched (``%`` and capitals are safe inside
``href``; ``{{ x }}`` would be percent-encoded), and each recipient's copy is
made by plain substitution:

    rendered = render_issue(settings, content)
    html, text = rendered.personalize({"unsubscribe_url": url, "first_name": "Ada"})

or, for a provider that substitutes server-side (SendGrid ``substitutions``),
send ``rendered.html``/``rendered.text`` once and ``substitutions(values)`` per
recipient: it maps every placeholder of both parts to its value, HTML-escaped
for the HTML part's placeholders only.
"""

from __future__ import annotations

import logging
import re
import textwrap
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
import mjml
from markupsafe import Markup
from premailer import Premailer

from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.issues.content import ComparisonSummary, IssueContent
from newsletter.issues.placeholders import (
    PLACEHOLDERS,
    TEXT_PLACEHOLDERS,
    Personalizer,
    neutral_values,
)
from newsletter.resources import EMAIL_TEMPLATES

HTML_TEMPLATE = "issue.mjml.j2"
TEXT_TEMPLATE = "issue.txt.j2"
INLINE_CSS = "inline.css"

log = logging.getLogger(__name__)

# After the preheader: invisible characters, so that clients fill the inbox preview with
# nothing rather than with the start of the body ("View this issue in your browser ...").
PREVIEW_PADDING = Markup("&zwnj;&nbsp;" * 90)  # noqa: S704 - a constant, no data

# email.html sizes: past EMAIL_BUDGET_BYTES the least decisive comparisons are shown compact,
# past EMAIL_LIMIT_BYTES they are only listed (with a link to the site). Gmail clips at ~102 KB.
EMAIL_BUDGET_BYTES = 96 * 1024
EMAIL_LIMIT_BYTES = 100 * 1024


def _wrap(text: str, width: int = 72) -> str:
    """wordwrap that never breaks inside a word, nor at its hyphens."""
    return textwrap.fill(
        " ".join(str(text).split()), width=width, break_long_words=False, break_on_hyphens=False
    )


@dataclass(frozen=True)
class RenderedEmail:
    """One issue rendered once: HTML and text with placeholders, ready to personalise."""

    subject: str
    preheader: str
    html: str
    text: str
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    @cached_property
    def html_personalizer(self) -> Personalizer:
        return Personalizer(self.html, html=True)

    @cached_property
    def text_personalizer(self) -> Personalizer:
        return Personalizer(self.text, html=False)

    def personalize(self, values: Mapping[str, str]) -> tuple[str, str]:
        """(html, text) for one recipient."""
        return self.html_personalizer.fill(values), self.text_personalizer.fill(values)

    def web_html(self, settings: Settings) -> str:
        """The browser version: no recipient's values, neutral links instead."""
        return self.html_personalizer.fill(neutral_values(settings))


# --- rendering -----------------------------------------------------------------------------


def _autoescape(name: str | None) -> bool:
    return not (name or "").endswith((".txt", ".txt.j2"))


class Renderer:
    """Templates, MJML and the CSS inliner for one templates directory.

    Jinja2 checks template mtimes on every ``get_template`` (auto_reload), so an
    edited template is picked up by the next ``render``; the inline CSS is
    re-read when its mtime changes.
    """

    def __init__(self, templates_dir: Path | None = None) -> None:
        self.templates_dir = Path(templates_dir or EMAIL_TEMPLATES)
        if not (self.templates_dir / HTML_TEMPLATE).is_file():
            raise RenderError(f"email templates not found in {self.templates_dir}")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.templates_dir),
            autoescape=_autoescape,  # noqa: S701 - on for every template but the text part
            undefined=jinja2.StrictUndefined,
            auto_reload=True,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["wrap"] = _wrap
        self._css: tuple[float, str] | None = None
        self._lock = threading.Lock()

    # The stages, separately (bench/render.py times each).

    def template_context(self, content: IssueContent, settings: Settings, *, text: bool) -> dict[str, Any]:
        host = urlsplit(settings.base_url).netloc or settings.base_url
        return {
            "content": content,
            "ph": TEXT_PLACEHOLDERS if text else PLACEHOLDERS,
            "preview_padding": "" if text else PREVIEW_PADDING,
            "site": {
                "base_url": settings.base_url,
                "host": host,
                "postal_address": settings.postal_address,
                "newsletter_name": settings.newsletter_name,
            },
        }

    def render_mjml(self, content: IssueContent, settings: Settings) -> str:
        try:
            template = self.env.get_template(HTML_TEMPLATE)
            return template.render(self.template_context(content, settings, text=False))
        except jinja2.TemplateError as exc:
            raise RenderError(f"email template: {exc}") from exc

    def render_text(self, content: IssueContent, settings: Settings) -> str:
        try:
            template = self.env.get_template(TEXT_TEMPLATE)
            text = template.render(self.template_context(content, settings, text=True))
        except jinja2.TemplateError as exc:
            raise RenderError(f"text template: {exc}") from exc
        text = re.sub(r"[ \t]+\n", "\n", text)
        return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"

    @staticmethod
    def compile_mjml(source: str) -> str:
        try:
            return str(mjml.mjml2html(source, disable_comments=True, fonts={}))
        except Exception as exc:  # mjml raises its own (Rust) error types
            raise RenderError(f"MJML did not compile: {exc}") from exc

    def inline_css(self, html: str) -> str:
        """Inline our stylesheet; MJML's own <style> blocks (media queries, resets) stay as they are."""
        marked = html.replace('<style type="text/css">', '<style type="text/css" data-premailer="ignore">')
        marked = marked.replace("<style media=", '<style data-premailer="ignore" media=')
        try:
            inliner = Premailer(
                marked,
                css_text=self._inline_css_text(),
                strip_important=False,
                allow_network=False,
                allow_loading_external_files=False,
                # Our stylesheet is inlined, so its <style> copy is dropped; MJML's own blocks and
                # the dark-mode media query are marked "ignore" above and stay.
                keep_style_tags=False,
                remove_classes=False,
                disable_validation=True,
                cssutils_logging_level=logging.CRITICAL,
                cache_css_parsing=True,
            )
            out = str(inliner.transform())
        except Exception as exc:  # premailer/lxml/cssutils errors
            raise RenderError(f"CSS inlining failed: {exc}") from exc
        out = out.replace(' data-premailer="ignore"', "")
        return _fix_document(out)

    def _inline_css_text(self) -> str:
        path = self.templates_dir / INLINE_CSS
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return ""
        with self._lock:
            if self._css is None or self._css[0] != mtime:
                self._css = (mtime, path.read_text(encoding="utf-8"))
            return self._css[1]

    def render(self, content: IssueContent, settings: Settings) -> RenderedEmail:
        timings: dict[str, float] = {}
        started = time.perf_counter()
        source = self.render_mjml(content, settings)
        timings["jinja"] = time.perf_counter() - started
        mark = time.perf_counter()
        compiled = self.compile_mjml(source)
        timings["mjml"] = time.perf_counter() - mark
        mark = time.perf_counter()
        inlined = self.inline_css(compiled)
        timings["inline"] = time.perf_counter() - mark
        mark = time.perf_counter()
        text = self.render_text(content, settings)
        timings["text"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
        return RenderedEmail(
            subject=content.subject, preheader=content.preheader, html=inlined, text=text, timings=timings
        )

    def signature(self) -> tuple[tuple[str, float], ...]:
        """The templates' names and mtimes: changes when a template is edited."""
        return tuple(
            sorted(
                (path.name, path.stat().st_mtime) for path in self.templates_dir.iterdir() if path.is_file()
            )
        )


def _fix_document(html: str) -> str:
    """premailer (lxml) drops the doctype; put it back, and make sure <html> says lang="en"."""
    body = html.lstrip()
    if body[:9].lower() == "<!doctype":
        body = body[body.index(">") + 1 :].lstrip()
    match = re.match(r"<html\b[^>]*>", body, flags=re.IGNORECASE)
    if match and "lang=" not in match.group():
        body = body[:5] + ' lang="en"' + body[5:]
    return "<!doctype html>\n" + body


_renderers: dict[Path, Renderer] = {}
_renderers_lock = threading.Lock()


def get_renderer(templates_dir: Path | None = None) -> Renderer:
    """One renderer per templates directory per process (its Jinja cache is worth keeping)."""
    key = Path(templates_dir or EMAIL_TEMPLATES).resolve()
    with _renderers_lock:
        renderer = _renderers.get(key)
        if renderer is None:
            renderer = _renderers[key] = Renderer(key)
        return renderer


def render_issue(
    settings: Settings, content: IssueContent, *, templates_dir: Path | None = None
) -> RenderedEmail:
    """Render an issue's HTML (with placeholders) and text part, once."""
    return get_renderer(templates_dir).render(content, settings)


@dataclass(frozen=True)
class FittedIssue:
    """An issue rendered within its byte budget: the content as rendered, and what was cut down."""

    content: IssueContent
    rendered: RenderedEmail
    compact: list[str]
    listed: list[str]

    @property
    def html_bytes(self) -> int:
        return len(self.rendered.html.encode())

    @property
    def warning(self) -> str | None:
        if not (self.compact or self.listed):
            return None
        parts = []
        if self.compact:
            parts.append(f"{len(self.compact)} shown compact")
        if self.listed:
            parts.append(f"{len(self.listed)} only listed with a link")
        return (
            f"email.html would pass its {EMAIL_BUDGET_BYTES // 1024} KB budget: of "
            f"{len(self.content.comparisons)} comparisons, {' and '.join(parts)} "
            f"({self.html_bytes // 1024} KB now; lower NEWSLETTER_ISSUE_SIZE to show them in full)"
        )


def _with_display(content: IssueContent, compact: int, listed: int) -> IssueContent:
    """The last ``listed`` comparisons listed only, the ``compact`` before them compact."""
    n = len(content.comparisons)
    changed: list[ComparisonSummary] = []
    for index, summary in enumerate(content.comparisons):
        display = "listed" if index >= n - listed else "compact" if index >= n - listed - compact else "full"
        changed.append(summary.model_copy(update={"display": display}))
    return content.model_copy(update={"comparisons": changed})


def render_within_budget(
    settings: Settings,
    content: IssueContent,
    *,
    budget: int = EMAIL_BUDGET_BYTES,
    limit: int = EMAIL_LIMIT_BYTES,
    templates_dir: Path | None = None,
) -> FittedIssue:
    """Render; past ``budget`` bytes show the least decisive comparisons compact (they come last),
    and if even all-compact passes ``budget``, list the last ones with a link instead. The first
    comparison is always shown; the result is never over ``limit`` unless one comparison is.

    Sizes are close to linear in the number of cards, so the cut is predicted from two renders
    and then checked (a few renders of ~10 ms, whatever ISSUE_SIZE).
    """
    renderer = get_renderer(templates_dir)
    n = len(content.comparisons)

    def attempt(compact: int, listed: int) -> tuple[IssueContent, RenderedEmail, int]:
        fitted = _with_display(content, compact, listed) if compact or listed else content
        rendered = renderer.render(fitted, settings)
        return fitted, rendered, len(rendered.html.encode())

    best = attempt(0, 0)
    if best[2] <= budget or n < 2:
        return _fitted(*best[:2])
    cut = n - 1
    all_compact = attempt(cut, 0)
    target = budget if all_compact[2] <= budget else None
    if target is not None:  # compact only: how many?
        saving = max(1, (best[2] - all_compact[2]) // cut)
        k = max(1, min(cut, -(-(best[2] - budget) // saving)))
        while True:
            best = attempt(k, 0)
            if best[2] <= budget or k >= cut:
                return _fitted(*best[:2])
            k += 1
    all_listed = attempt(0, cut)
    saving = max(1, (all_compact[2] - all_listed[2]) // cut)
    j = max(1, min(cut, -(-(all_compact[2] - budget) // saving)))
    while True:
        best = attempt(cut - j, j)
        if best[2] <= budget or j >= cut:
            break
        j += 1
    if best[2] > limit:
        log.warning("email.html is %d bytes even with one comparison shown", best[2])
    return _fitted(*best[:2])


def _fitted(content: IssueContent, rendered: RenderedEmail) -> FittedIssue:
    return FittedIssue(
        content=content,
        rendered=rendered,
        compact=[s.slug for s in content.comparisons if s.display == "compact"],
        listed=[s.slug for s in content.comparisons if s.display == "listed"],
    )
