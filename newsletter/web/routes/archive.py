"""The public archive: GET /issues, GET /issues/{id} (a page of the site, from what was sent), /feed.xml."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from fastapi import APIRouter
from fastapi import Path as PathParam
from feedgen.feed import FeedGenerator
from pydantic import ValidationError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from newsletter.config import Settings
from newsletter.errors import NotFoundError
from newsletter.issues.archive import load_issue
from newsletter.issues.content import IssueContent
from newsletter.issues.summaries import get_issue_summary, list_issue_summaries
from newsletter.states import IssueStatus
from newsletter.web.shared import AppSettings, DbEngine, page, wants_json

router = APIRouter(tags=["archive"])

ISSUE_ID_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_-]{0,39}$"


def load_web_html(settings: Settings, issue_id: str) -> str:
    """The archived browser version of an issue (the one place that reads the archive)."""
    return load_issue(settings, issue_id).web_html


@router.get("/issues", summary="The archive: every issue that went out")
async def issues_index(request: Request, engine: DbEngine) -> Response:
    issues = await run_in_threadpool(list_issue_summaries, engine)
    if wants_json(request):
        return JSONResponse(
            {
                "issues": [
                    {
                        "id": i.id,
                        "subject": i.subject,
                        "date": i.issue_date.date().isoformat(),
                        "url": f"/issues/{i.id}",
                    }
                    for i in issues
                ]
            }
        )
    return page(request, "issues.html", {"issues": issues})


def load_content(settings: Settings, issue_id: str) -> IssueContent | None:
    """What an archived issue says (issue.json: what was sent), for the site's own page;
    None for an archive that does not hold its content (hand-made or older)."""
    try:
        return load_issue(settings, issue_id).content
    except (KeyError, TypeError, ValidationError):
        return None


@router.get("/issues/{issue_id}", summary="One issue, as a page of the site", response_class=HTMLResponse)
async def issue_page(
    request: Request,
    settings: AppSettings,
    engine: DbEngine,
    issue_id: str = PathParam(pattern=ISSUE_ID_PATTERN, max_length=40),
) -> Response:
    summary = await run_in_threadpool(lambda: get_issue_summary(engine, issue_id, public=True))
    if summary is None:
        raise NotFoundError(f"no issue {issue_id!r} in the archive")
    content = await run_in_threadpool(load_content, settings, issue_id)
    if content is None:  # nothing to lay out: the browser version, as it was sent
        return HTMLResponse(await run_in_threadpool(load_web_html, settings, issue_id))
    return page(request, "issue.html", {"c": content})


FEED_SIZE = 20


def atom_feed(settings: Settings, engine: Engine) -> bytes:
    """The Atom feed of sent issues, newest first: each entry the issue's verdicts."""
    sent = [
        issue for issue in list_issue_summaries(engine, limit=FEED_SIZE) if issue.status == IssueStatus.SENT
    ]
    feed = FeedGenerator()
    feed.id(f"{settings.base_url}/issues")
    feed.title(settings.newsletter_name)
    feed.subtitle("Every week: the AI-tool comparisons we published, each with its verdict")
    feed.link(href=f"{settings.base_url}/feed.xml", rel="self")
    feed.link(href=f"{settings.base_url}/issues", rel="alternate")
    feed.language("en")
    feed.updated(max((i.sent_at or i.issue_date for i in sent), default=datetime(2026, 1, 1, tzinfo=UTC)))
    for issue in reversed(sent):  # feedgen prepends: oldest first gives newest on top
        content = load_content(settings, issue.id)
        entry = feed.add_entry()
        url = f"{settings.base_url}/issues/{issue.id}"
        entry.id(url)
        entry.title(issue.subject)
        entry.link(href=url)
        entry.published(issue.sent_at or issue.issue_date)
        entry.updated(issue.sent_at or issue.issue_date)
        entry.summary(issue.preheader)
        entry.content(_entry_html(content), type="html")
    return bytes(feed.atom_str(pretty=True))


def _entry_html(content: IssueContent | None) -> str:
    if content is None:
        return ""
    parts = [content.note_html or ""]
    for summary in content.comparisons:
        parts.append(f"<h2>{escape(summary.title)}</h2><p>{escape(summary.verdict)}</p>")
    return "".join(parts)


@router.get(
    "/feed.xml",
    summary="Atom feed of the sent issues",
    response_class=Response,
    responses={200: {"content": {"application/atom+xml": {}}}},
)
async def feed(request: Request, settings: AppSettings, engine: DbEngine) -> Response:
    body = await run_in_threadpool(atom_feed, settings, engine)
    return Response(body, media_type="application/atom+xml; charset=utf-8")
