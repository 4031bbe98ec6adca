"""``newsletter preview``: an issue as a sample recipient sees it, written to files or served.

A draft is re-rendered from its archived summaries with the current templates
(so template edits show up without a rebuild); a frozen issue (sending/sent)
shows exactly what was sent. ``--serve`` re-renders when a template's mtime
changes, checked on each request.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.errors import ConfigError, NewsletterError, NotFoundError
from newsletter.issues.archive import issue_dir, load_issue
from newsletter.issues.build import Edits, check_edits
from newsletter.issues.placeholders import Personalizer, sample_values
from newsletter.issues.records import get_issue, latest_issue
from newsletter.issues.render import get_renderer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preview:
    issue_id: str
    subject: str
    html: str
    text: str


def resolve_issue_id(engine: Engine, issue_id: str | None) -> str:
    if issue_id:
        return get_issue(engine, issue_id).id
    latest = latest_issue(engine)
    if latest is None:
        raise NotFoundError("no issue built yet: run `newsletter issue build` first")
    return latest.id


def render_preview(
    settings: Settings,
    engine: Engine,
    issue_id: str | None = None,
    *,
    templates_dir: Path | None = None,
    values: dict[str, str] | None = None,
) -> Preview:
    """The issue's HTML and text with a sample recipient's values filled in."""
    resolved = resolve_issue_id(engine, issue_id)
    info = get_issue(engine, resolved)
    archived = load_issue(settings, resolved)
    if info.frozen:
        html, text = archived.html, archived.text
    else:
        rendered = get_renderer(templates_dir).render(archived.content, settings)
        html, text = rendered.html, rendered.text
    recipient = values or sample_values(settings)
    return Preview(
        issue_id=resolved,
        subject=archived.subject,
        html=Personalizer(html, html=True).fill(recipient),
        text=Personalizer(text, html=False).fill(recipient),
    )


def render_draft_preview(
    settings: Settings,
    engine: Engine,
    issue_id: str,
    *,
    subject: str | None = None,
    preheader: str | None = None,
    note: str | None = None,
) -> Preview:
    """A draft as it would look with these edits, before they are saved (the admin's live
    preview). Checked as ``edit_issue`` checks them (IssueFieldError names a bad field); a
    frozen issue shows what was sent. An emptied subject or preheader shows the saved one."""
    info = get_issue(engine, issue_id)
    if info.frozen:
        return render_preview(settings, engine, issue_id)
    edits = check_edits(
        Edits(info.custom_subject, info.custom_preheader, info.note),
        subject=subject,
        preheader=preheader,
        note=note,
    )
    archived = load_issue(settings, issue_id)
    rendered = get_renderer().render(edits.apply(archived.content), settings)
    recipient = sample_values(settings)
    return Preview(
        issue_id=issue_id,
        subject=edits.subject or archived.subject,
        html=Personalizer(rendered.html, html=True).fill(recipient),
        text=Personalizer(rendered.text, html=False).fill(recipient),
    )


def write_preview(
    settings: Settings,
    engine: Engine,
    issue_id: str | None,
    out: Path | None,
    *,
    templates_dir: Path | None = None,
) -> tuple[Path, Path]:
    """Write the HTML to ``out`` and the text part next to it (``.txt``); both paths.

    Without ``out``, into the issue's archive folder (``preview.html``), never the
    current directory, which may be anything (a repository, a home folder).
    """
    preview = render_preview(settings, engine, issue_id, templates_dir=templates_dir)
    if out is None:
        out = issue_dir(settings, preview.issue_id) / "preview.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    text_path = out.with_suffix(".txt") if out.suffix != ".txt" else out.with_name(out.name + ".txt")
    out.write_text(preview.html, encoding="utf-8")
    text_path.write_text(preview.text, encoding="utf-8")
    return out, text_path


class _PreviewCache:
    """The last rendered preview and the template signature it was rendered with."""

    def __init__(
        self, settings: Settings, engine: Engine, issue_id: str | None, templates_dir: Path | None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.issue_id = issue_id
        self.templates_dir = templates_dir
        self._lock = threading.Lock()
        self._key: Any = None
        self._preview: Preview | None = None
        self.renders = 0

    def get(self) -> Preview:
        with self._lock:
            key = get_renderer(self.templates_dir).signature()
            if self._preview is None or key != self._key:
                self._preview = render_preview(
                    self.settings, self.engine, self.issue_id, templates_dir=self.templates_dir
                )
                self._key = key
                self.renders += 1
            return self._preview


def make_preview_server(
    settings: Settings,
    engine: Engine,
    issue_id: str | None = None,
    *,
    port: int = 8025,
    templates_dir: Path | None = None,
) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 serving ``/`` (HTML) and ``/email.txt``; call serve_forever()."""
    cache = _PreviewCache(settings, engine, issue_id, templates_dir)
    cache.get()  # fail now (no issue, broken template), not on the first request

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path not in ("/", "/email.html", "/email.txt"):
                self._send(404, "text/plain; charset=utf-8", "not found\n")
                return
            try:
                preview = cache.get()
            except NewsletterError as exc:
                self._send(500, "text/plain; charset=utf-8", f"{exc}\n")
                return
            if path == "/email.txt":
                self._send(200, "text/plain; charset=utf-8", preview.text)
            else:
                self._send(200, "text/html; charset=utf-8", preview.html)

        def _send(self, status: int, content_type: str, body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("preview: " + format, *args)

    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        raise ConfigError(f"cannot serve the preview on 127.0.0.1:{port}: {exc.strerror or exc}") from exc
    server.preview_cache = cache  # type: ignore[attr-defined]
    return server
