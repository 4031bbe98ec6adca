"""GET / (the subscribe page), GET /comparisons/{slug}, GET /healthz."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import ValidationError
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from newsletter.catalog import StoredComparison, find_stored_comparison
from newsletter.errors import NotFoundError
from newsletter.issues.summaries import issues_with_comparison, list_issue_summaries
from newsletter.issues.verdicts import summarise
from newsletter.models import Comparison
from newsletter.web.shared import DbEngine, page, wants_json

router = APIRouter(tags=["pages"])

LATEST_ON_HOME = 5


@router.get("/", summary="The subscribe page")
async def home(request: Request, engine: DbEngine) -> Response:
    issues = await run_in_threadpool(list_issue_summaries, engine, limit=LATEST_ON_HOME)
    return page(request, "index.html", {"issues": issues, "email": "", "error": None})


def _comparison(stored: StoredComparison) -> dict[str, Any]:
    """What the comparison page shows: the stored data, every key filled in."""
    data = dict(stored.data)
    data.setdefault("title", stored.title)
    data.setdefault("category", stored.category)
    data["published_at"] = stored.published_at
    data["slug"] = stored.slug
    data.setdefault("url", stored.url)
    data["tools"] = [_tool(tool) for tool in data.get("tools") or [] if isinstance(tool, dict)]
    data["verdict"] = _verdict(stored)
    return data


def _verdict(stored: StoredComparison) -> str | None:
    """The same verdict line the email gives (verdicts.summarise), or None if the data cannot say."""
    try:
        return summarise(Comparison.model_validate(stored.data), url=stored.url or "").verdict
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
    request: Request,
    engine: DbEngine,
    slug: str = PathParam(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
) -> Response:
    stored = await run_in_threadpool(find_stored_comparison, engine, slug)
    if stored is None:
        raise NotFoundError(f"no comparison {slug!r}")
    data = _comparison(stored)
    if wants_json(request):
        return JSONResponse({k: v for k, v in data.items() if k != "published_at"})
    issues = await run_in_threadpool(issues_with_comparison, engine, slug)
    return page(request, "comparison.html", {"c": data, "issues": issues})


def _database_ok(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@router.get("/healthz", summary="Liveness and database check")
async def healthz(request: Request, engine: DbEngine) -> JSONResponse:
    ok = await run_in_threadpool(_database_ok, engine)
    return JSONResponse(
        {"status": "ok" if ok else "error", "database": "ok" if ok else "unreachable"},
        status_code=200 if ok else 503,
    )
