"""The subscribers page: search by address or name, filter by status, keyset "next page",
add, one subscriber's delivery history and erasure, CSV import (upload) and export.

Thin: each route calls one function of newsletter.subscribers, as the CLI and /api/v1 do.
A subscriber is addressed by id in URLs, so no address lands in a log or a Referer.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from newsletter import mail, subscribers
from newsletter.errors import NewsletterError, NotFoundError, SubscriberError
from newsletter.web.routes.admin_forms import Admin, AdminCsrf, CheckedForm, form_body
from newsletter.web.security import verify_csrf
from newsletter.web.shared import AppSettings, DbEngine, page

router = APIRouter(prefix="/admin/subscribers", tags=["admin"])
IMPORT_PATH = "/admin/subscribers/import"
IMPORT_MAX_BYTES = 64 * 1024 * 1024
PAGE_SIZE = 50


class UploadTooLarge(NewsletterError):
    http_status = 413


Status = Annotated[str | None, Query(pattern="^(pending|confirmed|unsubscribed|bounced|complained|)$")]
SubscriberId = Annotated[int, PathParam(ge=1, le=2**62)]


@router.get("", summary="Search subscribers (address or name, status), one keyset page at a time")
async def subscribers_page(
    request: Request,
    csrf: AdminCsrf,
    engine: DbEngine,
    q: Annotated[str | None, Query(max_length=200)] = None,
    status: Status = None,
    cursor: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> Response:
    found = await run_in_threadpool(
        lambda: subscribers.search_subscribers(
            engine, q=q, status=status or None, limit=PAGE_SIZE, after=cursor
        )
    )
    counts = await run_in_threadpool(subscribers.count_by_status, engine)
    return page(
        request,
        "admin/subscribers.html",
        {
            "found": found,
            "q": q or "",
            "status": status or "",
            "statuses": subscribers.STATUSES,
            "counts": counts,
            "first_page": cursor == 0,
            "csrf": csrf,
        },
    )


def _result(request: Request, title: str, lines: list[str]) -> Response:
    return page(
        request,
        "admin/result.html",
        {"title": title, "issue_id": None, "lines": lines, "back": "/admin/subscribers"},
    )


@router.post(
    "",
    summary="Add a subscriber (pending with a confirmation mail, or confirmed)",
    openapi_extra=form_body({"email": {}, "name": {}, "confirmed": {}}),
)
async def subscribers_add(
    request: Request, fields: CheckedForm, settings: AppSettings, engine: DbEngine
) -> Response:
    confirmed = fields.get("confirmed") == "yes"
    result = (
        await run_in_threadpool(
            lambda: mail.add(
                settings,
                engine,
                [fields.get("email", "")],
                confirmed=confirmed,
                name=fields.get("name") or None,
                source="admin",
                send=not confirmed,
            )
        )
    )[0]
    if result.action == "invalid":
        raise SubscriberError(result.message)
    messages = {
        "added": "added as confirmed" if confirmed else "added; a confirmation mail is on its way",
        "confirmed": "was pending; now confirmed",
        "exists": "is already on the list",
        "suppressed": result.message
        or "is suppressed (unsubscribed, erased or bounced): only their own sign-up lifts that",
    }
    return _result(request, "Subscriber", [f"{result.email} {messages.get(result.action, result.action)}"])


@router.get("/export.csv", summary="Every subscriber with an address, as CSV (streamed)")
async def subscribers_export(_: Admin, engine: DbEngine, status: Status = None) -> Response:
    chunks = subscribers.iter_export_csv(engine, status=status or None)
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="subscribers.csv"'},
    )


@router.post(
    "/import",
    summary="Import an uploaded CSV (header row with email, optional name); bad rows listed by line",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "confirmed": {"type": "string"},
                            "csrf": {"type": "string"},
                        },
                        "required": ["file", "csrf"],
                    }
                }
            },
        }
    },
)
async def subscribers_import(
    request: Request, auth: Admin, settings: AppSettings, engine: DbEngine
) -> Response:
    # This path is exempt from the small body limit of other forms: its own limit is here.
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        raise SubscriberError("upload the CSV from the form (the request has no length)")
    if int(declared) > IMPORT_MAX_BYTES:
        raise UploadTooLarge(f"the CSV is larger than {IMPORT_MAX_BYTES // 2**20} MB")
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise SubscriberError("upload the CSV as multipart/form-data")
    async with request.form(max_files=1, max_fields=5, max_part_size=IMPORT_MAX_BYTES) as form:
        csrf = form.get("csrf")
        verify_csrf(settings, auth, csrf if isinstance(csrf, str) else None)
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise SubscriberError("choose a CSV file to import")
        confirmed = form.get("confirmed") == "yes"
        label = upload.filename
        with tempfile.NamedTemporaryFile(prefix="import-", suffix=".csv") as handle:
            await run_in_threadpool(shutil.copyfileobj, upload.file, handle)
            handle.flush()
            try:
                report = await run_in_threadpool(
                    lambda: subscribers.import_csv(
                        settings, engine, handle.name, confirmed=confirmed, source_label="admin"
                    )
                )
            except SubscriberError as exc:  # name the upload, not our temporary file
                raise SubscriberError(str(exc).replace(handle.name, label)) from None
    lines = [
        f"{label}: {report.imported} imported, {report.existing} known already, {report.upgraded} confirmed,"
        f" {report.duplicates} duplicates merged, {report.suppressed} suppressed,"
        f" {len(report.errors)} bad rows",
        *(f"{label}:{error.line}: {error.message}" for error in report.errors[:50]),
    ]
    if len(report.errors) > 50:
        lines.append(f"… and {len(report.errors) - 50} more bad rows")
    return _result(
        request, "Import finished" if not report.errors else "Import finished with bad rows", lines
    )


@router.get("/{subscriber_id}", summary="One subscriber and what they were sent")
async def subscriber_page(
    request: Request, csrf: AdminCsrf, engine: DbEngine, subscriber_id: SubscriberId
) -> Response:
    found = await run_in_threadpool(subscribers.get_subscriber, engine, subscriber_id)
    if found is None:
        raise NotFoundError(f"no subscriber {subscriber_id}")
    history = await run_in_threadpool(subscribers.delivery_history, engine, subscriber_id)
    return page(
        request,
        "admin/subscriber.html",
        {"subscriber": found, "history": history, "csrf": csrf},
    )


@router.post(
    "/{subscriber_id}/erase",
    summary="Erase a subscriber (right to be forgotten); only a hash stays, suppressed",
    openapi_extra=form_body({"confirm": {"type": "string", "enum": ["yes"]}}),
)
async def subscriber_erase(
    request: Request, fields: CheckedForm, engine: DbEngine, subscriber_id: SubscriberId
) -> Response:
    found = await run_in_threadpool(subscribers.get_subscriber, engine, subscriber_id)
    if found is None or found.email is None:
        raise NotFoundError(f"no subscriber {subscriber_id} (or erased already)")
    if fields.get("confirm") != "yes":
        raise SubscriberError("tick the confirmation to erase this subscriber")
    await run_in_threadpool(subscribers.remove, engine, found.email)
    return _result(
        request,
        "Subscriber erased",
        [f"subscriber {subscriber_id}: address, name and consent record erased; the hash stays suppressed"],
    )
