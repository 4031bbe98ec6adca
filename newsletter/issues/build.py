"""Issues: build (select, summarise, render, archive), list, show, and freeze.

``build_issue`` is idempotent: with the same catalog and date it rebuilds the
same draft (same id, same archive bytes). There is at most one draft: building
again refreshes it instead of adding another. Once an issue is ``sending`` or
``sent`` it is frozen: its row and its archive are never rewritten, and its
comparisons never go out again.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import date as Day
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.errors import IssueError, NotFoundError
from newsletter.issues import archive
from newsletter.issues.content import IssueContent
from newsletter.issues.notes import NOTE_LIMIT, note_html, note_text
from newsletter.issues.records import (
    IssueFieldError,
    IssueFrozenError,
    IssueInfo,
    get_issue,
)
from newsletter.issues.render import EMAIL_BUDGET_BYTES, FittedIssue, render_within_budget
from newsletter.issues.selection import (
    as_utc,
    candidate_ids,
    catalog_counts,
    comparison_url,
    issue_datetime,
    select_comparisons,
    week_id,
)
from newsletter.issues.verdicts import build_content, summarise_issue
from newsletter.models import Comparison
from newsletter.states import IssueStatus
from newsletter.tables import (
    ComparisonRow,
    DeliveryBatchRow,
    DeliveryRow,
    IssueComparisonRow,
    IssueRow,
    utcnow,
)

log = logging.getLogger(__name__)


SUBJECT_EDIT_LIMIT = 200
PREHEADER_EDIT_LIMIT = 300


@dataclass(frozen=True)
class Edits:
    """The editor's words for a draft; None keeps the computed subject/preheader, no note."""

    subject: str | None = None
    preheader: str | None = None
    note: str | None = None

    @classmethod
    def of(cls, row: IssueRow | None) -> Edits:
        if row is None:
            return cls()
        return cls(row.custom_subject, row.custom_preheader, row.note)

    def apply(self, content: IssueContent) -> IssueContent:
        return content.model_copy(
            update={
                "subject": self.subject or content.subject,
                "preheader": self.preheader or content.preheader,
                "note_html": note_html(self.note),
                "note_text": note_text(self.note),
            }
        )


@dataclass(frozen=True)
class BuildResult:
    """What ``build_issue`` did. ``issue_id`` is None when there was nothing to build."""

    issue_id: str | None
    reason: str
    created: bool = False
    changed: bool = False
    comparisons: int = 0
    archive: Path | None = None
    # Set when the email passed its byte budget and comparisons were shown compact or only listed.
    warning: str | None = None


# --- build -----------------------------------------------------------------------------------


def build_issue(settings: Settings, engine: Engine, *, date: datetime | Day | None = None) -> BuildResult:
    """Build (or refresh) the next issue for ``date`` (default: now in the configured zone)."""
    when = issue_datetime(settings, date)
    stale_dir: Path | None = None
    try:
        with session_scope(engine) as session:
            rows = select_comparisons(session, settings.issue_size)
            if not rows:
                return BuildResult(issue_id=None, reason=_nothing_new(session))
            draft = session.scalars(
                select(IssueRow)
                .where(IssueRow.status == IssueStatus.DRAFT)
                .order_by(IssueRow.built_at.desc())
            ).first()
            issue_id = _choose_id(session, week_id(when), draft)
            carried = Edits.of(draft)  # the editor's words follow the draft to its new id
            if draft is not None and draft.id != issue_id:
                if _has_deliveries(session, draft.id):
                    issue_id = draft.id  # a test send referenced it: keep its id
                else:
                    stale_dir = archive.issue_dir(settings, draft.id)
                    _delete_draft(session, draft.id)
            result = _write(settings, session, issue_id, when, rows, carried)
    except IntegrityError as exc:
        raise IssueError(f"another build of this issue ran at the same time; try again ({exc.orig})") from exc
    if stale_dir is not None and stale_dir.is_dir():
        shutil.rmtree(stale_dir, ignore_errors=True)
    return result


def rebuild_issue(settings: Settings, engine: Engine, issue_id: str) -> BuildResult:
    """Refresh a draft (e.g. after editing templates). A frozen issue raises IssueError."""
    info = get_issue(engine, issue_id)
    if info.frozen:
        raise IssueError(f"issue {issue_id} is {info.status}: it is frozen and cannot be rebuilt")
    result = build_issue(settings, engine, date=info.issue_date)
    if result.issue_id != issue_id:
        raise IssueError(f"issue {issue_id} was replaced by {result.issue_id or 'nothing'}: {result.reason}")
    return result


def _nothing_new(session: Session) -> str:
    total, sent = catalog_counts(session)
    if total == 0:
        return "no issue: the catalog is empty (import comparisons first)"
    return f"no issue: no new comparison since the last sent issue ({sent} of {total} already sent)"


def _choose_id(session: Session, base: str, draft: IssueRow | None) -> str:
    for candidate in candidate_ids(base):
        existing = session.get(IssueRow, candidate)
        if existing is None:
            return candidate
        if existing.status == IssueStatus.DRAFT and (draft is None or existing.id == draft.id):
            return candidate
    raise IssueError(f"too many issues in week {base}")


def _has_deliveries(session: Session, issue_id: str) -> bool:
    for table in (DeliveryRow, DeliveryBatchRow):
        if session.scalar(select(func.count()).select_from(table).where(table.issue_id == issue_id)):
            return True
    return False


def _delete_draft(session: Session, issue_id: str) -> None:
    session.execute(delete(IssueComparisonRow).where(IssueComparisonRow.issue_id == issue_id))
    session.execute(delete(IssueRow).where(IssueRow.id == issue_id, IssueRow.status == IssueStatus.DRAFT))
    session.flush()


def issue_content(
    settings: Settings,
    issue_id: str,
    when: datetime,
    rows: list[ComparisonRow],
    edits: Edits | None = None,
) -> IssueContent:
    summaries = summarise_issue(
        [(Comparison.model_validate(row.data), comparison_url(settings, row)) for row in rows]
    )
    content = build_content(
        issue_id=issue_id,
        issue_date=when,
        newsletter_name=settings.newsletter_name,
        archive_url=f"{settings.base_url}/issues/{issue_id}",
        summaries=summaries,
    )
    return (edits or Edits()).apply(content)


def _issue_data(
    issue_id: str, when: datetime, fitted: FittedIssue, rows: list[ComparisonRow]
) -> dict[str, Any]:
    """issue.json: no build timestamps, so the same catalog and date give the same bytes.

    ``fit`` says how big email.html is and which comparisons the byte budget cut down.
    """
    content = fitted.content
    # The summaries are in reading order (most decisive first); rows in selection order.
    urls = {summary.slug: summary.url for summary in content.comparisons}
    return {
        "id": issue_id,
        "issue_date": when.isoformat(),
        "subject": content.subject,
        "preheader": content.preheader,
        "content": content.model_dump(mode="json"),
        "fit": {
            "html_bytes": fitted.html_bytes,
            "budget_bytes": EMAIL_BUDGET_BYTES,
            "compact": fitted.compact,
            "listed": fitted.listed,
            "warning": fitted.warning,
        },
        "comparisons": [
            {
                "slug": row.slug,
                "title": row.title,
                "url": urls.get(row.slug, ""),
                "published_at": as_utc(row.published_at).isoformat(),
                "content_hash": row.content_hash,
                "data": row.data,
            }
            for row in rows
        ],
    }


def _write(
    settings: Settings,
    session: Session,
    issue_id: str,
    when: datetime,
    rows: list[ComparisonRow],
    carried: Edits | None = None,
) -> BuildResult:
    existing = session.get(IssueRow, issue_id)
    edits = Edits.of(existing) if existing is not None else (carried or Edits())
    fitted = render_within_budget(settings, issue_content(settings, issue_id, when, rows, edits))
    content, rendered = fitted.content, fitted.rendered
    data = _issue_data(issue_id, when, fitted, rows)

    created = existing is None
    if existing is None:
        session.add(
            IssueRow(
                id=issue_id,
                subject=content.subject,
                preheader=content.preheader,
                status=IssueStatus.DRAFT,
                issue_date=when,
                built_at=utcnow(),
                custom_subject=edits.subject,
                custom_preheader=edits.preheader,
                note=edits.note,
            )
        )
    else:
        # Conditional on still being a draft: takes the row's write lock, so a concurrent
        # mark_sending waits for this build (and a build never rewrites a frozen issue).
        changed_rows = session.execute(
            update(IssueRow)
            .where(IssueRow.id == issue_id, IssueRow.status == IssueStatus.DRAFT)
            .values(subject=content.subject, preheader=content.preheader, issue_date=when, built_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if not changed_rows:
            raise IssueError(f"issue {issue_id} started sending during the build; it is frozen now")
    session.flush()
    session.execute(delete(IssueComparisonRow).where(IssueComparisonRow.issue_id == issue_id))
    session.add_all(
        IssueComparisonRow(issue_id=issue_id, comparison_id=row.id, position=position)
        for position, row in enumerate(rows)
    )
    session.flush()

    changed = True
    if not created:
        try:
            changed = archive.load_issue(settings, issue_id).data != data
        except NotFoundError:
            changed = True
    folder = archive.write_issue(
        settings,
        issue_id,
        html=rendered.html,
        text=rendered.text,
        web_html=rendered.web_html(settings),
        data=data,
    )
    count = len(rows)
    noun = "comparison" if count == 1 else "comparisons"
    if created:
        reason = f"built issue {issue_id} with {count} {noun}"
    elif changed:
        reason = f"rebuilt draft issue {issue_id} with {count} {noun}"
    else:
        reason = f"draft issue {issue_id} is up to date ({count} {noun})"
    log.info("%s: %s", reason, content.subject)
    if fitted.warning:
        log.info("issue %s: %s", issue_id, fitted.warning)
    return BuildResult(
        issue_id=issue_id,
        reason=reason,
        created=created,
        changed=changed,
        comparisons=count,
        archive=folder,
        warning=fitted.warning,
    )


# --- edit ---------------------------------------------------------------------------------------


def _one_line(name: str, value: str, limit: int) -> str | None:
    text = value.strip()
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise IssueFieldError(name, "must be one line without control characters")
    if len(text) > limit:
        raise IssueFieldError(name, f"is {len(text)} characters long; at most {limit}")
    return text or None


def check_edits(current: Edits, *, subject: str | None, preheader: str | None, note: str | None) -> Edits:
    """The draft's edits after this change. None leaves a field as it is; "" goes back to the
    computed subject/preheader, or removes the note. IssueFieldError names a bad field."""
    new = current
    if subject is not None:
        new = Edits(_one_line("subject", subject, SUBJECT_EDIT_LIMIT), new.preheader, new.note)
    if preheader is not None:
        new = Edits(new.subject, _one_line("preheader", preheader, PREHEADER_EDIT_LIMIT), new.note)
    if note is not None:
        if len(note) > NOTE_LIMIT:
            raise IssueFieldError("note", f"is {len(note)} characters long; at most {NOTE_LIMIT}")
        if "\x00" in note:
            raise IssueFieldError("note", "contains a NUL character")
        new = Edits(new.subject, new.preheader, note.strip() or None)
    return new


def edit_issue(
    settings: Settings,
    engine: Engine,
    issue_id: str,
    *,
    subject: str | None = None,
    preheader: str | None = None,
    note: str | None = None,
) -> IssueInfo:
    """Change a draft's subject, preheader or editor's note and re-render it.

    IssueFrozenError (409) once sending started; IssueFieldError (422) for a bad value.
    """
    info = get_issue(engine, issue_id)
    if info.frozen:
        raise IssueFrozenError(f"issue {issue_id} is {info.status}: it can no longer be edited")
    edits = check_edits(
        Edits(info.custom_subject, info.custom_preheader, info.note),
        subject=subject,
        preheader=preheader,
        note=note,
    )
    with session_scope(engine) as session:
        changed = session.execute(
            update(IssueRow)
            .where(IssueRow.id == issue_id, IssueRow.status == IssueStatus.DRAFT)
            .values(custom_subject=edits.subject, custom_preheader=edits.preheader, note=edits.note)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
    if not changed:
        raise IssueFrozenError(f"issue {issue_id} started sending: it can no longer be edited")
    rebuild_issue(settings, engine, issue_id)
    return get_issue(engine, issue_id)
