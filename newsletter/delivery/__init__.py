"""Delivery: messengers (providers), the ledger and batching.

Public API (the CLI, the admin page and the scheduler call these):

    send_issue(settings, engine, issue_id, *, provider=None, resend_uncertain=False,
               progress=None, stop=None, worker=None) -> SendReport
    send_test(settings, issue_id, addresses, provider=None) -> TestSendReport
    dry_run(settings, engine, issue_id, *, provider=None) -> DryRunReport
    delivery_status(engine, issue_id) -> StatusReport
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from newsletter.delivery import ledger
from newsletter.delivery.content import dry_run, send_test
from newsletter.delivery.ledger import UncertainBatch
from newsletter.delivery.reports import DryRunReport, SendProgress, SendReport, TestSendReport
from newsletter.delivery.sender import send_issue
from newsletter.errors import NotFoundError
from newsletter.tables import IssueRow

__all__ = [
    "DryRunReport",
    "SendProgress",
    "SendReport",
    "StatusReport",
    "TestSendReport",
    "UncertainBatch",
    "delivery_status",
    "dry_run",
    "send_issue",
    "send_test",
]


FAILED_SHOWN = 200


@dataclass
class StatusReport:
    issue_id: str
    issue_status: str
    counts: dict[str, int]
    uncertain: list[UncertainBatch] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (address, reason), the first ones
    deferred: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def uncertain_recipients(self) -> int:
        return sum(batch.recipients for batch in self.uncertain)


def delivery_status(engine: Engine, issue_id: str) -> StatusReport:
    """Ledger counts by state, in-flight (uncertain) batches and webhook counts for one issue."""
    with engine.connect() as conn:
        status = conn.execute(select(IssueRow.status).where(IssueRow.id == issue_id)).scalar()
    if status is None:
        raise NotFoundError(f"no issue {issue_id!r} (see `newsletter issue list`)")
    return StatusReport(
        issue_id=issue_id,
        issue_status=str(status),
        counts=ledger.counts_by_state(engine, issue_id),
        uncertain=ledger.uncertain_batches(engine, issue_id),
        events=ledger.event_counts(engine, issue_id),
        failed=ledger.failed_addresses(engine, issue_id, limit=FAILED_SHOWN),
        deferred=ledger.deferred_count(engine, issue_id),
    )
