"""What every admin page shares, as FastAPI dependencies: the sign-in check (``Admin``), the
session's CSRF token for the page's forms (``AdminCsrf``) and CSRF-checked form posts
(``CheckedForm``).

``Admin`` raises AuthError without the admin token or a valid session cookie: the app answers
it with the login page (401) on /admin, or a JSON 401 for a client that asks for JSON.
Every admin form carries the session's CSRF token (``csrf``); ``CheckedForm`` refuses a
post without it (400) before any service function runs. The session cookie is also
``SameSite=Strict``, so a cross-site post carries no session in the first place.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import Request

from newsletter.web.security import AdminAuth, authenticate_admin, csrf_token, verify_csrf
from newsletter.web.shared import AppSettings, read_fields, web


def signed_in(request: Request) -> AdminAuth:
    """How the admin got in (session cookie or bearer token); AuthError when not."""
    w = web(request)
    return authenticate_admin(request, w.settings, w.engine)


Admin = Annotated[AdminAuth, Depends(signed_in)]


async def admin_csrf(auth: Admin, settings: AppSettings) -> str:
    """The CSRF token the page's forms carry (bound to this session)."""
    return csrf_token(settings, auth.csrf_binding)


AdminCsrf = Annotated[str, Depends(admin_csrf)]


async def checked_form(request: Request, auth: Admin, settings: AppSettings) -> dict[str, str]:
    """Signed in, and the form carries this session's CSRF token: its fields."""
    fields = await read_fields(request)
    verify_csrf(settings, auth, fields.get("csrf"))
    return fields


CheckedForm = Annotated[dict[str, str], Depends(checked_form)]


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
