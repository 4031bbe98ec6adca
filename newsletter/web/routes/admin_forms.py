"""What every admin page shares: the sign-in check and CSRF-checked form posts.

Every admin form carries the session's CSRF token (``csrf``); ``checked_form`` refuses a
post without it (400) before any service function runs. The session cookie is also
``SameSite=Strict``, so a cross-site post carries no session in the first place.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from newsletter.web.routes.subscriptions import read_fields
from newsletter.web.security import AdminAuth, authenticate_admin, csrf_token, verify_csrf
from newsletter.web.shared import web


def admin_auth(request: Request) -> AdminAuth:
    w = web(request)
    return authenticate_admin(request, w.settings, w.engine)


def csrf_for(request: Request, auth: AdminAuth) -> str:
    return csrf_token(web(request).settings, auth.csrf_binding)


async def checked_form(request: Request) -> tuple[AdminAuth, dict[str, str]]:
    """Signed in, and the form carries this session's CSRF token: its fields."""
    auth = admin_auth(request)
    fields = await read_fields(request)
    verify_csrf(web(request).settings, auth, fields.get("csrf"))
    return auth, fields


def form_body(fields: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI description of a urlencoded form with these string fields (csrf included)."""
    properties = {name: {"type": "string"} for name in (*fields, "csrf")}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": properties, "required": ["csrf"]}
                }
            },
        }
    }
