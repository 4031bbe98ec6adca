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

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from newsletter.config import Settings, get_settings
from newsletter.db import open_database
from newsletter.errors import AuthError, NewsletterError
from newsletter.resources import WEB_TEMPLATES, package_version
from newsletter.web.jsonguard import JsonDepthMiddleware
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
from newsletter.web.security import (
    RateLimiter,
    SecurityMiddleware,
    retry_after_headers,
)
from newsletter.web.shared import (
    LOGIN_ATTEMPTS,
    Web,
    error_page,
    login_page,
    make_templates,
)

log = logging.getLogger(__name__)


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
