"""The app factory and what every route shares: templates, content negotiation, error pages.

``create_app(settings)`` builds a FastAPI app bound to one Settings and one engine
(``app.state.settings`` / ``app.state.engine``). Routes are grouped by resource in
``newsletter/web/routes/``. One handler renders every NewsletterError with its
``http_status`` as HTML or JSON (by the Accept header); anything else becomes a
generic 500 page in SecurityMiddleware. No traceback ever reaches a user.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from newsletter.config import Settings, get_settings
from newsletter.db import open_database
from newsletter.errors import AuthError, NewsletterError
from newsletter.resources import WEB_TEMPLATES, package_version
from newsletter.web.jsonguard import JsonDepthMiddleware
from newsletter.web.security import (
    RateLimiter,
    SecurityMiddleware,
    csrf_token,
    retry_after_headers,
)

log = logging.getLogger(__name__)

PITCH = "Get the next comparison in your inbox"
LOGIN_ATTEMPTS = (10, 300)  # per IP: 10 tries in 5 minutes


@dataclass
class Web:
    """What the routes need, kept on app.state.web."""

    settings: Settings
    engine: Engine
    templates: jinja2.Environment
    subscribe_limiter: RateLimiter
    login_limiter: RateLimiter


def make_templates(directory: Path = WEB_TEMPLATES) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def web(request: Request) -> Web:
    return request.app.state.web


def wants_json(request: Request | Scope) -> bool:
    request = request if isinstance(request, Request) else Request(request)
    if request.url.path.startswith("/api/"):
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


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "path", "query"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "; ".join(parts) or "the request is not valid"


def _validation_field(exc: RequestValidationError) -> str | None:
    """The first invalid field's dotted name (``subject``, ``to.0``), for API clients."""
    for error in exc.errors()[:1]:
        where = [str(p) for p in error.get("loc", ()) if p not in ("body", "path", "query")]
        return ".".join(where) or None
    return None


def create_app(settings: Settings | None = None) -> FastAPI:
    from newsletter.web.routes import (
        admin,
        admin_issues,
        admin_schedule,
        admin_stats,
        admin_subscribers,
        api,
        archive,
        pages,
        subscriptions,
        webhooks,
    )

    settings = settings or get_settings()
    engine = open_database(settings.database_url)
    app = FastAPI(
        title=settings.newsletter_name,
        summary="Subscribe, confirm, unsubscribe, archive and admin of the newsletter",
        version=package_version(),
        docs_url=None,  # the Swagger/ReDoc pages load scripts from a CDN: no external assets
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.web = Web(
        settings=settings,
        engine=engine,
        templates=make_templates(),
        subscribe_limiter=RateLimiter(settings.subscribe_rate_limit, settings.subscribe_rate_window),
        login_limiter=RateLimiter(*LOGIN_ATTEMPTS),
    )
    app.include_router(pages.router)
    app.include_router(subscriptions.router)
    app.include_router(archive.router)
    app.include_router(admin_issues.router)  # before admin's /issues/{id}: /issues/build is a name
    app.include_router(admin.router)
    app.include_router(admin_schedule.router)
    app.include_router(admin_subscribers.router)
    app.include_router(admin_stats.router)
    app.include_router(webhooks.router)
    app.include_router(api.router)
    app.mount("/static", StaticFiles(directory=str(WEB_TEMPLATES / "static")), name="static")

    @app.exception_handler(NewsletterError)
    async def _newsletter_error(request: Request, exc: NewsletterError) -> Response:
        if isinstance(exc, AuthError) and request.url.path.startswith("/admin"):
            return login_page(request, message=str(exc))
        if exc.http_status >= 500:
            log.error("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        field = getattr(exc, "field", None)
        return error_page(
            request,
            exc.http_status,
            str(exc),
            headers=retry_after_headers(exc),
            field=field if isinstance(field, str) else None,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return error_page(request, 422, _validation_message(exc), field=_validation_field(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "there is nothing at this address"
        return error_page(request, exc.status_code, message, headers=dict(exc.headers or {}))

    def _last_resort(scope: Scope, status: int, message: str) -> Response:
        request = Request(scope)
        request.scope.setdefault("app", app)
        return error_page(request, status, message)

    # The CSV imports stream their own (larger) body to a file; webhooks read and check theirs.
    exempt = ("/webhooks/", api.IMPORT_PATH, admin_subscribers.IMPORT_PATH)
    app.add_middleware(
        JsonDepthMiddleware,
        max_depth=settings.max_json_depth,
        error_response=_last_resort,
        exempt_prefixes=exempt,
    )
    app.add_middleware(
        SecurityMiddleware,
        max_body_bytes=settings.max_body_bytes,
        error_response=_last_resort,
        exempt_prefixes=exempt,
    )
    if settings.trusted_proxies:
        # Outermost: the rate limits below see the client the trusted proxy names. Only
        # these addresses are believed (uvicorn itself is started with proxy headers off).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    return app
