"""GET / (the subscribe page), GET /comparisons/{slug}, GET /healthz."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import ValidationError
from sqlalchemy import Engine, select, text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from newsletter.errors import NotFoundError
from newsletter.issues.verdicts import summarise
from newsletter.models import Comparison
from newsletter.tables import ComparisonRow, IssueComparisonRow, IssueRow, published_issue
from newsletter.web.routes.archive import list_issue_summaries
from newsletter.web.shared import page, wants_json, web

router = APIRouter(tags=["pages"])

LATEST_ON_HOME = 5


@router.get("/", summary="The subscribe page")
async def home(request: Request) -> Response:
    w = web(request)
    issues = await run_in_threadpool(list_issue_summaries, w.engine, limit=LATEST_ON_HOME)
    return page(request, "index.html", {"issues": issues, "email": "", "error": None})


def _comparison(engine: Engine, slug: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(ComparisonRow).where(ComparisonRow.slug == slug)).first()
    if row is None:
        return None
    data = dict(row.data or {})
    data.setdefault("title", row.title)
    data.setdefault("category", row.category)
    data["published_at"] = row.published_at
    data["slug"] = row.slug
    data.setdefault("url", row.url)
    data["tools"] = [_tool(tool) for tool in data.get("tools") or [] if isinstance(tool, dict)]
    data["verdict"] = _verdict(row)
    return data


def _verdict(row: Any) -> str | None:
    """The same verdict line the email gives (verdicts.summarise), or None if the data cannot say."""
    try:
        return summarise(Comparison.model_validate(row.data), url=row.url or "").verdict
    except (ValidationError, ValueError):
        return None


TOOL_KEYS = ("name", "tagline", "ship_pct", "panel_ship", "panel_skip", "pricing", "description")
REVIEW_KEYS = ("quote", "persona", "verdict")


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    """Every key the page shows, None when the comparison does not say."""
    clean = {key: tool.get(key) for key in TOOL_KEYS}
    reviews = tool.get("reviews") or []
    clean["reviews"] = [
        {key: review.get(key) for key in REVIEW_KEYS} for review in reviews if isinstance(review, dict)
    ]
    return clean


@router.get("/comparisons/{slug}", summary="A comparison (where mails link when it has no URL of its own)")
async def comparison_page(
    request: Request, slug: str = PathParam(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
) -> Response:
    w = web(request)
    data = await run_in_threadpool(_comparison, w.engine, slug)
    if data is None:
        raise NotFoundError(f"no comparison {slug!r}")
    if wants_json(request):
        return JSONResponse({k: v for k, v in data.items() if k != "published_at"})
    issues = await run_in_threadpool(_issues_with, w.engine, slug)
    return page(request, "comparison.html", {"c": data, "issues": issues})


def _issues_with(engine: Engine, slug: str) -> list[tuple[str, str]]:
    """(id, subject) of the public issues that carried this comparison."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(IssueRow.id, IssueRow.subject)
            .join(IssueComparisonRow, IssueComparisonRow.issue_id == IssueRow.id)
            .join(ComparisonRow, ComparisonRow.id == IssueComparisonRow.comparison_id)
            .where(ComparisonRow.slug == slug, published_issue(IssueRow.status, IssueRow.id))
            .order_by(IssueRow.issue_date.desc())
        ).all()
    return [(row.id, row.subject) for row in rows]


def _database_ok(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@router.get("/healthz", summary="Liveness and database check")
async def healthz(request: Request) -> JSONResponse:
    ok = await run_in_threadpool(_database_ok, web(request).engine)
    return JSONResponse(
        {"status": "ok" if ok else "error", "database": "ok" if ok else "unreachable"},
        status_code=200 if ok else 503,
    )
