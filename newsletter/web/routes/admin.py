"""The editor's admin, behind ADMIN_TOKEN (login form -> signed HttpOnly SameSite cookie, or
``Authorization: Bearer``): subscriber counts, issues with their state, a sandboxed preview,
a test send, and a send button that asks for confirmation. Every form carries a CSRF token.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from newsletter import subscribers
from newsletter.config import Settings
from newsletter.errors import (
    NewsletterError,
    NotFoundError,
    ProviderError,
    ProviderRejectedError,
    ProviderUnavailableError,
    SubscriberError,
)
from newsletter.tables import ScheduleSlotRow
from newsletter.tokens import ADMIN_SESSION_MAX_AGE, make_admin_session
from newsletter.web.app import error_page, login_page, page, wants_json, web
from newsletter.web.routes.archive import (
    ISSUE_ID_PATTERN,
    IssueSummary,
    get_issue_summary,
    list_issue_summaries,
    load_web_html,
)
from newsletter.web.routes.subscriptions import read_fields
from newsletter.web.security import (
    ADMIN_COOKIE,
    AdminAuth,
    admin_token,
    authenticate_admin,
    client_ip,
    csrf_token,
    revoke_session,
    token_matches,
    verify_csrf,
)

if TYPE_CHECKING:
    from newsletter.delivery import SendProgress, SendReport, StatusReport

    ProgressCallback = Callable[[SendProgress], None]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", tags=["admin"])

ISSUE_ID = PathParam(pattern=ISSUE_ID_PATTERN, max_length=40)
MAX_TEST_ADDRESSES = 10


def _auth(request: Request) -> AdminAuth:
    w = web(request)
    return authenticate_admin(request, w.settings, w.engine)


def _form_body(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": fields, "required": list(fields)}
                }
            },
        }
    }


# --- login ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleView:
    """The weekly schedule as ``newsletter schedule show`` prints it: next runs and recent slots."""

    expression: str
    timezone: str
    grace_seconds: int
    scheduler: str
    next_runs: list[datetime]  # aware, in the configured zone
    slots: list[ScheduleSlotRow]

    @property
    def next_runs_text(self) -> list[tuple[str, str]]:
        """(local, UTC) for each next run, formatted as `newsletter schedule show` does."""
        return [
            (f"{fire:%a %Y-%m-%d %H:%M %Z}", f"{fire.astimezone(UTC):%Y-%m-%d %H:%M} UTC")
            for fire in self.next_runs
        ]

    def as_json(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "timezone": self.timezone,
            "misfire_grace_time": self.grace_seconds,
            "scheduler": self.scheduler,
            "next_runs": [
                {"local": fire.isoformat(), "utc": fire.astimezone(UTC).isoformat()}
                for fire in self.next_runs
            ],
            "slots": [
                {
                    "key": row.key,
                    "outcome": row.outcome,
                    "issue_id": row.issue_id,
                    "claimed_by": row.claimed_by,
                    "claimed_at": row.claimed_at.isoformat() if row.claimed_at else None,
                    "finished_at": row.finished_at.isoformat() if row.finished_at else None,
                    "detail": row.detail,
                }
                for row in self.slots
            ],
        }


def schedule_view(settings: Settings, engine: Engine, *, runs: int = 3, slots: int = 5) -> ScheduleView:
    from newsletter.scheduler import next_run_times, recent_slots

    return ScheduleView(
        expression=settings.schedule,
        timezone=settings.timezone,
        grace_seconds=settings.misfire_grace_time,
        scheduler=settings.scheduler,
        next_runs=next_run_times(settings, count=runs),
        slots=recent_slots(engine, limit=slots),
    )


@router.get("", summary="The admin dashboard (or the login form)")
async def dashboard(request: Request) -> Response:
    auth = _auth(request)
    w = web(request)
    counts = await run_in_threadpool(subscribers.count_by_status, w.engine)
    issues = await run_in_threadpool(lambda: list_issue_summaries(w.engine, public=False))
    schedule = await run_in_threadpool(schedule_view, w.settings, w.engine)
    if wants_json(request):
        return JSONResponse(
            {
                "subscribers": counts,
                "issues": [{"id": i.id, "subject": i.subject, "status": i.status} for i in issues],
                "schedule": schedule.as_json(),
            }
        )
    return page(
        request,
        "admin/index.html",
        {
            "counts": counts,
            "total": sum(counts.values()),
            "issues": issues,
            "schedule": schedule,
            "csrf": csrf_token(w.settings, auth.csrf_binding),
            "delivery": delivery_available(),
        },
    )


@router.post(
    "/login",
    summary="Sign in with the admin token (sets a signed HttpOnly cookie)",
    openapi_extra=_form_body({"token": {"type": "string"}, "csrf": {"type": "string"}}),
)
async def login(request: Request) -> Response:
    w = web(request)
    w.login_limiter.hit(client_ip(request))
    fields = await read_fields(request)
    verify_csrf(w.settings, None, fields.get("csrf"), binding="login")
    candidate = fields.get("token", "").strip()
    if not candidate or not token_matches(w.settings, candidate):
        return login_page(request, message="that is not the admin token")
    value, _nonce = make_admin_session(w.settings, admin_token(w.settings))
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(
        ADMIN_COOKIE,
        value,
        max_age=ADMIN_SESSION_MAX_AGE,
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=w.settings.base_url.startswith("https://"),
    )
    return response


@router.post("/logout", summary="Sign out", openapi_extra=_form_body({"csrf": {"type": "string"}}))
async def logout(request: Request) -> Response:
    auth = _auth(request)
    fields = await read_fields(request)
    w = web(request)
    verify_csrf(w.settings, auth, fields.get("csrf"))
    if auth.nonce is not None:
        # The cookie is signed, not stored: deleting it in this browser is not enough,
        # a copy of it would still work. Its nonce is refused from now on.
        await run_in_threadpool(revoke_session, w.engine, auth.nonce)
    response = RedirectResponse("/admin", status_code=303)
    response.delete_cookie(ADMIN_COOKIE, path="/admin")
    return response


# --- issues ---------------------------------------------------------------------------------


async def _issue(request: Request, issue_id: str) -> IssueSummary:
    summary = await run_in_threadpool(get_issue_summary, web(request).engine, issue_id)
    if summary is None:
        raise NotFoundError(f"no issue {issue_id!r}")
    return summary


@dataclass(frozen=True)
class LedgerView:
    """What the ledger says about one issue (the truth, whichever process sends)."""

    counts: dict[str, int]
    uncertain: list[Any]  # ledger.UncertainBatch
    events: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def remaining(self) -> int:
        return self.counts.get("pending", 0) + self.counts.get("in_flight", 0)

    @property
    def uncertain_recipients(self) -> int:
        return sum(int(batch.recipients) for batch in self.uncertain)

    def as_json(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "total": self.total,
            "remaining": self.remaining,
            "uncertain_batches": [
                {
                    "batch_id": batch.batch_id,
                    "worker": batch.worker,
                    "provider": batch.provider,
                    "created_at": batch.created_at.isoformat() if batch.created_at else None,
                    "recipients": int(batch.recipients),
                    "error": batch.error,
                }
                for batch in self.uncertain
            ],
            "events": self.events,
        }


def _ledger_view(engine: Engine, issue_id: str) -> LedgerView | None:
    try:
        from newsletter.delivery import delivery_status
    except ImportError:  # pragma: no cover - delivery not present
        return None
    try:
        report: StatusReport = delivery_status(engine, issue_id)
    except NewsletterError:
        return None
    return LedgerView(
        counts=dict(report.counts), uncertain=list(report.uncertain), events=dict(report.events)
    )


@router.get("/issues/{issue_id}", summary="An issue: delivery counts, progress of a send, preview, test send")
async def issue_detail(request: Request, issue_id: str = ISSUE_ID) -> Response:
    auth = _auth(request)
    w = web(request)
    issue = await _issue(request, issue_id)
    counts = await run_in_threadpool(subscribers.count_by_status, w.engine)
    # The registry first: a send that finishes between the two reads then shows as
    # running for one more refresh, never as finished with stale ledger counts.
    send = admin_sends(request.app).get(issue_id)
    ledger = await run_in_threadpool(_ledger_view, w.engine, issue_id)
    if wants_json(request):
        return JSONResponse(
            {
                "id": issue.id,
                "subject": issue.subject,
                "status": issue.status,
                "deliveries": ledger.counts if ledger else None,
                "ledger": ledger.as_json() if ledger else None,
                "send": send.as_json() if send else None,
            }
        )
    return page(
        request,
        "admin/issue.html",
        {
            "issue": issue,
            "confirmed": counts["confirmed"],
            "ledger": ledger,
            "send": send,
            "csrf": csrf_token(w.settings, auth.csrf_binding),
            "delivery": delivery_available(),
        },
    )


@router.get(
    "/issues/{issue_id}/preview", summary="The issue's web version (any state)", response_class=HTMLResponse
)
async def issue_preview(request: Request, issue_id: str = ISSUE_ID) -> Response:
    _auth(request)
    w = web(request)
    await _issue(request, issue_id)
    return HTMLResponse(await run_in_threadpool(load_web_html, w.settings, issue_id))


def parse_addresses(text: str, settings: Settings) -> list[str]:
    parts = [part for part in re.split(r"[,;\s]+", text) if part]
    if not parts:
        raise SubscriberError("give at least one address to send the test to")
    if len(parts) > MAX_TEST_ADDRESSES:
        raise SubscriberError(f"a test goes to at most {MAX_TEST_ADDRESSES} addresses")
    return [
        subscribers.normalize_email(part, check_deliverability=settings.check_deliverability)
        for part in parts
    ]


@router.post(
    "/issues/{issue_id}/test",
    summary="Send the issue to a few addresses ([TEST] subject, outside the ledger)",
    openapi_extra=_form_body({"addresses": {"type": "string"}, "csrf": {"type": "string"}}),
)
async def test_send(request: Request, issue_id: str = ISSUE_ID) -> Response:
    auth = _auth(request)
    w = web(request)
    fields = await read_fields(request)
    verify_csrf(w.settings, auth, fields.get("csrf"))
    await _issue(request, issue_id)
    addresses = parse_addresses(fields.get("addresses", ""), w.settings)
    try:
        from newsletter.delivery import send_test
    except ImportError:
        return error_page(request, 501, "delivery not available yet")
    report = await run_in_threadpool(lambda: send_test(w.settings, issue_id, addresses, engine=w.engine))
    if wants_json(request):
        return JSONResponse({"accepted": report.accepted, "failed": report.failed})
    return page(
        request,
        "admin/result.html",
        {
            "title": "Test sent" if not report.failed else "Test partly failed",
            "issue_id": issue_id,
            "lines": [f"sent to {a}" for a in report.accepted]
            + [f"failed for {a}: {why}" for a, why in report.failed.items()],
        },
    )


# --- the send: a background thread per issue, and what it has done so far ----------------------

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


@dataclass(frozen=True)
class SendSnapshot:
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
    sent: int
    failed: int
    suppressed: int
    uncertain: int
    batches: int
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
    def done(self) -> int:
        return self.sent + self.failed + self.suppressed + self.uncertain

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


@dataclass
class _Entry:
    issue_id: str
    thread: threading.Thread | None = None
    state: str = "running"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    clock: float = field(default_factory=time.monotonic)  # the sender's SendProgress.started once known
    stopped_clock: float | None = None
    total: int | None = None
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    uncertain: int = 0
    batches: int = 0
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
            sent=self.sent,
            failed=self.failed,
            suppressed=self.suppressed,
            uncertain=self.uncertain,
            batches=self.batches,
            elapsed=max(0.0, end - self.clock),
            interrupted=self.interrupted,
            already_sent=self.already_sent,
            remaining=self.remaining,
            error=self.error,
            error_field=self.error_field,
            error_status=self.error_status,
        )

    def take(self, counts: Any) -> None:
        """Numbers from a SendProgress or a SendReport (the same field names)."""
        self.sent, self.failed = int(counts.sent), int(counts.failed)
        self.suppressed, self.uncertain = int(counts.suppressed), int(counts.uncertain)
        self.batches = int(counts.batches)
        total = int(counts.total)
        if total or self.total is None:
            self.total = total


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


_REGISTRY_LOCK = threading.Lock()


def admin_sends(app: Any) -> AdminSends:
    """The app's registry of admin-started sends (one app per process under `newsletter serve`)."""
    with _REGISTRY_LOCK:
        registry = getattr(app.state, "admin_sends", None)
        if not isinstance(registry, AdminSends):
            registry = AdminSends()
            app.state.admin_sends = registry
    return registry


def delivery_available() -> bool:
    try:
        from newsletter.delivery import send_issue  # noqa: F401
    except ImportError:
        return False
    return True


def start_send(request: Request, issue_id: str) -> bool:
    """Start ``send_issue`` in a background thread with live progress; False when one already runs here.

    send_issue is idempotent and safe in parallel (the ledger), so a double click or a
    second process never mails anyone twice; this only avoids a useless second thread.
    """
    from newsletter.delivery import send_issue

    w = web(request)
    stop: threading.Event | None = getattr(request.app.state, "stop_event", None)

    def run(progress: ProgressCallback) -> SendReport:
        return send_issue(w.settings, w.engine, issue_id, progress=progress, stop=stop)

    # Under `newsletter serve` (a stop event) the thread is waited for at exit: shutdown sets
    # the event, the send records its current batch and stops instead of dying mid-request.
    return admin_sends(request.app).start(issue_id, run, daemon=stop is None)


@router.get("/issues/{issue_id}/send", summary="Ask for confirmation before sending")
async def send_confirm_page(request: Request, issue_id: str = ISSUE_ID) -> Response:
    auth = _auth(request)
    w = web(request)
    issue = await _issue(request, issue_id)
    counts = await run_in_threadpool(subscribers.count_by_status, w.engine)
    return page(
        request,
        "admin/send.html",
        {
            "issue": issue,
            "confirmed": counts["confirmed"],
            "csrf": csrf_token(w.settings, auth.csrf_binding),
            "delivery": delivery_available(),
            "sending": admin_sends(request.app).running(issue_id),
        },
    )


@router.post(
    "/issues/{issue_id}/send",
    summary="Send the issue to every confirmed subscriber (needs confirm=yes)",
    openapi_extra=_form_body({"confirm": {"type": "string", "enum": ["yes"]}, "csrf": {"type": "string"}}),
)
async def send(request: Request, issue_id: str = ISSUE_ID) -> Response:
    auth = _auth(request)
    w = web(request)
    fields = await read_fields(request)
    verify_csrf(w.settings, auth, fields.get("csrf"))
    issue = await _issue(request, issue_id)
    if fields.get("confirm") != "yes":
        raise SubscriberError("tick the confirmation to send the issue")
    if not delivery_available():
        return error_page(request, 501, "delivery not available yet")
    started = start_send(request, issue_id)
    if started:
        title = "The send has started."
        lines = [
            "Every confirmed subscriber gets it once, even if you press twice.",
            "The issue page shows its progress (sent, rate, ETA, failures) and refreshes itself.",
        ]
    else:
        title = "Already sending."
        lines = [
            "This issue is already being sent from this admin; no second send was started.",
            "The issue page shows its progress.",
        ]
    if wants_json(request):
        snapshot = admin_sends(request.app).get(issue_id)
        return JSONResponse(
            {
                "status": "sending",
                "started": started,
                "message": title,
                "send": snapshot.as_json() if snapshot else None,
            },
            status_code=202,
        )
    return page(
        request,
        "admin/result.html",
        {"title": title, "issue_id": issue.id, "lines": lines},
        status=202,
    )
