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
from newsletter.web.routes.admin_forms import admin_auth, checked_form, csrf_for, form_body
from newsletter.web.shared import page, web

router = APIRouter(prefix="/admin", tags=["admin"])
Format = Annotated[str, Query(pattern="^(html|text)$")]


@router.get("/issues", summary="Every issue, and the button that builds the next one")
async def issues_page(request: Request) -> Response:
    auth = admin_auth(request)
    infos = await run_in_threadpool(list_issues, web(request).engine)
    return page(
        request,
        "admin/issues.html",
        {"issues": infos, "csrf": csrf_for(request, auth)},
    )


@router.post(
    "/issues/build", summary="Build the next issue (or refresh the draft)", openapi_extra=form_body({})
)
async def issues_build(request: Request) -> Response:
    await checked_form(request)
    w = web(request)
    result = await run_in_threadpool(build_issue, w.settings, w.engine)
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
async def issue_edit(request: Request, issue_id: str = ISSUE_ID) -> Response:
    _, fields = await checked_form(request)
    w = web(request)
    await run_in_threadpool(
        lambda: edit_issue(
            w.settings,
            w.engine,
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
async def issue_email(request: Request, issue_id: str = ISSUE_ID, format: Format = "html") -> Response:
    admin_auth(request)
    w = web(request)
    preview = await run_in_threadpool(render_preview, w.settings, w.engine, issue_id)
    return _preview_response(preview, format)


@router.post(
    "/issues/{issue_id}/email",
    summary="The email with unsaved edits (the live preview; nothing is stored)",
    openapi_extra=form_body({"subject": {}, "preheader": {}, "note": {}}),
)
async def issue_email_draft(request: Request, issue_id: str = ISSUE_ID, format: Format = "html") -> Response:
    _, fields = await checked_form(request)
    w = web(request)
    preview = await run_in_threadpool(
        lambda: render_draft_preview(
            w.settings,
            w.engine,
            issue_id,
            subject=fields.get("subject"),
            preheader=fields.get("preheader"),
            note=fields.get("note"),
        )
    )
    return _preview_response(preview, format)
