"""SQLAlchemy tables. The database is the coordination point between processes.

Changing a table here needs an Alembic migration in newsletter/migrations/versions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    and_,
    exists,
    or_,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from newsletter.states import BatchState, DeliveryState, IssueStatus, SlotOutcome, SubscriberStatus

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# --- catalog ---------------------------------------------------------------------------


class ToolRow(Base):
    __tablename__ = "tools"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    tagline: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(200))
    pricing: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ComparisonRow(Base):
    __tablename__ = "comparisons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    category: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(1000))
    source: Mapped[str | None] = mapped_column(String(1000))
    content_hash: Mapped[str] = mapped_column(String(64))
    # The whole parsed Comparison (models.Comparison JSON): verdicts are computed from it.
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ComparisonToolRow(Base):
    __tablename__ = "comparison_tools"

    comparison_id: Mapped[int] = mapped_column(
        ForeignKey("comparisons.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    tool_id: Mapped[int] = mapped_column(ForeignKey("tools.id"), index=True)


# --- issues ----------------------------------------------------------------------------


class IssueRow(Base):
    __tablename__ = "issues"

    # Readable and stable: the ISO week of the issue date, e.g. "2026-W48".
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject: Mapped[str] = mapped_column(String(300))
    preheader: Mapped[str] = mapped_column(String(500))
    # IssueStatus: draft -> sending -> sent. Anything past draft is frozen.
    status: Mapped[str] = mapped_column(String(20), default=IssueStatus.DRAFT, index=True)
    issue_date: Mapped[datetime] = mapped_column(UTCDateTime)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    send_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The editor's own words (NULL: the computed subject/preheader, no note). A rebuild of
    # the draft keeps them; migration 0003.
    custom_subject: Mapped[str | None] = mapped_column(String(300))
    custom_preheader: Mapped[str | None] = mapped_column(String(500))
    note: Mapped[str | None] = mapped_column(Text)  # Markdown source of the editor's note


class IssueComparisonRow(Base):
    __tablename__ = "issue_comparisons"

    issue_id: Mapped[str] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


# --- subscribers -------------------------------------------------------------------------


class SubscriberRow(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Normalised (trimmed, domain lower-cased). NULL once the person asked to be forgotten.
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    # sha256 of the normalised address, lower-cased: survives erasure to honour suppression.
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    # SubscriberStatus: pending | confirmed | unsubscribed | bounced | complained
    status: Mapped[str] = mapped_column(String(20), default=SubscriberStatus.PENDING)
    source: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    complained_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Consent record (GDPR art. 7): when, from where, with what.
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consent_ip: Mapped[str | None] = mapped_column(String(64))
    consent_user_agent: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (Index("ix_subscribers_status_id", "status", "id"),)


class SuppressionRow(Base):
    """Addresses that must never be mailed, kept as a hash so erasure does not undo them."""

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- delivery ledger ---------------------------------------------------------------------


class DeliveryBatchRow(Base):
    """One provider request (or one SMTP run of messages): the unit of uncertainty."""

    __tablename__ = "delivery_batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    issue_id: Mapped[str] = mapped_column(ForeignKey("issues.id"), index=True)
    # a BatchState (newsletter/states.py)
    state: Mapped[str] = mapped_column(String(20), default=BatchState.IN_FLIGHT)
    worker: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(20))
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # renewed by the sender holding the batch; expired = nobody holds it (migration 0003)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryRow(Base):
    """The ledger: one row per (issue, subscriber). UNIQUE makes every send idempotent."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # issues.id, subscribers.id and delivery_batches.id, without foreign keys: per-row
    # triggers on the hot table of a send (migration 0005 says why and who keeps them right)
    issue_id: Mapped[str] = mapped_column(String(40))
    subscriber_id: Mapped[int] = mapped_column(Integer)
    # a DeliveryState (newsletter/states.py)
    state: Mapped[str] = mapped_column(String(20), default=DeliveryState.PENDING)
    batch_id: Mapped[str | None] = mapped_column(String(36))
    message_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # a recipient deferred by the server (4xx): not claimed before not_before (migration 0003)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deferred_since: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id", name="uq_deliveries_issue_subscriber"),
        # Partial: a row leaves these as its state moves on, instead of being re-indexed
        # (migration 0002 says why).
        Index(
            "ix_deliveries_pending",
            "issue_id",
            "subscriber_id",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
        Index(
            "ix_deliveries_in_flight",
            "batch_id",
            postgresql_where=text("state = 'in_flight'"),
            sqlite_where=text("state = 'in_flight'"),
        ),
    )


class WebhookEventRow(Base):
    """Provider events, stored once per provider event id (webhooks are retried)."""

    __tablename__ = "webhook_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    event: Mapped[str] = mapped_column(String(40))
    issue_id: Mapped[str | None] = mapped_column(String(40), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- scheduler -----------------------------------------------------------------------------


class ScheduleSlotRow(Base):
    """One row per schedule period (e.g. "weekly:2026-W48"): the UNIQUE guard against double sends."""

    __tablename__ = "schedule_slots"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    claimed_by: Mapped[str] = mapped_column(String(200))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # SlotOutcome: running | sent | nothing_new | error | stopped | incomplete | paused | skipped
    outcome: Mapped[str] = mapped_column(String(20), default=SlotOutcome.RUNNING)
    issue_id: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)


class ScheduleStateRow(Base):
    """The editor's switch over the weekly job (one row, key "weekly"): every instance reads it."""

    __tablename__ = "schedule_state"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_by: Mapped[str | None] = mapped_column(String(200))


# --- admin sessions ------------------------------------------------------------------------


class RevokedAdminSessionRow(Base):
    """Admin cookies signed out of: a signed cookie stays valid until it expires, so logout
    records its nonce here and authentication refuses it (on every instance)."""

    __tablename__ = "revoked_admin_sessions"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def published_issue(status: Any, issue_id: Any) -> ColumnElement[bool]:
    """The archive's rule: an issue is public once sent, or while sending once at least one
    recipient was accepted (a send that has mailed nobody yet, or failed before anyone, is not).

    ``status`` and ``issue_id`` are the issue's columns, from the ORM class or its table.
    """
    accepted = exists().where(DeliveryRow.issue_id == issue_id, DeliveryRow.state == DeliveryState.SENT)
    return or_(status == IssueStatus.SENT, and_(status == IssueStatus.SENDING, accepted))
