"""What a send, a dry run and a test send report (shared by the CLI, the admin and the scheduler)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from newsletter.delivery.ledger import UncertainBatch
from newsletter.states import IssueStatus

# --- reports ----------------------------------------------------------------------------


@dataclass(kw_only=True)
class SendCounts:
    """What a send did with its recipients: counted while it runs (SendProgress), reported at
    its end (SendReport)."""

    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    uncertain: int = 0
    batches: int = 0

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.suppressed + self.uncertain

    def add(
        self, *, sent: int = 0, failed: int = 0, suppressed: int = 0, uncertain: int = 0, batches: int = 0
    ) -> None:
        self.sent += sent
        self.failed += failed
        self.suppressed += suppressed
        self.uncertain += uncertain
        self.batches += batches


@dataclass
class SendProgress(SendCounts):
    issue_id: str
    total: int
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0


@dataclass
class SendReport(SendCounts):
    issue_id: str
    provider: str
    total: int = 0
    requeued: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    already_sent: bool = False
    issue_status: str = "draft"
    remaining: int = 0
    in_flight: int = 0  # rows still in flight when the send ended (uncertain, or another sender's)
    deferred: int = 0  # rows the server deferred, waiting for their not-before time
    gave_up: int = 0  # deferred recipients marked failed after DEFER_GIVE_UP
    reconciled: int = 0  # outbox rows of interrupted batches settled against the files
    live: list[UncertainBatch] = field(default_factory=list)  # held by a live sender
    error: str | None = None

    @property
    def complete(self) -> bool:
        """The issue went to everyone (nobody in flight, deferred or pending)."""
        return self.already_sent or self.issue_status == IssueStatus.SENT

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class DryRunReport:
    issue_id: str
    provider: str
    recipients: int
    batch_size: int
    batches: int
    uncertain: int
    issue_status: str


@dataclass
class TestSendReport:
    issue_id: str
    provider: str
    addresses: list[str]
    accepted: list[str]
    failed: dict[str, str]


ProgressCallback = Callable[[SendProgress], None]


def as_json(report: Any) -> str:
    """A report as one JSON line (for scripts and the admin page)."""
    data = {key: value for key, value in vars(report).items() if not key.startswith("_")}
    return json.dumps(data, default=str, sort_keys=True)
