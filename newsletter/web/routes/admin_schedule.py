"""The schedule page: next runs (skipped ones marked), recent slots, and pause / resume / skip.

Each button posts a CSRF-checked form and calls the same function as
``newsletter schedule pause|resume|skip`` and ``/api/v1/schedule/…``.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from newsletter.schedule import pause, resume, schedule_view, skip_next
from newsletter.web.routes.admin_forms import admin_auth, checked_form, csrf_for, form_body
from newsletter.web.shared import page, web

router = APIRouter(prefix="/admin/schedule", tags=["admin"])
BACK = "/admin/schedule"


@router.get("", summary="The weekly schedule and whether it is paused")
async def schedule_page(request: Request) -> Response:
    auth = admin_auth(request)
    w = web(request)
    view = await run_in_threadpool(schedule_view, w.settings, w.engine)
    return page(request, "admin/schedule.html", {"schedule": view, "csrf": csrf_for(request, auth)})


@router.post(
    "/pause", summary="Pause the weekly job on every instance", openapi_extra=form_body({"reason": {}})
)
async def schedule_pause(request: Request) -> Response:
    _, fields = await checked_form(request)
    engine = web(request).engine
    await run_in_threadpool(lambda: pause(engine, reason=fields.get("reason"), by="admin"))
    return RedirectResponse(BACK, status_code=303)


@router.post(
    "/resume", summary="Resume the weekly job (and cancel a pending skip)", openapi_extra=form_body({})
)
async def schedule_resume(request: Request) -> Response:
    await checked_form(request)
    w = web(request)
    await run_in_threadpool(lambda: resume(w.settings, w.engine, by="admin"))
    return RedirectResponse(BACK, status_code=303)


@router.post("/skip", summary="Skip the next slot", openapi_extra=form_body({}))
async def schedule_skip(request: Request) -> Response:
    await checked_form(request)
    w = web(request)
    await run_in_threadpool(lambda: skip_next(w.settings, w.engine, by="admin"))
    return RedirectResponse(BACK, status_code=303)
