"""Double opt-in and unsubscribe: POST /subscribe, GET /confirm/{token}, POST /confirm/resend,
GET and POST /unsubscribe/{token} (RFC 8058 one-click).

POST /subscribe checks only the address's syntax while the client waits; storing
it and mailing the confirmation happen in a background task after the answer is
sent, so neither the answer nor its timing depends on whether the address was
known: no enumeration.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, BackgroundTasks
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from newsletter import mail, subscribers
from newsletter.config import Settings
from newsletter.errors import SubscriberError, TokenError
from newsletter.issues.summaries import list_issue_summaries
from newsletter.schedule import next_run_times
from newsletter.states import SubscriberStatus
from newsletter.subscribers import Subscriber
from newsletter.tokens import ExpiredTokenError
from newsletter.web.security import client_ip
from newsletter.web.shared import AppSettings, DbEngine, constant_page, page, read_fields, wants_json, web

log = logging.getLogger(__name__)
router = APIRouter(tags=["subscriptions"])

HONEYPOT = "website"
TOKEN_PATH = PathParam(min_length=1, max_length=400)
ACCEPTED_MESSAGE = (
    "Thanks! If this address is not subscribed yet, a confirmation link is on its way. "
    "Open it to start receiving the newsletter."
)
_SOURCE_RE = re.compile(r"^[A-Za-z0-9:_./-]{1,100}$")

_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["email"],
    "properties": {
        "email": {"type": "string", "maxLength": 320, "description": "the address to subscribe"},
        "name": {"type": "string", "maxLength": 200},
        "source": {"type": "string", "maxLength": 100, "description": "e.g. comparison:<slug>"},
        HONEYPOT: {"type": "string", "description": "leave empty (bots fill it)"},
    },
}
SUBSCRIBE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA},
            "application/json": {"schema": _FORM_SCHEMA},
        },
    }
}
RESEND_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["token"],
                    "properties": {"token": {"type": "string", "maxLength": 400}},
                }
            }
        },
    }
}
ONE_CLICK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
                }
            }
        },
    }
}


def _accepted(request: Request, email: str) -> Response:
    if wants_json(request):
        return JSONResponse({"status": "check_your_inbox", "message": ACCEPTED_MESSAGE}, status_code=202)
    return constant_page(request, "subscribed.html", {"message": ACCEPTED_MESSAGE})


@router.post(
    "/subscribe",
    summary="Start a double opt-in (form or JSON)",
    openapi_extra=SUBSCRIBE_BODY,
    responses={
        202: {"description": "check your inbox"},
        422: {"description": "not a valid address"},
        429: {"description": "too many requests from this address"},
    },
)
async def subscribe(
    request: Request, settings: AppSettings, engine: DbEngine, background: BackgroundTasks
) -> Response:
    w = web(request)
    w.subscribe_limiter.hit(client_ip(request))
    fields = await read_fields(request)
    if fields.get(HONEYPOT, "").strip():
        log.info("subscribe: honeypot filled from %s, ignored", client_ip(request))
        return _accepted(request, fields.get("email", ""))
    email = fields.get("email", "")
    source = fields.get("source", "").strip()
    try:
        # Only the address's syntax (and DNS, when that setting is on) is checked while the
        # client waits: none of it depends on who is subscribed. The syntax check alone is
        # CPU work of microseconds, not worth a trip to the thread pool; the DNS lookup is.
        if settings.check_deliverability:
            address = await run_in_threadpool(subscribers.normalize_email, email, check_deliverability=True)
        else:
            address = subscribers.normalize_email(email)
        name = subscribers.clean_name(fields.get("name") or None)
    except SubscriberError as exc:
        if wants_json(request):
            raise
        issues = await run_in_threadpool(list_issue_summaries, engine, limit=5)
        return page(request, "index.html", {"issues": issues, "email": email, "error": str(exc)}, status=422)
    # Everything that does depend on it (a known address, a new one, an unsubscribed one)
    # happens after the answer is out, so neither the answer nor its timing tells.
    answer = _accepted(request, email)
    await w.after_answer.schedule(
        background,
        "subscription",
        mail.subscribe,
        settings,
        engine,
        address,
        send=True,
        name=name,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        source=source if _SOURCE_RE.match(source) else "web",
    )
    return answer


def _token_error(request: Request, exc: TokenError, *, token: str, kind: str) -> Response:
    expired = isinstance(exc, ExpiredTokenError)
    if wants_json(request):
        return JSONResponse({"error": str(exc), "status": 400, "expired": expired}, status_code=400)
    return page(
        request,
        "token_error.html",
        {"message": str(exc), "expired": expired, "token": token, "kind": kind, "email": "", "error": None},
        status=400,
    )


@router.get("/confirm/{token}", summary="Confirm a subscription (the link in the confirmation mail)")
async def confirm(
    request: Request,
    settings: AppSettings,
    engine: DbEngine,
    background: BackgroundTasks,
    token: str = TOKEN_PATH,
) -> Response:
    try:
        result = await run_in_threadpool(lambda: subscribers.confirm(settings, engine, token))
    except TokenError as exc:
        return _token_error(request, exc, token=token, kind="confirm")
    latest = await run_in_threadpool(list_issue_summaries, engine, limit=1)
    latest_url = f"{settings.base_url}/issues/{latest[0].id}" if latest else None
    upcoming = next_run_times(settings, count=1) if not latest else []
    first_on = f"{upcoming[0]:%A %-d %B %Y}" if upcoming else None
    answer: Response
    if wants_json(request):
        answer = JSONResponse({"status": "confirmed", "latest_issue": latest_url, "first_issue_on": first_on})
    else:
        answer = page(
            request,
            "confirmed.html",
            {"latest_url": latest_url, "first_issue_on": first_on, "newly": result.newly_confirmed},
        )
    if result.newly_confirmed:
        await web(request).after_answer.schedule(
            background, "welcome mail", mail.send_welcome, settings, engine, result.subscriber
        )
    return answer


@router.post(
    "/confirm/resend", summary="A new confirmation link for an expired one", openapi_extra=RESEND_BODY
)
async def resend(
    request: Request, settings: AppSettings, engine: DbEngine, background: BackgroundTasks
) -> Response:
    w = web(request)
    w.subscribe_limiter.hit(client_ip(request))
    token = (await read_fields(request)).get("token", "")
    try:
        found = await run_in_threadpool(lambda: subscribers.resend_confirmation(settings, engine, token))
    except TokenError as exc:
        return _token_error(request, exc, token="", kind="confirm")
    answer: Response
    if wants_json(request):
        answer = JSONResponse({"status": "check_your_inbox"}, status_code=202)
    else:
        answer = page(
            request,
            "subscribed.html",
            {"message": "If that subscription still waits for confirmation, a new link is on its way."},
        )
    if found is not None:
        await w.after_answer.schedule(
            background, "confirmation mail", mail.send_confirmation, settings, found
        )
    return answer


def _masked(subscriber: Subscriber | None) -> str | None:
    if subscriber is None or subscriber.email is None:
        return None
    local, _, domain = subscriber.email.partition("@")
    return f"{local[:1]}{'•' * min(6, max(1, len(local) - 1))}@{domain}"


def _check(settings: Settings, engine: Any, token: str) -> Subscriber | None:
    return subscribers.check_unsubscribe_token(settings, engine, token)


@router.get("/unsubscribe/{token}", summary="The unsubscribe page (a button; GET changes nothing)")
async def unsubscribe_page(
    request: Request, settings: AppSettings, engine: DbEngine, token: str = TOKEN_PATH
) -> Response:
    try:
        found = await run_in_threadpool(_check, settings, engine, token)
    except TokenError as exc:
        return _token_error(request, exc, token="", kind="unsubscribe")
    if wants_json(request):
        return JSONResponse({"status": found.status if found else "unknown"})
    return page(
        request,
        "unsubscribe.html",
        {
            "token": token,
            "address": _masked(found),
            "already": found is not None and found.status == SubscriberStatus.UNSUBSCRIBED,
        },
    )


@router.post(
    "/unsubscribe/{token}",
    summary="Unsubscribe (RFC 8058 one-click: no login, no cookie, no redirect)",
    openapi_extra=ONE_CLICK_BODY,
)
async def unsubscribe(
    request: Request, settings: AppSettings, engine: DbEngine, token: str = TOKEN_PATH
) -> Response:
    await request.body()  # "List-Unsubscribe=One-Click" or the page's form: both mean the same
    try:
        found = await run_in_threadpool(lambda: subscribers.unsubscribe_by_token(settings, engine, token))
    except TokenError as exc:
        return _token_error(request, exc, token="", kind="unsubscribe")
    if wants_json(request):
        return JSONResponse({"status": "unsubscribed"})
    return page(request, "unsubscribed.html", {"address": _masked(found)})
