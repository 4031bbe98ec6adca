"""The shared vocabulary: every state and name the tables, code, CLI and templates spell.

StrEnum members are the strings stored in the database and shown to people
(``IssueStatus.SENT == "sent"``), so rows written before these enums read the same.
"""

from __future__ import annotations

from enum import StrEnum


class IssueStatus(StrEnum):
    """draft -> sending -> sent. Anything past draft is frozen (its row and archive never change)."""

    DRAFT = "draft"
    SENDING = "sending"
    SENT = "sent"


# Frozen issues are the public ones: the archive shows them and selection never picks their
# comparisons again.
FROZEN_ISSUE_STATUSES = (IssueStatus.SENDING, IssueStatus.SENT)


class SubscriberStatus(StrEnum):
    """pending -> confirmed -> unsubscribed; bounced / complained come from provider reports."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class SlotOutcome(StrEnum):
    """What became of one weekly schedule slot (``schedule_slots.outcome``) or one tick of it."""

    RUNNING = "running"
    SENT = "sent"
    NOTHING_NEW = "nothing_new"
    TAKEN = "taken"
    DONE = "done"
    MISSED = "missed"
    ERROR = "error"
    STOPPED = "stopped"
    INCOMPLETE = "incomplete"
    PAUSED = "paused"
    SKIPPED = "skipped"


# paused / skipped: the editor's (newsletter/schedule.py); such a slot never sends.
FINAL_SLOT_OUTCOMES = frozenset(
    {SlotOutcome.SENT, SlotOutcome.NOTHING_NEW, SlotOutcome.PAUSED, SlotOutcome.SKIPPED}
)


class DeliveryState(StrEnum):
    """One ledger row (``deliveries.state``): one recipient of one issue.

    pending -> in_flight (claimed under a batch, committed before the request) -> sent | failed.
    An in_flight row whose request got no answer stays in_flight (uncertain) until a webhook or
    ``send --resend-uncertain`` settles it. A deferred one (SMTP 4xx) is pending again with a
    not-before time. suppressed: not mailable any more when its batch was claimed.
    """

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


# rows a send still has to finish
UNFINISHED_DELIVERY_STATES = (DeliveryState.PENDING, DeliveryState.IN_FLIGHT)


class BatchState(StrEnum):
    """One provider request (``delivery_batches.state``): in_flight until its outcome is recorded."""

    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"


class Provider(StrEnum):
    """The email providers a send can use (``NEWSLETTER_PROVIDER``, ``--provider``)."""

    OUTBOX = "outbox"
    SMTP = "smtp"
    SENDGRID = "sendgrid"
