"""The stats page: per issue sent / delivered / opened / clicked / bounced / unsubscribed,
and subscriber growth by week, as server-rendered SVG charts (newsletter/charts.py)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from newsletter.charts import Series, bar_chart
from newsletter.stats import growth_by_week, issue_stats
from newsletter.web.routes.admin_forms import AdminCsrf
from newsletter.web.shared import DbEngine, page, wants_json

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/stats", summary="Per-issue engagement and weekly subscriber growth")
async def stats_page(request: Request, csrf: AdminCsrf, engine: DbEngine) -> Response:
    issues = await run_in_threadpool(issue_stats, engine)
    growth = await run_in_threadpool(growth_by_week, engine)
    if wants_json(request):
        return JSONResponse(
            {
                "issues": [vars(one) for one in issues],
                "growth": [vars(week) for week in growth],
            }
        )
    issue_chart = bar_chart(
        "Per issue: sent, opened, clicked, bounced, unsubscribed",
        [one.issue_id for one in issues],
        [
            Series("sent", [one.sent for one in issues]),
            Series("opened", [one.opened for one in issues]),
            Series("clicked", [one.clicked for one in issues]),
            Series("bounced", [one.bounced for one in issues], "#c92a2a"),
            Series("unsubscribed", [one.unsubscribed for one in issues], "#868e96"),
        ],
    )
    growth_chart = bar_chart(
        "Subscribers by week: confirmed and left",
        [week.week.split("-")[1] for week in growth],
        [
            Series("confirmed", [w.confirmed for w in growth], "#2b8a3e"),
            Series("left", [w.left for w in growth], "#c92a2a"),
        ],
    )
    return page(
        request,
        "admin/stats.html",
        {
            "issues": issues,
            "growth": growth,
            "issue_chart": issue_chart,
            "growth_chart": growth_chart,
            "csrf": csrf,
        },
    )
