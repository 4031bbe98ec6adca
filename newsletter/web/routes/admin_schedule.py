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
from newsletter.web.routes.admin_forms import AdminCsrf, CheckedForm, form_body
from newsletter.web.shared import AppSettings, DbEngine, page

router = APIRouter(prefix="/admin/schedule", tags=["admin"])
BACK = "/admin/schedule"


@router.get("", summary="The weekly schedule and whether it is paused")
async def schedule_page(
    request: Request, csrf: AdminCsrf, settings: AppSettings, engine: DbEngine
) -> Response:
    view = await run_in_threadpool(schedule_view, settings, engine)
    return page(request, "admin/schedule.html", {"schedule": view, "csrf": csrf})


@router.post(
    "/pause", summary="Pause the weekly job on every instance", openapi_extra=form_body({"reason": {}})
)
async def schedule_pause(fields: CheckedForm, engine: DbEngine) -> Response:
    await run_in_threadpool(lambda: pause(engine, reason=fields.get("reason"), by="admin"))
    return RedirectResponse(BACK, status_code=303)


@router.post(
    "/resume", summary="Resume the weekly job (and cancel a pending skip)", openapi_extra=form_body({})
)
async def schedule_resume(_: CheckedForm, settings: AppSettings, engine: DbEngine) -> Response:
    await run_in_threadpool(lambda: resume(settings, engine, by="admin"))
    return RedirectResponse(BACK, status_code=303)


@router.post("/skip", summary="Skip the next slot", openapi_extra=form_body({}))
async def schedule_skip(_: CheckedForm, settings: AppSettings, engine: DbEngine) -> Response:
    await run_in_threadpool(lambda: skip_next(settings, engine, by="admin"))
    return RedirectResponse(BACK, status_code=303)
