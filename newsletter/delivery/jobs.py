"""Background sends started from the web (admin pages and the admin API), with live progress.

The route only asks for a send; the sender runs here, in a thread of the delivery layer,
reporting ``SendProgress`` into a registry the pages and the API read. The ledger stays
the truth for counts (another process may be sending the same issue); the registry adds
what the ledger cannot know: rate, ETA and the error that stopped a send started here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.delivery.reports import SendCounts, SendProgress, SendReport
from newsletter.delivery.sender import send_issue
from newsletter.errors import (
    NewsletterError,
    ProviderError,
    ProviderRejectedError,
    ProviderUnavailableError,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[SendProgress], None]

PROVIDER_NAMES = {"sendgrid": "SendGrid", "smtp": "SMTP", "outbox": "The outbox"}
FINISHED_KEPT = 32  # finished/failed sends remembered (per process); running ones are always kept


def _provider_message(exc: ProviderError) -> str:
    """The provider's own message, without the "sendgrid 400 (field 'x'): " prefix ProviderError adds."""
    text = str(exc)
    prefix = exc.provider
    if exc.status is not None:
        prefix += f" {exc.status}"
    if exc.field:
        prefix += f" (field {exc.field!r})"
    prefix += ": "
    return text[len(prefix) :] if text.startswith(prefix) else text


def describe_send_error(exc: BaseException) -> str:
    """One line for the editor: who refused what (the field), or what stopped the send."""
    if isinstance(exc, ProviderError):
        who = PROVIDER_NAMES.get(exc.provider, exc.provider)
        if isinstance(exc, ProviderRejectedError):
            what = f"{who} refused the request"
        elif isinstance(exc, ProviderUnavailableError):
            what = f"{who} is unavailable"
        else:
            what = f"{who} failed"
        where = f"field {exc.field!r}: " if exc.field else ""
        return f"{what}: {where}{_provider_message(exc)}"
    if isinstance(exc, NewsletterError):
        return str(exc)
    return f"the send stopped on an unexpected error ({type(exc).__name__}); see the server log"


def _duration(seconds: float) -> str:
    """h:mm:ss, as the CLI's progress bar shows time."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@dataclass(kw_only=True)
class SendSnapshot(SendCounts):
    """One admin-started send as this process saw it: live numbers while running, then the outcome.

    The ledger (``delivery_status``) stays the truth for counts: another process may be
    sending the same issue. This only adds what the ledger cannot know: rate, ETA, and
    the error that stopped a send started here.
    """

    issue_id: str
    state: str  # "running" | "finished" | "failed"
    started_at: datetime
    finished_at: datetime | None
    total: int | None  # None until the send has counted its recipients
    elapsed: float  # seconds since the sender's first batch started (its rate's clock)
    interrupted: bool = False
    already_sent: bool = False
    remaining: int | None = None
    error: str | None = None
    error_field: str | None = None
    error_status: int | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def rate(self) -> float:
        """Recipients sent per second (what the CLI shows)."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        if not self.running or self.total is None or self.elapsed <= 0 or self.done <= 0:
            return None
        left = max(0, self.total - self.done)
        return left / (self.done / self.elapsed)

    @property
    def failures(self) -> int:
        return self.failed + self.uncertain

    @property
    def rate_text(self) -> str:
        return f"{self.rate:,.0f} recipients/s"

    @property
    def eta_text(self) -> str:
        eta = self.eta_seconds
        return _duration(eta) if eta is not None else "-:--:--"

    @property
    def elapsed_text(self) -> str:
        return _duration(self.elapsed)

    @property
    def progress_max(self) -> int:
        return max(self.total or 0, self.done, 1)

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "total": self.total,
            "sent": self.sent,
            "failed": self.failed,
            "suppressed": self.suppressed,
            "uncertain": self.uncertain,
            "batches": self.batches,
            "done": self.done,
            "elapsed": round(self.elapsed, 3),
            "rate": round(self.rate, 1),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
            "interrupted": self.interrupted,
            "already_sent": self.already_sent,
            "remaining": self.remaining,
            "error": self.error,
            "error_field": self.error_field,
            "error_status": self.error_status,
        }


@dataclass(kw_only=True)
class _Entry(SendCounts):
    issue_id: str
    thread: threading.Thread | None = None
    state: str = "running"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    clock: float = field(default_factory=time.monotonic)  # the sender's SendProgress.started once known
    stopped_clock: float | None = None
    total: int | None = None
    interrupted: bool = False
    already_sent: bool = False
    remaining: int | None = None
    error: str | None = None
    error_field: str | None = None
    error_status: int | None = None

    def snapshot(self) -> SendSnapshot:
        end = self.stopped_clock if self.stopped_clock is not None else time.monotonic()
        return SendSnapshot(
            issue_id=self.issue_id,
            state=self.state,
            started_at=self.started_at,
            finished_at=self.finished_at,
            total=self.total,
            **_counts(self),
            elapsed=max(0.0, end - self.clock),
            interrupted=self.interrupted,
            already_sent=self.already_sent,
            remaining=self.remaining,
            error=self.error,
            error_field=self.error_field,
            error_status=self.error_status,
        )

    def take(self, counts: SendProgress | SendReport) -> None:
        """Numbers from a SendProgress or a SendReport (both SendCounts, with a total)."""
        for name, value in _counts(counts).items():
            setattr(self, name, int(value))
        total = int(counts.total)
        if total or self.total is None:
            self.total = total


def _counts(counts: SendCounts) -> dict[str, int]:
    return {f.name: getattr(counts, f.name) for f in fields(SendCounts)}


class AdminSends:
    """The sends this process's admin started: issue id -> its latest numbers. Thread-safe.

    At most one running send per issue here (a second click says "already sending");
    the ledger keeps sends from other processes exactly-once on its own.
    """

    def __init__(self, keep: int = FINISHED_KEPT) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._keep = keep

    def start(
        self, issue_id: str, run: Callable[[ProgressCallback], SendReport], *, daemon: bool = True
    ) -> bool:
        """Run ``run(progress)`` on a new thread; False (and nothing started) when one runs already."""
        with self._lock:
            current = self._entries.get(issue_id)
            if current is not None and current.state == "running":
                return False
            entry = _Entry(issue_id=issue_id)
            self._entries.pop(issue_id, None)
            self._entries[issue_id] = entry  # newest last: the oldest finished ones are dropped first
            self._trim()
            thread = threading.Thread(
                target=self._run, args=(entry, run), name=f"admin-send-{issue_id}", daemon=daemon
            )
            entry.thread = thread
            thread.start()
        return True

    def get(self, issue_id: str) -> SendSnapshot | None:
        with self._lock:
            entry = self._entries.get(issue_id)
            return entry.snapshot() if entry is not None else None

    def running(self, issue_id: str) -> bool:
        with self._lock:
            entry = self._entries.get(issue_id)
            return entry is not None and entry.state == "running"

    def wait(self, issue_id: str, timeout: float | None = None) -> bool:
        """Wait for the issue's send thread; True when none runs (any more)."""
        with self._lock:
            entry = self._entries.get(issue_id)
            thread = entry.thread if entry is not None else None
        if thread is not None:
            thread.join(timeout)
        return not self.running(issue_id)

    def _trim(self) -> None:
        finished = [key for key, entry in self._entries.items() if entry.state != "running"]
        for key in finished[: max(0, len(self._entries) - self._keep)]:
            del self._entries[key]

    def _run(self, entry: _Entry, run: Callable[[ProgressCallback], SendReport]) -> None:
        def progress(state: SendProgress) -> None:
            with self._lock:
                entry.clock = state.started
                entry.take(state)

        try:
            report = run(progress)
        except BaseException as exc:
            done = getattr(exc, "report", None)  # what was sent before it stopped
            with self._lock:
                if done is not None and hasattr(done, "sent"):
                    entry.take(done)
                entry.error = describe_send_error(exc)
                if isinstance(exc, ProviderError):
                    entry.error_field, entry.error_status = exc.field, exc.status
                self._finish(entry, "failed")
            if isinstance(exc, NewsletterError):
                log.warning("admin send of %s stopped: %s", entry.issue_id, exc)
            else:
                log.exception("admin send of %s failed", entry.issue_id)
            if not isinstance(exc, Exception):
                raise
            return
        log.info("admin send of %s: %s", entry.issue_id, report)
        with self._lock:
            entry.take(report)
            entry.interrupted, entry.already_sent = report.interrupted, report.already_sent
            entry.remaining = report.remaining
            self._finish(entry, "finished")

    @staticmethod
    def _finish(entry: _Entry, state: str) -> None:
        entry.state = state
        entry.finished_at = datetime.now(UTC)
        entry.stopped_clock = time.monotonic()


def start_send(
    settings: Settings,
    engine: Engine,
    sends: AdminSends,
    issue_id: str,
    *,
    stop: threading.Event | None = None,
) -> bool:
    """Start ``send_issue`` in a background thread with live progress; False when one already
    runs here. send_issue is idempotent and safe in parallel (the ledger), so a double click
    or a second process never mails anyone twice; this only avoids a useless second thread.
    """

    def run(progress: ProgressCallback) -> SendReport:
        return send_issue(settings, engine, issue_id, progress=progress, stop=stop)

    # Under `newsletter serve` (a stop event) the thread is waited for at exit: shutdown sets
    # the event, the send records its current batch and stops instead of dying mid-request.
    return sends.start(issue_id, run, daemon=stop is None)
