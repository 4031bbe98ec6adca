"""The HTTP JSON feed against a real local server (http.server on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from newsletter.config import Settings
from newsletter.errors import SourceError
from newsletter.sources import fetch_feed, read_locations
from newsletter.sources.feed import CACHE_FILE

FEED = {
    "comparisons": [
        {
            "title": "Alpha vs Beta",
            "category": "Coding",
            "published_at": "2026-03-02T09:00:00Z",
            "tools": [
                {
                    "name": "Alpha",
                    "ship_pct": 80,
                    "reviews": [{"persona": "Builder", "score": 90, "verdict": "ship", "quote": "Good."}],
                },
                {"name": "Beta", "ship_pct": 25, "pricing": "Free"},
            ],
        }
    ]
}


@dataclass
class FeedState:
    body: bytes = field(default_factory=lambda: json.dumps(FEED).encode())
    etag: str | None = '"v1"'
    fail_next: int = 0  # answer 500 this many times first
    status: int = 200
    requests: list[dict[str, str]] = field(default_factory=list)
    endless: int = 0  # > 0: answer this many bytes with no Content-Length, counting what left
    sent: int = 0
    finished: threading.Event = field(default_factory=threading.Event)


class FeedServer:
    def __init__(self) -> None:
        self.state = FeedState()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                state.requests.append({k.lower(): v for k, v in self.headers.items()})
                if state.fail_next > 0:
                    state.fail_next -= 1
                    self._send(500, b'{"error": "boom"}')
                    return
                if state.etag and self.headers.get("If-None-Match") == state.etag:
                    self._send(304, b"")
                    return
                if state.endless:
                    self._send_endless()
                    return
                self._send(state.status, state.body)

            def _send_endless(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()  # HTTP/1.0 without a length: the body ends when the connection does
                chunk = b" " * 65536
                try:
                    while state.sent < state.endless:
                        self.wfile.write(chunk)
                        state.sent += len(chunk)
                except OSError:  # the client hung up: what we want to see
                    pass
                finally:
                    state.finished.set()

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                if state.etag:
                    self.send_header("ETag", state.etag)
                if status != 304:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as running:
        yield running


@pytest.fixture
def feed_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", feed_timeout=2)


def test_feed_200(server: FeedServer, feed_settings: Settings) -> None:
    comparisons = fetch_feed(server.url, feed_settings, backoff=0)
    assert [c.title for c in comparisons] == ["Alpha vs Beta"]
    assert comparisons[0].tools[1].pricing == "Free"
    assert len(server.state.requests) == 1
    assert "if-none-match" not in server.state.requests[0]
    cache = json.loads((feed_settings.data_dir / CACHE_FILE).read_text(encoding="utf-8"))
    assert cache[server.url]["etag"] == '"v1"'


def test_feed_retries_a_500_then_succeeds(server: FeedServer, feed_settings: Settings) -> None:
    server.state.fail_next = 1
    comparisons = fetch_feed(server.url, feed_settings, backoff=0)
    assert [c.title for c in comparisons] == ["Alpha vs Beta"]
    assert len(server.state.requests) == 2


def test_feed_gives_up_after_bounded_retries(server: FeedServer, feed_settings: Settings) -> None:
    server.state.fail_next = 100
    with pytest.raises(SourceError, match="500") as info:
        fetch_feed(server.url, feed_settings, backoff=0)
    assert info.value.source == server.url
    assert len(server.state.requests) == 3


def test_feed_304_reuses_the_cached_body(server: FeedServer, feed_settings: Settings) -> None:
    first = fetch_feed(server.url, feed_settings, backoff=0)
    server.state.body = b"this would not parse"  # a 304 must not download it
    second = fetch_feed(server.url, feed_settings, backoff=0)
    assert second == first
    assert server.state.requests[1]["if-none-match"] == '"v1"'
    # A new version of the feed: new ETag, new body.
    server.state.etag = '"v2"'
    server.state.body = json.dumps({**FEED["comparisons"][0], "title": "Alpha vs Gamma"}).encode()
    third = fetch_feed(server.url, feed_settings, backoff=0)
    assert [c.title for c in third] == ["Alpha vs Gamma"]


def test_feed_invalid_json_is_a_source_error(server: FeedServer, feed_settings: Settings) -> None:
    server.state.body = b'{"comparisons": [\n  {"title": oops}\n]}'
    with pytest.raises(SourceError, match="invalid JSON") as info:
        fetch_feed(server.url, feed_settings, backoff=0)
    assert (info.value.source, info.value.line) == (server.url, 2)
    assert not (feed_settings.data_dir / CACHE_FILE).exists()  # nothing cached that does not parse


def test_feed_404_and_unreachable(server: FeedServer, feed_settings: Settings) -> None:
    server.state.status = 404
    server.state.etag = None
    with pytest.raises(SourceError, match="404"):
        fetch_feed(server.url, feed_settings, backoff=0)
    assert len(server.state.requests) == 1  # 4xx is not retried

    with socket_closed_port() as url:
        with pytest.raises(SourceError, match="feed unavailable") as info:
            fetch_feed(url, feed_settings, backoff=0)
        assert info.value.source == url


def test_read_locations_mixes_feeds_and_files(
    server: FeedServer, feed_settings: Settings, tmp_path: Path
) -> None:
    missing = str(tmp_path / "nope.txt")
    report = read_locations([server.url, missing], feed_settings)
    assert [(i.comparison.title, i.origin) for i in report.items] == [("Alpha vs Beta", server.url)]
    assert [e.source for e in report.errors] == [missing]


def test_transport_seam(feed_settings: Settings) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=FEED)

    comparisons = fetch_feed(
        "https://feeds.example.invalid/f.json", feed_settings, transport=httpx.MockTransport(handler)
    )
    assert [c.title for c in comparisons] == ["Alpha vs Beta"] and len(calls) == 1


class socket_closed_port:
    """A loopback URL on a port nobody listens on (bound, then released)."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}/feed.json"

    def __exit__(self, *exc: object) -> None:
        pass


def test_a_feed_over_the_size_limit_is_refused_by_its_length(server: FeedServer, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", feed_timeout=2, max_source_bytes=1024)
    server.state.body = json.dumps({**FEED, "padding": "é" * 2000}).encode()
    with pytest.raises(SourceError, match=r"larger than 1,024 bytes \(NEWSLETTER_MAX_SOURCE_BYTES\)") as info:
        fetch_feed(server.url, settings, backoff=0)
    assert info.value.source == server.url


def test_a_feed_without_a_length_is_refused_while_streaming(server: FeedServer, tmp_path: Path) -> None:
    """A 50 MB answer with no Content-Length: refused after the first chunks, not read whole."""
    settings = Settings(data_dir=tmp_path / "data", feed_timeout=5, max_source_bytes=100_000)
    server.state.endless = 50_000_000
    with pytest.raises(SourceError, match="larger than 100,000 bytes"):
        fetch_feed(server.url, settings, backoff=0)
    assert len(server.state.requests) == 1  # a size refusal is not retried
    assert server.state.finished.wait(timeout=10)
    assert server.state.sent < 20_000_000  # socket buffers hold a few MB at most
