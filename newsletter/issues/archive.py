"""The issue archive: ``<ISSUES_DIR>/<issue-id>/`` holds what was (or will be) sent.

    email.html   the inlined HTML with per-recipient placeholders (render.PLACEHOLDERS)
    email.txt    the text part, with its placeholders (render.TEXT_PLACEHOLDERS)
    web.html     the browser version: placeholders replaced by neutral values
    issue.json   the issue's data: id, date, subject, preheader, summaries, comparisons

Every file is written atomically (``files.write_atomic``: temporary file + ``os.replace``), issue.json
last, so a reader never sees a half-written file. Whether an issue may still be
rewritten is the database's call (issues.py: only drafts are); this module only
stores and loads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter import files
from newsletter.config import Settings
from newsletter.errors import NotFoundError
from newsletter.issues.content import IssueContent

ISSUE_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,39}$")

EMAIL_HTML = "email.html"
EMAIL_TEXT = "email.txt"
WEB_HTML = "web.html"
ISSUE_JSON = "issue.json"


@dataclass(frozen=True)
class ArchivedIssue:
    id: str
    subject: str
    preheader: str
    html: str
    text: str
    web_html: str
    data: dict[str, Any]
    path: Path

    @property
    def fit_warning(self) -> str | None:
        """Set when the byte budget showed comparisons compact or only listed (issue.json "fit")."""
        fit = self.data.get("fit")
        warning = fit.get("warning") if isinstance(fit, dict) else None
        return str(warning) if warning else None

    @property
    def content(self) -> IssueContent:
        """The summaries the issue was rendered from (to re-render it, e.g. in a preview)."""
        return IssueContent.model_validate(self.data["content"])


def valid_issue_id(issue_id: str) -> bool:
    return bool(ISSUE_ID_RE.match(issue_id))


def issue_dir(settings: Settings, issue_id: str) -> Path:
    """Where an issue's files live. Refuses ids that could escape the archive."""
    if not valid_issue_id(issue_id):
        raise NotFoundError(f"no issue {issue_id!r}")
    return Path(settings.issues_dir) / issue_id


def write_atomic(path: Path, data: str) -> None:
    """One archive file, atomically; readable by all (the archive is published: web app, static hosting)."""
    files.write_atomic(path, data, mode=0o644)


def write_issue(
    settings: Settings,
    issue_id: str,
    *,
    html: str,
    text: str,
    web_html: str,
    data: dict[str, Any],
) -> Path:
    """Write (or replace) an issue's archive; returns its directory."""
    folder = issue_dir(settings, issue_id)
    write_atomic(folder / EMAIL_HTML, html)
    write_atomic(folder / EMAIL_TEXT, text)
    write_atomic(folder / WEB_HTML, web_html)
    write_atomic(folder / ISSUE_JSON, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    return folder


def load_issue(settings: Settings, issue_id: str) -> ArchivedIssue:
    """An archived issue; NotFoundError when it was never built here."""
    folder = issue_dir(settings, issue_id)
    try:
        data = json.loads((folder / ISSUE_JSON).read_text(encoding="utf-8"))
        html = (folder / EMAIL_HTML).read_text(encoding="utf-8")
        text = (folder / EMAIL_TEXT).read_text(encoding="utf-8")
        web_html = (folder / WEB_HTML).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"no archived issue {issue_id!r} in {settings.issues_dir}") from None
    return ArchivedIssue(
        id=issue_id,
        subject=str(data.get("subject", "")),
        preheader=str(data.get("preheader", "")),
        html=html,
        text=text,
        web_html=web_html,
        data=data,
        path=folder,
    )


def fit_warning(settings: Settings, issue_id: str) -> str | None:
    """The archived issue's byte-budget warning; None when it has none or is not archived."""
    try:
        return load_issue(settings, issue_id).fit_warning
    except NotFoundError:
        return None


def archived_ids(settings: Settings) -> list[str]:
    """Ids of the issues in the archive folder, sorted."""
    root = Path(settings.issues_dir)
    if not root.is_dir():
        return []
    return sorted(
        path.name for path in root.iterdir() if valid_issue_id(path.name) and (path / ISSUE_JSON).is_file()
    )
