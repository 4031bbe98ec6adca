"""The admin JSON API, ``/api/v1``: ``Authorization: Bearer <ADMIN_TOKEN>`` on every route.

Thin on purpose: each route validates its input, calls the same service function as the
CLI and the admin pages (issues.py, preview.py, schedule.py, subscribers.py, delivery) in
a worker thread, and shapes the answer. Errors are JSON: 401 without the token, 404 for
an unknown issue or subscriber, 409 once an issue started sending, 422 naming the field.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from newsletter import mail, subscribers
from newsletter.config import Settings
from newsletter.delivery import delivery_status, send_test
from newsletter.delivery.jobs import start_send
from newsletter.errors import AuthError, NotFoundError, SubscriberError
from newsletter.issues import IssueFrozenError, IssueInfo, get_issue, list_issues
from newsletter.issues.build import build_issue, edit_issue
from newsletter.issues.preview import render_preview
from newsletter.schedule import pause, resume, schedule_view, skip_next
from newsletter.states import IssueStatus
from newsletter.web.routes.admin import MAX_TEST_ADDRESSES, admin_sends
from newsletter.web.routes.archive import ISSUE_ID_PATTERN
from newsletter.web.security import token_matches
from newsletter.web.shared import AppSettings, DbEngine

PREFIX = "/api/v1"
IMPORT_PATH = f"{PREFIX}/subscribers/import"
IMPORT_MAX_BYTES = 64 * 1024 * 1024
T = TypeVar("T")


async def require_token(request: Request, settings: AppSettings) -> None:
    """Only the bearer token: no cookie, so no cross-site request can ride on a session."""
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("send the admin token as 'Authorization: Bearer <token>'")
    if not token_matches(settings, token.strip()):
        raise AuthError("the admin token is not valid")


router = APIRouter(prefix=PREFIX, tags=["admin API"], dependencies=[Depends(require_token)])
IssueId = Annotated[str, PathParam(pattern=ISSUE_ID_PATTERN, max_length=40)]
Email = Annotated[str, PathParam(max_length=320)]


async def _call(
    settings: Settings, engine: Engine, function: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """``function(settings, engine, *args, **kwargs)`` in a worker thread (service functions block)."""
    return await run_in_threadpool(function, settings, engine, *args, **kwargs)


def issue_json(info: IssueInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "status": info.status,
        "subject": info.subject,
        "preheader": info.preheader,
        "note": info.note,
        "issue_date": info.issue_date.isoformat(),
        "built_at": info.built_at.isoformat(),
        "send_started_at": info.send_started_at.isoformat() if info.send_started_at else None,
        "sent_at": info.sent_at.isoformat() if info.sent_at else None,
        "comparisons": info.comparison_slugs,
        "archive_url": f"/issues/{info.id}",
    }


# --- issues ---------------------------------------------------------------------------------


@router.get("/issues", summary="Every issue, newest first")
async def issues_index(engine: DbEngine) -> JSONResponse:
    infos = await run_in_threadpool(list_issues, engine)
    return JSONResponse({"issues": [issue_json(info) for info in infos]})


@router.post(
    "/issues",
    summary="Build the next issue, or refresh the draft",
    responses={201: {"description": "a new draft"}, 200: {"description": "refreshed, or nothing new"}},
)
async def issues_build(settings: AppSettings, engine: DbEngine) -> JSONResponse:
    result = await _call(settings, engine, build_issue)
    if result.issue_id is None:
        return JSONResponse({"id": None, "reason": result.reason})
    info = await run_in_threadpool(get_issue, engine, result.issue_id)
    body = {"id": info.id, "status": info.status, "subject": info.subject, "reason": result.reason}
    return JSONResponse(body, status_code=201 if result.created else 200)


@router.get("/issues/{issue_id}", summary="One issue")
async def issue_detail(engine: DbEngine, issue_id: IssueId) -> JSONResponse:
    info = await run_in_threadpool(get_issue, engine, issue_id)
    return JSONResponse(issue_json(info))


class IssuePatch(BaseModel):
    """Any of the three; "" brings back the computed subject/preheader, or removes the note."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=200)
    preheader: str | None = Field(default=None, max_length=300)
    note: str | None = Field(default=None, max_length=10_000, description="Markdown, sanitised")


@router.patch("/issues/{issue_id}", summary="Edit a draft's subject, preheader or editor's note")
async def issue_edit(
    settings: AppSettings, engine: DbEngine, issue_id: IssueId, patch: IssuePatch
) -> JSONResponse:
    info = await _call(
        settings,
        engine,
        edit_issue,
        issue_id,
        subject=patch.subject,
        preheader=patch.preheader,
        note=patch.note,
    )
    return JSONResponse(issue_json(info))


@router.get(
    "/issues/{issue_id}/preview",
    summary="The email as a sample recipient sees it (format=text: the text part)",
    responses={200: {"content": {"text/html": {}, "text/plain": {}}}},
)
async def issue_preview(
    settings: AppSettings,
    engine: DbEngine,
    issue_id: IssueId,
    format: Annotated[str, Query(pattern="^(html|text)$")] = "html",
) -> Response:
    preview = await _call(settings, engine, render_preview, issue_id)
    if format == "text":
        return PlainTextResponse(preview.text)
    return Response(preview.html, media_type="text/html; charset=utf-8")


class TestSend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: list[Annotated[str, Field(max_length=320)]] = Field(min_length=1, max_length=MAX_TEST_ADDRESSES)


@router.post(
    "/issues/{issue_id}/test", summary="Send the issue to a few addresses ([TEST], outside the ledger)"
)
async def issue_test(
    settings: AppSettings, engine: DbEngine, issue_id: IssueId, body: TestSend
) -> JSONResponse:
    await run_in_threadpool(get_issue, engine, issue_id)
    addresses = []
    for position, raw in enumerate(body.to):
        try:
            addresses.append(
                subscribers.normalize_email(raw, check_deliverability=settings.check_deliverability)
            )
        except SubscriberError as exc:
            raise SubscriberError(f"to.{position}: {exc}") from None
    report = await run_in_threadpool(lambda: send_test(settings, issue_id, addresses, engine=engine))
    return JSONResponse({"accepted": report.accepted, "failed": report.failed})


@router.post(
    "/issues/{issue_id}/send",
    summary="Send the issue to every confirmed subscriber, in the background",
    status_code=202,
    responses={202: {"description": "the send runs"}, 409: {"description": "already sent"}},
)
async def issue_send(
    request: Request, settings: AppSettings, engine: DbEngine, issue_id: IssueId
) -> JSONResponse:
    info = await run_in_threadpool(get_issue, engine, issue_id)
    if info.status == IssueStatus.SENT:
        raise IssueFrozenError(f"issue {issue_id} has been sent already")
    stop: threading.Event | None = getattr(request.app.state, "stop_event", None)
    started = start_send(settings, engine, admin_sends(request.app), issue_id, stop=stop)
    return JSONResponse(
        {
            "id": issue_id,
            "status": IssueStatus.SENDING,
            "started": started,
            "status_url": f"{PREFIX}/issues/{issue_id}/status",
        },
        status_code=202,
    )


@router.get(
    "/issues/{issue_id}/status", summary="Delivery counts, uncertain batches, events and the send's progress"
)
async def issue_status(request: Request, engine: DbEngine, issue_id: IssueId) -> JSONResponse:
    snapshot = admin_sends(request.app).get(issue_id)  # before the ledger: never "done" with stale counts
    report = await run_in_threadpool(delivery_status, engine, issue_id)
    return JSONResponse(
        {
            "id": issue_id,
            "status": report.issue_status,
            "counts": report.counts,
            "total": report.total,
            "uncertain_batches": [
                {
                    "batch_id": batch.batch_id,
                    "worker": batch.worker,
                    "recipients": int(batch.recipients),
                    "created_at": batch.created_at.isoformat() if batch.created_at else None,
                    "error": batch.error,
                }
                for batch in report.uncertain
            ],
            "events": report.events,
            "send": snapshot.as_json() if snapshot else None,
        }
    )


# --- schedule -------------------------------------------------------------------------------


@router.get("/schedule", summary="Next runs, whether paused, recent slots")
async def schedule(settings: AppSettings, engine: DbEngine) -> JSONResponse:
    view = await _call(settings, engine, schedule_view)
    return JSONResponse(view.as_json())


class PauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)


@router.post("/schedule/pause", summary="Pause the weekly job on every instance")
async def schedule_pause(
    settings: AppSettings, engine: DbEngine, body: PauseBody | None = None
) -> JSONResponse:
    reason = body.reason if body else None
    await run_in_threadpool(lambda: pause(engine, reason=reason, by="api"))
    return JSONResponse((await _call(settings, engine, schedule_view)).as_json())


@router.post("/schedule/resume", summary="Resume the weekly job (and cancel a pending skip)")
async def schedule_resume(settings: AppSettings, engine: DbEngine) -> JSONResponse:
    await _call(settings, engine, resume, by="api")
    return JSONResponse((await _call(settings, engine, schedule_view)).as_json())


@router.post("/schedule/skip", summary="Skip the next slot")
async def schedule_skip(settings: AppSettings, engine: DbEngine) -> JSONResponse:
    skipped = await _call(settings, engine, skip_next, by="api")
    view = await _call(settings, engine, schedule_view)
    return JSONResponse({"skipped": skipped.key, **view.as_json()})


# --- subscribers ----------------------------------------------------------------------------


def subscriber_json(sub: subscribers.Subscriber) -> dict[str, Any]:
    return {
        "id": sub.id,
        "email": sub.email,
        "name": sub.name,
        "status": sub.status,
        "source": sub.source,
        "created_at": sub.created_at.isoformat(),
        "confirmed_at": sub.confirmed_at.isoformat() if sub.confirmed_at else None,
        "unsubscribed_at": sub.unsubscribed_at.isoformat() if sub.unsubscribed_at else None,
    }


@router.get("/subscribers", summary="Search by address or name, filter by status; keyset pages")
async def subscribers_index(
    engine: DbEngine,
    q: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[
        str | None, Query(pattern="^(pending|confirmed|unsubscribed|bounced|complained)$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=subscribers.SEARCH_LIMIT)] = 50,
    cursor: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> JSONResponse:
    found = await run_in_threadpool(
        lambda: subscribers.search_subscribers(engine, q=q, status=status, limit=limit, after=cursor)
    )
    return JSONResponse(
        {
            "subscribers": [subscriber_json(sub) for sub in found.subscribers],
            "next_cursor": found.next_cursor,
            "counts": await run_in_threadpool(subscribers.count_by_status, engine),
        }
    )


class NewSubscriber(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320)
    name: str | None = Field(default=None, max_length=200)
    confirmed: bool = Field(
        default=False, description="you hold their consent; else a confirmation mail goes out"
    )


@router.post(
    "/subscribers",
    summary="Add a subscriber (pending with a confirmation mail, or confirmed)",
    status_code=201,
    responses={
        201: {"description": "added"},
        200: {"description": "known already"},
        409: {"description": "suppressed"},
    },
)
async def subscribers_add(settings: AppSettings, engine: DbEngine, body: NewSubscriber) -> JSONResponse:
    result = (
        await run_in_threadpool(
            lambda: mail.add(
                settings,
                engine,
                [body.email],
                confirmed=body.confirmed,
                name=body.name,
                source="api",
                send=not body.confirmed,
            )
        )
    )[0]
    if result.action == "invalid":
        return JSONResponse({"error": result.message, "status": 422, "field": "email"}, status_code=422)
    if result.action == "suppressed":
        return JSONResponse({"error": result.message, "status": 409, "field": "email"}, status_code=409)
    sub = result.subscriber or await run_in_threadpool(subscribers.find_subscriber, engine, body.email)
    return JSONResponse(
        {"action": result.action, "subscriber": subscriber_json(sub) if sub else None},
        status_code=201 if result.action == "added" else 200,
    )


@router.get("/subscribers/export", summary="Every subscriber with an address, as CSV (streamed)")
async def subscribers_export(
    engine: DbEngine,
    status: Annotated[
        str | None, Query(pattern="^(pending|confirmed|unsubscribed|bounced|complained)$")
    ] = None,
) -> StreamingResponse:
    chunks = subscribers.iter_export_csv(engine, status=status)
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="subscribers.csv"'},
    )


@router.post(
    "/subscribers/import",
    summary="Import a CSV body (header row with email, optional name); bad rows listed by line",
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def subscribers_import(
    request: Request, settings: AppSettings, engine: DbEngine, confirmed: Annotated[bool, Query()] = False
) -> JSONResponse:
    with tempfile.NamedTemporaryFile(prefix="import-", suffix=".csv") as handle:
        size = 0
        async for chunk in request.stream():  # the body limit of other routes does not apply here
            size += len(chunk)
            if size > IMPORT_MAX_BYTES:
                return JSONResponse(
                    {"error": f"the CSV is larger than {IMPORT_MAX_BYTES // 2**20} MB", "status": 413},
                    status_code=413,
                )
            handle.write(chunk)
        handle.flush()
        path = handle.name
        report = await run_in_threadpool(
            lambda: subscribers.import_csv(settings, engine, path, confirmed=confirmed, source_label="api")
        )
    return JSONResponse(
        {
            "imported": report.imported,
            "existing": report.existing,
            "upgraded": report.upgraded,
            "duplicates": report.duplicates,
            "suppressed": report.suppressed,
            "errors": [{"line": error.line, "message": error.message} for error in report.errors[:100]],
            "error_count": len(report.errors),
        }
    )


@router.get("/subscribers/{email}", summary="One subscriber and what they were sent")
async def subscriber_detail(engine: DbEngine, email: Email) -> JSONResponse:
    found = await run_in_threadpool(subscribers.find_subscriber, engine, email)
    if found is None or found.email is None:
        raise NotFoundError(f"no subscriber {email.strip()!r}")
    history = await run_in_threadpool(subscribers.delivery_history, engine, found.id)
    return JSONResponse({"subscriber": subscriber_json(found), "deliveries": history})


@router.delete(
    "/subscribers/{email}", summary="Erase a subscriber (right to be forgotten); the hash stays suppressed"
)
async def subscriber_remove(engine: DbEngine, email: Email) -> JSONResponse:
    found = await run_in_threadpool(subscribers.find_subscriber, engine, email)
    if found is None or found.email is None:
        raise NotFoundError(f"no subscriber {email.strip()!r}")
    removed = await run_in_threadpool(subscribers.remove, engine, email)
    return JSONResponse({"erased": removed.id, "status": removed.status})
