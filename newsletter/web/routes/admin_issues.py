"""The editor's issue pages: the list with "Build next issue", editing a draft's subject,
preheader and note, and the email preview (saved, or with unsaved edits for the live preview).

Thin: parse the form, call one service function (issues.build_issue / edit_issue,
preview.render_preview / render_draft_preview), render. The issue page itself (progress,
test send, send) is in admin.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from newsletter.issues import list_issues
from newsletter.issues.build import build_issue, edit_issue
from newsletter.issues.preview import Preview, render_draft_preview, render_preview
from newsletter.web.routes.admin import ISSUE_ID
from newsletter.web.routes.admin_forms import Admin, AdminCsrf, CheckedForm, form_body
from newsletter.web.shared import AppSettings, DbEngine, page

router = APIRouter(prefix="/admin", tags=["admin"])
Format = Annotated[str, Query(pattern="^(html|text)$")]


@router.get("/issues", summary="Every issue, and the button that builds the next one")
async def issues_page(request: Request, csrf: AdminCsrf, engine: DbEngine) -> Response:
    infos = await run_in_threadpool(list_issues, engine)
    return page(request, "admin/issues.html", {"issues": infos, "csrf": csrf})


@router.post(
    "/issues/build", summary="Build the next issue (or refresh the draft)", openapi_extra=form_body({})
)
async def issues_build(request: Request, _: CheckedForm, settings: AppSettings, engine: DbEngine) -> Response:
    result = await run_in_threadpool(build_issue, settings, engine)
    if result.issue_id is None:
        return page(
            request,
            "admin/result.html",
            {"title": "Nothing to build", "issue_id": None, "lines": [result.reason]},
        )
    return RedirectResponse(f"/admin/issues/{result.issue_id}", status_code=303)


@router.post(
    "/issues/{issue_id}/edit",
    summary="Save a draft's subject, preheader and editor's note (Markdown); re-renders it",
    openapi_extra=form_body({"subject": {}, "preheader": {}, "note": {}}),
)
async def issue_edit(
    fields: CheckedForm, settings: AppSettings, engine: DbEngine, issue_id: str = ISSUE_ID
) -> Response:
    await run_in_threadpool(
        lambda: edit_issue(
            settings,
            engine,
            issue_id,
            subject=fields.get("subject", ""),
            preheader=fields.get("preheader", ""),
            note=fields.get("note", ""),
        )
    )
    return RedirectResponse(f"/admin/issues/{issue_id}?saved=1", status_code=303)


def _preview_response(preview: Preview, format: str) -> Response:
    if format == "text":
        return PlainTextResponse(preview.text)
    return Response(preview.html, media_type="text/html; charset=utf-8")


@router.get(
    "/issues/{issue_id}/email", summary="The email as a sample recipient sees it (format=text: the text part)"
)
async def issue_email(
    _: Admin, settings: AppSettings, engine: DbEngine, issue_id: str = ISSUE_ID, format: Format = "html"
) -> Response:
    preview = await run_in_threadpool(render_preview, settings, engine, issue_id)
    return _preview_response(preview, format)


@router.post(
    "/issues/{issue_id}/email",
    summary="The email with unsaved edits (the live preview; nothing is stored)",
    openapi_extra=form_body({"subject": {}, "preheader": {}, "note": {}}),
)
async def issue_email_draft(
    fields: CheckedForm,
    settings: AppSettings,
    engine: DbEngine,
    issue_id: str = ISSUE_ID,
    format: Format = "html",
) -> Response:
    preview = await run_in_threadpool(
        lambda: render_draft_preview(
            settings,
            engine,
            issue_id,
            subject=fields.get("subject"),
            preheader=fields.get("preheader"),
            note=fields.get("note"),
        )
    )
    return _preview_response(preview, format)
