"""The editor's admin, behind ADMIN_TOKEN (login form -> signed HttpOnly SameSite cookie, or
``Authorization: Bearer``): subscriber counts, issues with their state, a sandboxed preview,
a test send, and a send button that asks for confirmation. Every form carries a CSRF token.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from newsletter import subscribers
from newsletter.config import Settings
from newsletter.delivery import StatusReport, delivery_status, jobs, send_test
from newsletter.delivery.jobs import AdminSends, SendSnapshot, describe_send_error
from newsletter.errors import NewsletterError, NotFoundError, SubscriberError
from newsletter.issues import archive, get_issue
from newsletter.issues.summaries import IssueSummary, get_issue_summary, list_issue_summaries
from newsletter.schedule import ScheduleView, schedule_view
from newsletter.states import UNFINISHED_DELIVERY_STATES, IssueStatus
from newsletter.tokens import ADMIN_SESSION_MAX_AGE, make_admin_session
from newsletter.web.routes.admin_forms import Admin, AdminCsrf, CheckedForm
from newsletter.web.routes.archive import ISSUE_ID_PATTERN, load_web_html
from newsletter.web.security import (
    ADMIN_COOKIE,
    admin_token,
    client_ip,
    revoke_session,
    token_matches,
    verify_csrf,
)
from newsletter.web.shared import AppSettings, DbEngine, login_page, page, read_fields, wants_json, web

__all__ = ["AdminSends", "ScheduleView", "SendSnapshot", "admin_sends", "describe_send_error", "router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", tags=["admin"])

ISSUE_ID = PathParam(pattern=ISSUE_ID_PATTERN, max_length=40)
MAX_TEST_ADDRESSES = 10


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


@router.get("", summary="The admin dashboard (or the login form)")
async def dashboard(request: Request, csrf: AdminCsrf, settings: AppSettings, engine: DbEngine) -> Response:
    counts = await run_in_threadpool(subscribers.count_by_status, engine)
    issues = await run_in_threadpool(lambda: list_issue_summaries(engine, public=False))
    schedule = await run_in_threadpool(schedule_view, settings, engine)
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
            "csrf": csrf,
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
async def logout(auth: Admin, _: CheckedForm, engine: DbEngine) -> Response:
    if auth.nonce is not None:
        # The cookie is signed, not stored: deleting it in this browser is not enough,
        # a copy of it would still work. Its nonce is refused from now on.
        await run_in_threadpool(revoke_session, engine, auth.nonce)
    response = RedirectResponse("/admin", status_code=303)
    response.delete_cookie(ADMIN_COOKIE, path="/admin")
    return response


# --- issues ---------------------------------------------------------------------------------


async def _issue(engine: Engine, issue_id: str) -> IssueSummary:
    summary = await run_in_threadpool(get_issue_summary, engine, issue_id)
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
        return sum(self.counts.get(state, 0) for state in UNFINISHED_DELIVERY_STATES)

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
        report: StatusReport = delivery_status(engine, issue_id)
    except NewsletterError:
        return None
    return LedgerView(
        counts=dict(report.counts), uncertain=list(report.uncertain), events=dict(report.events)
    )


@router.get("/issues/{issue_id}", summary="An issue: delivery counts, progress of a send, preview, test send")
async def issue_detail(
    request: Request, csrf: AdminCsrf, settings: AppSettings, engine: DbEngine, issue_id: str = ISSUE_ID
) -> Response:
    issue = await _issue(engine, issue_id)
    counts = await run_in_threadpool(subscribers.count_by_status, engine)
    # The registry first: a send that finishes between the two reads then shows as
    # running for one more refresh, never as finished with stale ledger counts.
    send = admin_sends(request.app).get(issue_id)
    ledger = await run_in_threadpool(_ledger_view, engine, issue_id)
    size_warning = await run_in_threadpool(archive.fit_warning, settings, issue_id)
    info = await run_in_threadpool(get_issue, engine, issue_id)  # the editor's words: subject, note
    if wants_json(request):
        return JSONResponse(
            {
                "id": issue.id,
                "subject": issue.subject,
                "status": issue.status,
                "deliveries": ledger.counts if ledger else None,
                "ledger": ledger.as_json() if ledger else None,
                "send": send.as_json() if send else None,
                "size_warning": size_warning,
            }
        )
    return page(
        request,
        "admin/issue.html",
        {
            "issue": issue,
            "info": info,
            "saved": request.query_params.get("saved") == "1",
            "size_warning": size_warning,
            "confirmed": counts["confirmed"],
            "ledger": ledger,
            "send": send,
            "csrf": csrf,
        },
    )


@router.get(
    "/issues/{issue_id}/preview", summary="The issue's web version (any state)", response_class=HTMLResponse
)
async def issue_preview(
    _: Admin, settings: AppSettings, engine: DbEngine, issue_id: str = ISSUE_ID
) -> Response:
    await _issue(engine, issue_id)
    return HTMLResponse(await run_in_threadpool(load_web_html, settings, issue_id))


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
async def test_send(
    request: Request, fields: CheckedForm, settings: AppSettings, engine: DbEngine, issue_id: str = ISSUE_ID
) -> Response:
    await _issue(engine, issue_id)
    addresses = parse_addresses(fields.get("addresses", ""), settings)
    report = await run_in_threadpool(lambda: send_test(settings, issue_id, addresses, engine=engine))
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


_REGISTRY_LOCK = threading.Lock()


def admin_sends(app: Any) -> AdminSends:
    """The app's registry of admin-started sends (one app per process under `newsletter serve`)."""
    with _REGISTRY_LOCK:
        registry = getattr(app.state, "admin_sends", None)
        if not isinstance(registry, AdminSends):
            registry = AdminSends()
            app.state.admin_sends = registry
    return registry


def start_send(request: Request, issue_id: str) -> bool:
    """Start the issue's send in the delivery layer's background runner (False: one runs here)."""
    w = web(request)
    stop: threading.Event | None = getattr(request.app.state, "stop_event", None)
    return jobs.start_send(w.settings, w.engine, admin_sends(request.app), issue_id, stop=stop)


@router.get("/issues/{issue_id}/send", summary="Ask for confirmation before sending")
async def send_confirm_page(
    request: Request, csrf: AdminCsrf, engine: DbEngine, issue_id: str = ISSUE_ID
) -> Response:
    issue = await _issue(engine, issue_id)
    counts = await run_in_threadpool(subscribers.count_by_status, engine)
    return page(
        request,
        "admin/send.html",
        {
            "issue": issue,
            "confirmed": counts["confirmed"],
            "csrf": csrf,
            "sending": admin_sends(request.app).running(issue_id),
        },
    )


@router.post(
    "/issues/{issue_id}/send",
    summary="Send the issue to every confirmed subscriber (needs confirm=yes)",
    openapi_extra=_form_body({"confirm": {"type": "string", "enum": ["yes"]}, "csrf": {"type": "string"}}),
)
async def send(request: Request, fields: CheckedForm, engine: DbEngine, issue_id: str = ISSUE_ID) -> Response:
    issue = await _issue(engine, issue_id)
    if fields.get("confirm") != "yes":
        raise SubscriberError("tick the confirmation to send the issue")
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
                "status": IssueStatus.SENDING,
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
