"""What the stats page shows: per issue what the ledger and the provider's events say, and
subscriber growth by ISO week. Read-only queries, the same on SQLite and PostgreSQL.

Numbers are people, not events: two opens by one reader count once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from newsletter.states import IssueStatus
from newsletter.tables import DeliveryRow, IssueRow, SubscriberRow, WebhookEventRow

# Provider event names (SendGrid's) behind each column of the stats table.
EVENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "delivered": ("delivered",),
    "opened": ("open",),
    "clicked": ("click",),
    "bounced": ("bounce", "dropped"),
    "unsubscribed": ("unsubscribe", "group_unsubscribe", "spamreport"),
}


@dataclass(frozen=True)
class IssueStats:
    issue_id: str
    subject: str
    status: str
    sent: int  # the ledger: accepted by the provider
    failed: int
    delivered: int  # the provider's events, from here on
    opened: int
    clicked: int
    bounced: int
    unsubscribed: int

    def rate(self, count: int) -> str:
        """``count`` as a share of what was sent, for the table."""
        return f"{100 * count / self.sent:.0f}%" if self.sent else "—"


def issue_stats(engine: Engine, *, limit: int = 12) -> list[IssueStats]:
    """The ``limit`` latest issues past draft, oldest first (a chart reads left to right)."""
    with engine.connect() as conn:
        issues = conn.execute(
            select(IssueRow.id, IssueRow.subject, IssueRow.status)
            .where(IssueRow.status != IssueStatus.DRAFT)
            .order_by(IssueRow.issue_date.desc(), IssueRow.id.desc())
            .limit(limit)
        ).all()
        ids = [row.id for row in issues]
        ledger: dict[tuple[str | None, str], int] = {}
        events: dict[tuple[str | None, str], int] = {}
        if ids:
            for issue_id, state, count in conn.execute(
                select(DeliveryRow.issue_id, DeliveryRow.state, func.count())
                .where(DeliveryRow.issue_id.in_(ids))
                .group_by(DeliveryRow.issue_id, DeliveryRow.state)
            ):
                ledger[(issue_id, state)] = int(count)
            for event_issue, event, count in conn.execute(
                select(
                    WebhookEventRow.issue_id,
                    WebhookEventRow.event,
                    func.count(func.distinct(WebhookEventRow.subscriber_id)),
                )
                .where(WebhookEventRow.issue_id.in_(ids))
                .group_by(WebhookEventRow.issue_id, WebhookEventRow.event)
            ):
                events[(event_issue, event)] = int(count)

    def counted(issue_id: str, column: str) -> int:
        return sum(events.get((issue_id, name), 0) for name in EVENT_COLUMNS[column])

    return [
        IssueStats(
            issue_id=row.id,
            subject=row.subject,
            status=row.status,
            sent=ledger.get((row.id, "sent"), 0),
            failed=ledger.get((row.id, "failed"), 0),
            **{column: counted(row.id, column) for column in EVENT_COLUMNS},
        )
        for row in reversed(issues)
    ]


@dataclass(frozen=True)
class WeekGrowth:
    week: str  # ISO week, "2026-W48"
    confirmed: int  # confirmed during the week
    left: int  # unsubscribed, bounced or complained during the week


def _week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def growth_by_week(engine: Engine, *, weeks: int = 12, now: datetime | None = None) -> list[WeekGrowth]:
    """New confirmed subscribers and departures per ISO week, the last ``weeks`` weeks, oldest first."""
    today = (now or datetime.now(UTC)).astimezone(UTC)
    monday = (today - timedelta(days=today.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    since = monday - timedelta(weeks=weeks - 1)
    keys = [_week(since + timedelta(weeks=offset)) for offset in range(weeks)]
    confirmed = dict.fromkeys(keys, 0)
    left = dict.fromkeys(keys, 0)
    columns = (SubscriberRow.unsubscribed_at, SubscriberRow.bounced_at, SubscriberRow.complained_at)
    with engine.connect() as conn:
        # Only the window's timestamps are read (indexable range conditions), streamed.
        for (moment,) in conn.execute(
            select(SubscriberRow.confirmed_at).where(SubscriberRow.confirmed_at >= since)
        ):
            key = _week(moment) if moment is not None else None
            if key in confirmed:
                confirmed[key] += 1
        for column in columns:
            for (moment,) in conn.execute(select(column).where(column >= since)):
                key = _week(moment) if moment is not None else None
                if key in left:
                    left[key] += 1
    return [WeekGrowth(key, confirmed[key], left[key]) for key in keys]
