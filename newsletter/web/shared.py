"""What every route shares: the app's state (``web``) and its settings and engine as FastAPI
dependencies (``AppSettings``, ``DbEngine``), form reading, content negotiation, page and
error rendering, the login page. Routes import this module, never the app factory."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

import jinja2
from fastapi import BackgroundTasks, Depends, HTTPException
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Scope

from newsletter.config import Settings
from newsletter.errors import SubscriberError
from newsletter.resources import WEB_TEMPLATES
from newsletter.web.security import (
    RateLimiter,
    csrf_token,
)

log = logging.getLogger(__name__)

PITCH = "Get the next comparison in your inbox"
LOGIN_ATTEMPTS = (10, 300)  # per IP: 10 tries in 5 minutes


class AfterAnswer:
    """Work that runs after the answer is sent (storing a subscription, a mail), at most
    ``limit`` at a time: a flood of requests then waits for its turn before being answered,
    instead of queueing work, and memory, without bound behind answers already given."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(limit)

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # an asyncio.Semaphore belongs to one loop (tests run several)
            self._loop, self._slots = loop, asyncio.Semaphore(self.limit)
        return self._slots

    async def schedule(
        self, background: BackgroundTasks, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        """Queue ``function(*args, **kwargs)`` to run after the answer, once a slot is free.

        Call it last, with the answer built: a route that fails after it would hold the slot.
        A flood that finds no slot for AFTER_ANSWER_WAIT seconds is answered 503."""
        slots = self._semaphore()
        try:
            if slots.locked():  # (wait_for costs a task: only when there is something to wait for)
                await asyncio.wait_for(slots.acquire(), AFTER_ANSWER_WAIT)
            else:
                await slots.acquire()
        except TimeoutError:
            raise HTTPException(
                503, "too busy right now; try again in a minute", {"Retry-After": "60"}
            ) from None
        background.add_task(self._run, what, function, *args, **kwargs)

    async def _run(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            await run_in_threadpool(function, *args, **kwargs)
        except Exception:
            log.exception("%s failed after the answer was sent", what)
        finally:
            self._semaphore().release()


# How much subscription work may be waiting behind answers already sent, per process, and
# how long a request waits for room before it is told to come back.
AFTER_ANSWER_LIMIT = 64
AFTER_ANSWER_WAIT = 30.0


@dataclass
class Web:
    """What the routes need, kept on app.state.web."""

    settings: Settings
    engine: Engine
    templates: jinja2.Environment
    subscribe_limiter: RateLimiter
    login_limiter: RateLimiter
    after_answer: AfterAnswer = field(default_factory=lambda: AfterAnswer(AFTER_ANSWER_LIMIT))
    rendered: dict[tuple[str, str, tuple[tuple[str, str], ...]], bytes] = field(
        default_factory=dict
    )  # constant_page


def make_templates(directory: Path = WEB_TEMPLATES) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # The templates ship inside the package and do not change under a running server:
        # no stat() of the file on every page.
        auto_reload=False,
    )
    return env


def web(request: Request) -> Web:
    return request.app.state.web


async def app_settings(request: Request) -> Settings:
    return web(request).settings


async def app_engine(request: Request) -> Engine:
    """The app's engine: a route or a service function opens its own connection or session."""
    return web(request).engine


AppSettings = Annotated[Settings, Depends(app_settings)]
DbEngine = Annotated[Engine, Depends(app_engine)]


async def read_fields(request: Request) -> dict[str, str]:
    """Form (urlencoded or multipart, no files) or a JSON object, as strings."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise SubscriberError("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise SubscriberError("the JSON body must be an object")
        fields: dict[str, str] = {}
        for key, value in data.items():
            if value is None:
                continue
            if not isinstance(value, str):
                raise SubscriberError(f"{key!r} must be a string")
            fields[str(key)] = value
        return fields
    if ctype == "application/x-www-form-urlencoded":
        # The standard library's parser: a tenth of the cost of the multipart one per request.
        try:
            pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True, max_num_fields=50)
        except (ValueError, UnicodeDecodeError):
            raise SubscriberError("the form is not valid (too many fields, or not UTF-8)") from None
        return dict(pairs)
    if ctype == "multipart/form-data":
        form = await request.form(max_files=0, max_fields=50)
        return {key: value for key, value in form.items() if isinstance(value, str)}
    if not ctype and not await request.body():
        return {}
    raise HTTPException(415, "send the form as application/x-www-form-urlencoded or a JSON object")


def wants_json(request: Request | Scope) -> bool:
    request = request if isinstance(request, Request) else Request(request)
    if request.scope["path"].startswith("/api/"):
        return True  # the admin API always answers JSON
    headers = request.headers
    accept = headers.get("accept", "").lower()
    if "text/html" in accept:
        return False
    if "application/json" in accept:
        return True
    return headers.get("content-type", "").lower().startswith("application/json")


def page(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    w = web(request)
    values = {
        "name": w.settings.newsletter_name,
        "pitch": PITCH,
        "postal_address": w.settings.postal_address,
        "request_path": request.url.path,
        **(context or {}),
    }
    html = w.templates.get_template(template).render(**values)
    return HTMLResponse(html, status_code=status, headers=headers)


def constant_page(request: Request, template: str, context: dict[str, str]) -> HTMLResponse:
    """``page`` for a page that is the same for every request to its path (the answer to a
    subscription): rendered once per process, since it is the one a flood asks for."""
    w = web(request)
    key = (template, str(request.scope["path"]), tuple(sorted(context.items())))
    html = w.rendered.get(key)
    if html is None:
        html = w.rendered[key] = bytes(page(request, template, context).body)
    return HTMLResponse(html)


def error_page(
    request: Request,
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    title: str | None = None,
    field: str | None = None,
) -> Response:
    if wants_json(request):
        body: dict[str, Any] = {"error": message, "status": status}
        if field:
            body["field"] = field
        return JSONResponse(body, status_code=status, headers=headers)
    return page(
        request,
        "error.html",
        {"status": status, "message": message, "title": title or _TITLES.get(status, "Something went wrong")},
        status=status,
        headers=headers,
    )


_TITLES = {
    400: "That link or request is not valid",
    401: "Sign in needed",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    413: "Too much data",
    415: "Unsupported content type",
    422: "Please check what you entered",
    429: "Slow down a little",
    500: "Something went wrong on our side",
    501: "Not available yet",
    503: "Temporarily unavailable",
}


def login_page(request: Request, *, message: str | None = None, status: int = 401) -> Response:
    w = web(request)
    if wants_json(request):
        return JSONResponse(
            {"error": message or "admin token required", "status": status}, status_code=status
        )
    return page(
        request,
        "admin/login.html",
        {"message": message, "csrf": csrf_token(w.settings, "login")},
        status=status,
        headers={"WWW-Authenticate": 'Bearer realm="admin"'},
    )
