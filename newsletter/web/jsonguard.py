"""Bounded JSON: the nesting depth of a body is checked before any parser sees it.

Python's json module recurses once per level: 5,000 nested ``[`` (10 KB) end in a
RecursionError, which no handler expects. ``json_depth`` measures the nesting in
one pass at C speed (strings removed by a regex, the brackets kept by
``bytes.translate``), so a hostile shape costs microseconds and answers 400.
"""

from __future__ import annotations

import re
from itertools import accumulate

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.web.security import ErrorFactory

# A JSON string, escapes included; possessive, so a hostile body cannot make it backtrack.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays/objects in ``body`` (0 for a scalar). Brackets inside
    strings do not count; a malformed body gets a number, and the parser refuses it later."""
    brackets = _STRING.sub(b'""', body).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(0, *accumulate(_STEP[byte] for byte in brackets))


def too_deep(body: bytes, limit: int) -> bool:
    return json_depth(body) > limit


def depth_message(limit: int) -> str:
    return f"the JSON body is nested deeper than {limit} levels"


def _is_json(scope: Scope) -> bool:
    """JSON, or no content type at all (FastAPI parses a typeless body as JSON)."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            kind = value.split(b";")[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return True


class JsonDepthMiddleware:
    """Reads JSON bodies (already bounded by SecurityMiddleware, which wraps this one) and
    answers 400 when they nest deeper than ``max_depth``; other bodies pass untouched.
    Webhooks read their own (larger) body and check it in the route."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_depth: int,
        error_response: ErrorFactory,
        exempt_prefixes: tuple[str, ...] = ("/webhooks/",),
    ) -> None:
        self.app = app
        self.max_depth = max_depth
        self.error_response = error_response
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") in ("GET", "HEAD", "OPTIONS")
            or scope.get("path", "").startswith(self.exempt_prefixes)
            or not _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([], message, receive), send)
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if too_deep(body, self.max_depth):
            response = self.error_response(scope, 400, depth_message(self.max_depth))
            await response(scope, _replay([], None, receive), send)
            return
        await self.app(scope, _replay([body], None, receive), send)


def _replay(bodies: list[bytes], first: Message | None, receive: Receive) -> Receive:
    """A receive that gives the buffered body once, then whatever the client sends next."""
    pending: list[Message] = [first] if first is not None else []
    if not pending:
        pending.append({"type": "http.request", "body": b"".join(bodies), "more_body": False})

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
