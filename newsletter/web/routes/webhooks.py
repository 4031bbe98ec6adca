"""POST /webhooks/sendgrid: provider events -> suppression and per-issue counts.

The body is read up to WEBHOOK_MAX_BODY_BYTES (413 beyond), the ECDSA
signature is checked over the raw bytes (403 when missing or wrong, unless
SENDGRID_WEBHOOK_ALLOW_UNSIGNED), then the events are applied in a worker
thread. Replays are harmless: every effect is idempotent per sg_event_id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from newsletter.config import Settings
from newsletter.delivery import events
from newsletter.runtime import settings_and_engine
from newsletter.web.jsonguard import depth_message, too_deep

log = logging.getLogger(__name__)

router = APIRouter()


def _settings_and_engine(request: Request) -> tuple[Settings, Any]:
    state = request.app.state
    settings = getattr(state, "settings", None)
    engine = getattr(state, "engine", None)
    if settings is None or engine is None:
        settings, engine = settings_and_engine()
    return settings, engine


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": detail}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/sendgrid")
async def sendgrid_events(request: Request) -> JSONResponse:
    settings, engine = _settings_and_engine(request)
    body = await _read_body(request, settings.webhook_max_body_bytes)
    if body is None:
        return _problem(413, f"body larger than {settings.webhook_max_body_bytes} bytes")
    signature = request.headers.get(events.SIGNATURE_HEADER)
    timestamp = request.headers.get(events.TIMESTAMP_HEADER)
    key_text = settings.sendgrid_webhook_public_key
    if signature or timestamp or not settings.sendgrid_webhook_allow_unsigned:
        if not key_text:
            log.warning("sendgrid webhook refused: NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
            return _problem(403, "webhook signing key not configured")
        if not signature or not timestamp:
            return _problem(403, "missing signature")
        if not events.verify_signature(events.load_public_key(key_text), body, signature, timestamp):
            log.warning("sendgrid webhook refused: bad signature")
            return _problem(403, "bad signature")
    if too_deep(body, settings.max_json_depth):
        return _problem(400, depth_message(settings.max_json_depth))
    try:
        items = events.parse_events(body)
    except ValueError as exc:
        return _problem(400, str(exc))
    result = await run_in_threadpool(events.handle_events, engine, items)
    return JSONResponse(
        {
            "received": result.received,
            "new": result.new,
            "duplicates": result.duplicates,
            "suppressed": result.suppressed,
            "resolved": result.resolved,
        }
    )
