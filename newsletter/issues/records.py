"""An issue's record in the database: read it, list them, freeze it for sending.

Light on purpose (no renderer): delivery, the web layer and the CLI's status commands use
it. Building and editing an issue is ``newsletter.issues.build``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from newsletter.db import session_scope
from newsletter.errors import IssueError, NotFoundError
from newsletter.states import FROZEN_ISSUE_STATUSES, IssueStatus
from newsletter.tables import ComparisonRow, IssueComparisonRow, IssueRow, utcnow


class IssueFrozenError(IssueError):
    """The issue started sending: nothing about it can change any more."""

    http_status = 409


class IssueFieldError(IssueError):
    """An edit the issue cannot take; ``field`` names what to fix."""

    http_status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class IssueInfo:
    id: str
    subject: str
    preheader: str
    status: str
    issue_date: datetime
    built_at: datetime
    send_started_at: datetime | None
    sent_at: datetime | None
    comparison_slugs: list[str] = field(default_factory=list)
    note: str | None = None
    custom_subject: str | None = None
    custom_preheader: str | None = None

    @property
    def frozen(self) -> bool:
        return self.status in FROZEN_ISSUE_STATUSES

    @property
    def comparisons(self) -> int:
        return len(self.comparison_slugs)


# --- read -------------------------------------------------------------------------------------


def _info(session: Session, row: IssueRow) -> IssueInfo:
    slugs = list(
        session.scalars(
            select(ComparisonRow.slug)
            .join(IssueComparisonRow, IssueComparisonRow.comparison_id == ComparisonRow.id)
            .where(IssueComparisonRow.issue_id == row.id)
            .order_by(IssueComparisonRow.position)
        )
    )
    return IssueInfo(
        id=row.id,
        subject=row.subject,
        preheader=row.preheader,
        status=row.status,
        issue_date=row.issue_date,
        built_at=row.built_at,
        send_started_at=row.send_started_at,
        sent_at=row.sent_at,
        comparison_slugs=slugs,
        note=row.note,
        custom_subject=row.custom_subject,
        custom_preheader=row.custom_preheader,
    )


def list_issues(engine: Engine) -> list[IssueInfo]:
    """Every issue, newest first."""
    with session_scope(engine) as session:
        rows = session.scalars(select(IssueRow).order_by(IssueRow.issue_date.desc(), IssueRow.id.desc()))
        return [_info(session, row) for row in rows]


def get_issue(engine: Engine, issue_id: str) -> IssueInfo:
    with session_scope(engine) as session:
        row = session.get(IssueRow, issue_id)
        if row is None:
            raise NotFoundError(f"no issue {issue_id!r}")
        return _info(session, row)


def latest_issue(engine: Engine) -> IssueInfo | None:
    """The most recently built issue (what ``preview`` shows by default)."""
    with session_scope(engine) as session:
        row = session.scalars(select(IssueRow).order_by(IssueRow.built_at.desc(), IssueRow.id.desc())).first()
        return _info(session, row) if row is not None else None


# --- freeze ------------------------------------------------------------------------------------


def mark_sending(engine: Engine, issue_id: str) -> IssueInfo:
    """draft -> sending: the issue is frozen from now on. Idempotent for sending/sent issues."""
    with session_scope(engine) as session:
        session.execute(
            update(IssueRow)
            .where(IssueRow.id == issue_id, IssueRow.status == IssueStatus.DRAFT)
            .values(status=IssueStatus.SENDING, send_started_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        row = session.get(IssueRow, issue_id)
        if row is None:
            raise NotFoundError(f"no issue {issue_id!r}")
        return _info(session, row)


def mark_sent(engine: Engine, issue_id: str) -> IssueInfo:
    """draft/sending -> sent. Idempotent for a sent issue."""
    with session_scope(engine) as session:
        row = session.get(IssueRow, issue_id)
        if row is None:
            raise NotFoundError(f"no issue {issue_id!r}")
        if row.status != IssueStatus.SENT:
            now = utcnow()
            session.execute(
                update(IssueRow)
                .where(IssueRow.id == issue_id, IssueRow.status != IssueStatus.SENT)
                .values(status=IssueStatus.SENT, sent_at=now, send_started_at=row.send_started_at or now)
                .execution_options(synchronize_session=False)
            )
            session.refresh(row)
        return _info(session, row)
