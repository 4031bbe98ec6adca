"""Which comparisons go into the next issue, and what the issue is called.

An issue holds the comparisons that are not yet in any issue past draft
(sending or sent), newest first by ``published_at`` (slug breaks ties, so the
same catalog always gives the same issue), at most ``ISSUE_SIZE``. A comparison
that went out once is never sent again, even if its page changed since.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.states import FROZEN_ISSUE_STATUSES
from newsletter.tables import ComparisonRow, IssueComparisonRow, IssueRow


def select_comparisons(session: Session, limit: int) -> list[ComparisonRow]:
    """The comparisons of the next issue, newest first, at most ``limit``."""
    already_out = (
        select(IssueComparisonRow.comparison_id)
        .join(IssueRow, IssueRow.id == IssueComparisonRow.issue_id)
        .where(IssueRow.status.in_(FROZEN_ISSUE_STATUSES))
    )
    statement = (
        select(ComparisonRow)
        .where(ComparisonRow.id.not_in(already_out))
        .order_by(ComparisonRow.published_at.desc(), ComparisonRow.slug.asc())
        .limit(limit)
    )
    return list(session.scalars(statement))


def catalog_counts(session: Session) -> tuple[int, int]:
    """(comparisons in the catalog, comparisons already in an issue past draft)."""
    total = session.scalar(select(func.count()).select_from(ComparisonRow)) or 0
    sent = (
        session.scalar(
            select(func.count(func.distinct(IssueComparisonRow.comparison_id)))
            .select_from(IssueComparisonRow)
            .join(IssueRow, IssueRow.id == IssueComparisonRow.issue_id)
            .where(IssueRow.status.in_(FROZEN_ISSUE_STATUSES))
        )
        or 0
    )
    return int(total), int(sent)


def issue_datetime(settings: Settings, when: datetime | date | None = None) -> datetime:
    """The issue's date as an aware datetime (naive values are in the configured time zone)."""
    zone = zoneinfo.ZoneInfo(settings.timezone)
    if when is None:
        return datetime.now(zone)
    if not isinstance(when, datetime):
        return datetime.combine(when, time(0, 0), tzinfo=zone)
    if when.tzinfo is None:
        return when.replace(tzinfo=zone)
    return when.astimezone(zone)


def week_id(when: datetime) -> str:
    """The readable issue id: the ISO week of the issue date, e.g. "2026-W48"."""
    year, week, _day = when.isocalendar()
    return f"{year}-W{week:02d}"


def candidate_ids(base: str) -> list[str]:
    """``base``, then ``base-2``, ``base-3``... when the week already has a sent issue."""
    return [base, *(f"{base}-{n}" for n in range(2, 100))]


def comparison_url(settings: Settings, row: ComparisonRow) -> str:
    """The full comparison on the site."""
    url = row.url or (row.data or {}).get("url")
    if url:
        return str(url)
    return f"{settings.site_base}/comparisons/{row.slug}"


def as_utc(when: datetime) -> datetime:
    return when.astimezone(UTC)
