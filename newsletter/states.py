"""The shared vocabulary: every state and name the tables, code, CLI and templates spell.

StrEnum members are the strings stored in the database and shown to people
(``IssueStatus.SENT == "sent"``), so rows written before these enums read the same.
The delivery ledger's states (batch and delivery rows) are still spelled in
``newsletter/delivery``; they move here with that package's next change.
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


class Provider(StrEnum):
    """The email providers a send can use (``NEWSLETTER_PROVIDER``, ``--provider``)."""

    OUTBOX = "outbox"
    SMTP = "smtp"
    SENDGRID = "sendgrid"
