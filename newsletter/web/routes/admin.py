"""The editor's admin, behind ADMIN_TOKEN (login form -> signed HttpOnly SameSite cookie, or
``Authorization: Bearer``): subscriber counts, issues with their state, a sandboxed preview,
a test send, and a send button that asks for confirmation. Every form carries a CSRF token.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from newsletter import subscribers
from newsletter.config import Settings
from newsletter.errors import NewsletterError, NotFoundError, SubscriberError
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
    token_matches,
    verify_csrf,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", tags=["admin"])

ISSUE_ID = PathParam(pattern=ISSUE_ID_PATTERN, max_length=40)
MAX_TEST_ADDRESSES = 10


def _auth(request: Request) -> AdminAuth:
    return authenticate_admin(request, web(request).settings)


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
    verify_csrf(web(request).settings, auth, fields.get("csrf"))
    response = RedirectResponse("/admin", status_code=303)
    response.delete_cookie(ADMIN_COOKIE, path="/admin")
    return response


# --- issues ---------------------------------------------------------------------------------


async def _issue(request: Request, issue_id: str) -> IssueSummary:
    summary = await run_in_threadpool(get_issue_summary, web(request).engine, issue_id)
    if summary is None:
        raise NotFoundError(f"no issue {issue_id!r}")
    return summary


def _delivery_status(engine: Any, issue_id: str) -> dict[str, int] | None:
    try:
        from newsletter.delivery import delivery_status
    except ImportError:  # pragma: no cover - delivery not present
        return None
    try:
        return dict(delivery_status(engine, issue_id).counts)
    except NewsletterError:
        return None


@router.get("/issues/{issue_id}", summary="An issue: preview, test send, send")
async def issue_detail(request: Request, issue_id: str = ISSUE_ID) -> Response:
    auth = _auth(request)
    w = web(request)
    issue = await _issue(request, issue_id)
    counts = await run_in_threadpool(subscribers.count_by_status, w.engine)
    ledger = await run_in_threadpool(_delivery_status, w.engine, issue_id)
    if wants_json(request):
        return JSONResponse(
            {"id": issue.id, "subject": issue.subject, "status": issue.status, "deliveries": ledger}
        )
    return page(
        request,
        "admin/issue.html",
        {
            "issue": issue,
            "confirmed": counts["confirmed"],
            "ledger": ledger,
            "sending": _sending(request, issue_id),
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


# --- the send: the hook the delivery issue wires ---------------------------------------------------


def delivery_available() -> bool:
    try:
        from newsletter.delivery import send_issue  # noqa: F401
    except ImportError:
        return False
    return True


def _sending(request: Request, issue_id: str) -> bool:
    sends: dict[str, threading.Thread] = getattr(request.app.state, "sends", {})
    thread = sends.get(issue_id)
    return thread is not None and thread.is_alive()


def start_send(request: Request, issue_id: str) -> bool:
    """HOOK (delivery): start ``send_issue`` in a background thread; False when one already runs.

    send_issue is idempotent and safe in parallel (the ledger), so a double click or a
    second process never mails anyone twice; this only avoids a useless second thread.
    """
    from newsletter.delivery import send_issue

    w = web(request)
    state = request.app.state
    if not hasattr(state, "sends"):
        state.sends = {}
    if _sending(request, issue_id):
        return False
    stop = getattr(state, "stop_event", None)

    def run() -> None:
        try:
            report = send_issue(w.settings, w.engine, issue_id, stop=stop)
            log.info("admin send of %s: %s", issue_id, report)
        except Exception:
            log.exception("admin send of %s failed", issue_id)

    thread = threading.Thread(target=run, name=f"send-{issue_id}", daemon=True)
    state.sends[issue_id] = thread
    thread.start()
    return True


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
    message = "The send has started." if started else "This issue is already being sent."
    if wants_json(request):
        return JSONResponse({"status": "sending", "started": started}, status_code=202)
    return page(
        request,
        "admin/result.html",
        {
            "title": message,
            "issue_id": issue.id,
            "lines": ["Every confirmed subscriber gets it once; reload the issue page for progress."],
        },
        status=202,
    )
