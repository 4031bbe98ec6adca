"""An HTTP(S) JSON feed of comparisons (the structured schema, served by a URL).

* every request has a timeout (``NEWSLETTER_FEED_TIMEOUT``);
* connection failures are retried by httpx's transport, 5xx answers, timeouts and
  dropped connections by a small bounded loop with exponential backoff;
* the body is read up to ``NEWSLETTER_MAX_SOURCE_BYTES`` and refused beyond it, by
  Content-Length and while streaming;
* conditional GET: the ETag and the body of the last 200 are kept in
  ``DATA_DIR/feed-cache.json`` (keyed by URL); the next fetch sends
  ``If-None-Match`` and a 304 reuses the cached body.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from newsletter.backoff import backoff_delay
from newsletter.config import Settings
from newsletter.errors import SourceError
from newsletter.files import write_atomic
from newsletter.models import Comparison
from newsletter.sources.structured import parse_json

log = logging.getLogger(__name__)

CACHE_FILE = "feed-cache.json"
ATTEMPTS = 3  # requests per fetch, for 5xx answers and broken connections
CONNECT_RETRIES = 2  # extra connection attempts inside the transport
BACKOFF = 0.25  # seconds, doubled after each failed attempt
USER_AGENT = "weekly-ai-tool-verdicts-newsletter/1"


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def fetch_feed(
    url: str,
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    backoff: float = BACKOFF,
) -> list[Comparison]:
    """Fetch and parse a JSON feed; SourceError (naming the URL) when it cannot be read."""
    cache = FeedCache(settings.data_dir / CACHE_FILE)
    cached = cache.get(url)
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if cached and cached.get("etag") and isinstance(cached.get("body"), str):
        headers["If-None-Match"] = str(cached["etag"])
    response = _get(url, headers, settings.feed_timeout, transport, backoff, settings.max_source_bytes)
    if response.status_code == 304:
        if not cached or not isinstance(cached.get("body"), str):
            raise SourceError("304 Not Modified but nothing cached for this feed", source=url)
        log.info("feed %s not modified (etag %s)", url, cached.get("etag"))
        body = str(cached["body"])
    elif response.status_code == 200:
        body = _text(response, url)
        comparisons = parse_json(body, source=url)  # only cache what parses
        etag = response.headers.get("ETag")
        if etag:
            cache.put(url, {"etag": etag, "body": body})
        return comparisons
    else:
        raise SourceError(f"HTTP {response.status_code} {response.reason_phrase}".strip(), source=url)
    return parse_json(body, source=url)


@dataclass(frozen=True)
class _Answer:
    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes
    encoding: str | None


def _get(
    url: str,
    headers: dict[str, str],
    timeout: float,
    transport: httpx.BaseTransport | None,
    backoff: float,
    max_bytes: int,
) -> _Answer:
    transport = transport or httpx.HTTPTransport(retries=CONNECT_RETRIES)
    last_problem = "no attempt made"
    with httpx.Client(transport=transport, timeout=timeout, follow_redirects=True) as client:
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(backoff_delay(attempt - 1, backoff, cap=math.inf, jitter=False))
            try:
                with client.stream("GET", url, headers=headers) as response:
                    if response.status_code >= 500:
                        last_problem = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                        log.warning("feed %s attempt %d failed: %s", url, attempt + 1, last_problem)
                        continue
                    content = _read_limited(response, url, max_bytes)
                    return _Answer(
                        response.status_code,
                        response.reason_phrase,
                        response.headers,
                        content,
                        response.encoding,
                    )
            except httpx.InvalidURL as exc:
                raise SourceError(f"invalid feed URL: {exc}", source=url) from None
            except httpx.TransportError as exc:  # connect/read timeouts, refused, reset
                last_problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("feed %s attempt %d failed: %s", url, attempt + 1, last_problem)
                continue
    raise SourceError(f"feed unavailable after {ATTEMPTS} attempts ({last_problem})", source=url)


def _read_limited(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    """The body, refused as soon as it passes ``max_bytes`` (never held whole in memory)."""
    too_large = SourceError(
        f"feed body larger than {max_bytes:,} bytes (NEWSLETTER_MAX_SOURCE_BYTES): not read", source=url
    )
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _text(response: _Answer, url: str) -> str:
    try:
        return response.content.decode(response.encoding or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise SourceError(f"feed body is not text: {exc}", source=url) from None


class FeedCache:
    """ETag + body per feed URL in one small JSON file, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, url: str) -> dict[str, Any] | None:
        entry = self._load().get(url)
        return entry if isinstance(entry, dict) else None

    def put(self, url: str, entry: dict[str, Any]) -> None:
        data = self._load()
        data[url] = entry
        try:
            write_atomic(self.path, json.dumps(data, ensure_ascii=False))
        except OSError as exc:  # a cache that cannot be written only costs a full download
            log.warning("cannot write feed cache %s: %s", self.path, exc)
