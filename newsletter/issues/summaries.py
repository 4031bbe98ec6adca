"""Issues as the site and the admin list them: id, subject, state and dates, no content.

The archive (``/issues``), the home page and the admin read these; what the public may see
is ``tables.published_issue``'s call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from newsletter.tables import ComparisonRow, IssueComparisonRow, IssueRow, published_issue


@dataclass(frozen=True)
class IssueSummary:
    id: str
    subject: str
    preheader: str
    status: str
    issue_date: datetime
    sent_at: datetime | None


def list_issue_summaries(
    engine: Engine, *, public: bool = True, limit: int | None = None
) -> list[IssueSummary]:
    """Issues newest first; only the ones that went out unless ``public`` is False (admin)."""
    query = select(IssueRow).order_by(IssueRow.issue_date.desc(), IssueRow.id.desc())
    if public:
        query = query.where(published_issue(IssueRow.status, IssueRow.id))
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        IssueSummary(
            id=row.id,
            subject=row.subject,
            preheader=row.preheader,
            status=row.status,
            issue_date=row.issue_date,
            sent_at=row.sent_at,
        )
        for row in rows
    ]


def get_issue_summary(engine: Engine, issue_id: str, *, public: bool = False) -> IssueSummary | None:
    """One issue; with ``public``, only if the archive shows it (see ``published_issue``)."""
    query = select(IssueRow).where(IssueRow.id == issue_id)
    if public:
        query = query.where(published_issue(IssueRow.status, IssueRow.id))
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return IssueSummary(row.id, row.subject, row.preheader, row.status, row.issue_date, row.sent_at)


def issues_with_comparison(engine: Engine, slug: str) -> list[tuple[str, str]]:
    """(id, subject) of the public issues that carried this comparison, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(IssueRow.id, IssueRow.subject)
            .join(IssueComparisonRow, IssueComparisonRow.issue_id == IssueRow.id)
            .join(ComparisonRow, ComparisonRow.id == IssueComparisonRow.comparison_id)
            .where(ComparisonRow.slug == slug, published_issue(IssueRow.status, IssueRow.id))
            .order_by(IssueRow.issue_date.desc())
        ).all()
    return [(row.id, row.subject) for row in rows]
