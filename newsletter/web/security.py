"""Request hygiene: security headers, body-size limit, last-resort 500, rate limits, admin auth, CSRF.

``SecurityMiddleware`` is a plain ASGI middleware (no response buffering) that

* adds the security headers to every response (CSP, nosniff, Referrer-Policy,
  frame-ancestors/X-Frame-Options, COOP, Permissions-Policy);
* refuses bodies larger than MAX_BODY_BYTES with 413, by Content-Length and while
  streaming (webhooks have their own, larger limit and are exempt here);
* turns any unexpected exception into a generic 500 page: no traceback reaches a user.

The rate limiter is in-process (a sliding window per client IP). With several
``serve`` processes each one counts on its own, so the effective limit is
limit × processes; a shared counter would need a table and a migration.
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, delete, insert, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.config import Settings
from newsletter.errors import AuthError, RateLimitedError, TokenError
from newsletter.tables import RevokedAdminSessionRow, utcnow
from newsletter.tokens import (
    ADMIN_SESSION_MAX_AGE,
    check_csrf_token,
    make_csrf_token,
    read_admin_session,
)

log = logging.getLogger(__name__)

ADMIN_COOKIE = "nl_admin"

CSP_APP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-src 'self'; frame-ancestors 'none'"
)
# The admin pages load one script of their own (the live preview), nothing inline.
CSP_ADMIN = CSP_APP.replace("script-src 'none'", "script-src 'self'")
# Archived issues are email HTML: inline styles, remote images (tool logos), no scripts.
CSP_ARCHIVE = (
    "default-src 'none'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; "
    "font-src 'self' data:; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'self'"
)
COMMON_HEADERS = {
    "x-content-type-options": "nosniff",
    # Confirmation and unsubscribe URLs carry tokens: never leak them in a Referer.
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


def _archive_path(path: str) -> bool:
    """Pages whose body is email HTML (inline styles): the archive and the editor's previews."""
    return (
        (path.startswith("/issues/") and path.count("/") == 2)
        or (path.startswith("/admin/issues/") and path.endswith(("/preview", "/email")))
        or (path.startswith("/api/v1/issues/") and path.endswith("/preview"))
    )


def security_headers(path: str) -> dict[str, str]:
    headers = dict(COMMON_HEADERS)
    if _archive_path(path):
        headers["content-security-policy"] = CSP_ARCHIVE
        headers["x-frame-options"] = "SAMEORIGIN"
    else:
        headers["content-security-policy"] = CSP_ADMIN if path.startswith("/admin") else CSP_APP
        headers["x-frame-options"] = "DENY"
    if path.startswith(("/admin", "/confirm", "/unsubscribe")):
        headers["cache-control"] = "no-store"
    return headers


class BodyTooLarge(Exception):
    pass


ErrorFactory = Callable[[Scope, int, str], Response]


class SecurityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        error_response: ErrorFactory,
        exempt_prefixes: tuple[str, ...] = ("/webhooks/",),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.error_response = error_response
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        extra = [(name.encode(), value.encode()) for name, value in security_headers(path).items()]
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {name.lower() for name, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers.extend(item for item in extra if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        limited = not path.startswith(self.exempt_prefixes)
        limit = self.max_body_bytes
        if limited:
            for name, value in scope.get("headers", []):
                if name == b"content-length":
                    try:
                        declared = int(value)
                    except ValueError:
                        declared = -1
                    if declared > limit or declared < 0:
                        await self._error(
                            scope, send_with_headers, 413, f"request body larger than {limit} bytes"
                        )
                        return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive if limited else receive, send_with_headers)
        except BodyTooLarge:
            if not started:
                await self._error(scope, send_with_headers, 413, f"request body larger than {limit} bytes")
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), path)
            if not started:
                await self._error(scope, send_with_headers, 500, "something went wrong on our side")

    async def _error(self, scope: Scope, send: Send, status: int, message: str) -> None:
        try:
            response = self.error_response(scope, status, message)
        except Exception:  # the error page itself failed: plain text, still no traceback
            log.exception("error page failed")
            response = Response(f"{status} {message}\n", status_code=status, media_type="text/plain")

        async def no_body() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        await response(scope, no_body, send)


# --- rate limiting ----------------------------------------------------------------------------


class RateLimiter:
    """At most ``limit`` hits per ``window`` seconds per key (a sliding log). Thread-safe."""

    def __init__(self, limit: int, window: float, *, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, *, now: float | None = None) -> None:
        """Count one request; RateLimitedError (with retry_after seconds) beyond the limit."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                if len(self._hits) >= self.max_keys:
                    self._prune(moment)
                hits = self._hits[key] = deque()
            while hits and hits[0] <= moment - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                retry = max(1, math.ceil(hits[0] + self.window - moment))
                raise RateLimitedError(
                    f"too many requests: try again in {retry} second{'s' if retry != 1 else ''}",
                    retry_after=retry,
                )
            hits.append(moment)

    def _prune(self, moment: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= moment - self.window]:
            del self._hits[key]
        if len(self._hits) >= self.max_keys:  # still full of active keys: forget the older half
            for key in list(self._hits)[: len(self._hits) // 2]:
                del self._hits[key]

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- admin authentication and CSRF ------------------------------------------------------------


@dataclass(frozen=True)
class AdminAuth:
    """How the admin got in: a session cookie (``nonce`` binds CSRF) or a bearer token."""

    nonce: str | None
    bearer: bool

    @property
    def csrf_binding(self) -> str:
        return self.nonce or "bearer"


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def admin_token(settings: Settings) -> str:
    return settings.admin_secret()[0]


def token_matches(settings: Settings, candidate: str) -> bool:
    return hmac.compare_digest(candidate.encode(), admin_token(settings).encode())


def revoke_session(engine: Engine, nonce: str) -> None:
    """Sign a session out for good: its cookie is refused from now on, on every instance."""
    with engine.begin() as conn:
        known = conn.execute(
            select(RevokedAdminSessionRow.nonce).where(RevokedAdminSessionRow.nonce == nonce)
        ).first()
        if known is None:
            conn.execute(insert(RevokedAdminSessionRow).values(nonce=nonce, revoked_at=utcnow()))
        # Cookies expire after ADMIN_SESSION_MAX_AGE: older revocations guard nothing.
        horizon = utcnow() - timedelta(seconds=ADMIN_SESSION_MAX_AGE + 3600)
        conn.execute(delete(RevokedAdminSessionRow).where(RevokedAdminSessionRow.revoked_at < horizon))


def session_revoked(engine: Engine, nonce: str) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(
                select(RevokedAdminSessionRow.nonce).where(RevokedAdminSessionRow.nonce == nonce)
            ).first()
            is not None
        )


def authenticate_admin(request: Request, settings: Settings, engine: Engine | None = None) -> AdminAuth:
    """AuthError (401) unless the request carries the admin token or a valid session cookie
    (one not signed out of, when ``engine`` is given)."""
    bearer = _bearer(request)
    if bearer is not None:
        if token_matches(settings, bearer):
            return AdminAuth(nonce=None, bearer=True)
        raise AuthError("the admin token is not valid")
    cookie = request.cookies.get(ADMIN_COOKIE)
    if cookie:
        try:
            nonce = read_admin_session(settings, cookie, admin_token(settings))
        except TokenError as exc:
            raise AuthError(f"{exc}; please sign in again") from None
        if engine is not None and session_revoked(engine, nonce):
            raise AuthError("you signed out of this session; please sign in again")
        return AdminAuth(nonce=nonce, bearer=False)
    raise AuthError("sign in with the admin token")


def csrf_token(settings: Settings, binding: str) -> str:
    return make_csrf_token(settings, binding)


def verify_csrf(
    settings: Settings, auth: AdminAuth | None, token: str | None, *, binding: str | None = None
) -> None:
    """Forms posted with a cookie session need the session's CSRF token; bearer calls do not
    (a browser never adds an Authorization header by itself)."""
    if auth is not None and auth.bearer:
        return
    check_csrf_token(settings, token, binding or (auth.csrf_binding if auth else "login"))


def retry_after_headers(error: Exception) -> dict[str, str]:
    if isinstance(error, RateLimitedError):
        return {"Retry-After": str(error.retry_after)}
    return {}
