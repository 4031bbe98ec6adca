"""Issue 12, items 7-8 on the web side: hostile JSON shapes answer 4xx on every public
endpoint, logout revokes the admin session, X-Forwarded-For only from configured proxies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from newsletter.config import get_settings
from newsletter.web import create_app
from newsletter.web.jsonguard import json_depth
from tests.support.server import free_port
from tests.support.web import TestClient
from tests.support.webhooks import public_key_b64, sign

BEARER = {"authorization": "Bearer test-admin-token"}

# Shapes that broke the JSON parser or its callers (5,000 nested "[" answered 500).
HOSTILE = {
    "nested_arrays": b"[" * 5000,
    "nested_objects": b'{"a":' * 5000 + b"1" + b"}" * 5000,
    "closed_nesting": b"[" * 3000 + b"]" * 3000,
    "deep_in_a_field": b'{"email": "zo\xc3\xab@example.com", "name": ' + b"[" * 4000 + b"]" * 4000 + b"}",
    "huge_integer": b'{"email": ' + b"9" * 6000 + b"}",
    "not_utf8": b'{"email": "\xff\xfe"}',
    "lone_surrogate": b'{"email": "\\ud800@example.com"}',
    "nan_and_infinity": b'{"email": NaN, "name": Infinity}',
}

# Every public endpoint that reads a body, and the admin API (with its token).
ENDPOINTS = [
    ("POST", "/subscribe", {}),
    ("POST", "/confirm/resend", {}),
    ("POST", "/unsubscribe/not-a-token", {}),
    ("POST", "/admin/login", {}),
    ("POST", "/admin/issues/2026-W48/test", BEARER),
    ("POST", "/admin/issues/2026-W48/send", BEARER),
    ("PATCH", "/api/v1/issues/2026-W48", BEARER),
    ("POST", "/api/v1/issues/2026-W48/test", BEARER),
    ("POST", "/api/v1/schedule/pause", BEARER),
    ("POST", "/api/v1/subscribers", BEARER),
]


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False, raise_server_exceptions=False) as test_client:
        yield test_client


def test_json_depth_counts_brackets_outside_strings_only() -> None:
    assert json_depth(b"[" * 5000) == 5000
    assert json_depth('{"quote": "[[[[ «ça» — 漢字 ]]]]", "list": [1, [2]]}'.encode()) == 3
    assert json_depth(b'"\\"[[[["') == 0
    assert json_depth(b"42") == 0


@pytest.mark.parametrize("shape", sorted(HOSTILE))
@pytest.mark.parametrize(("method", "path", "headers"), ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
def test_hostile_json_gets_a_4xx_never_a_500(
    client: TestClient, method: str, path: str, headers: dict[str, str], shape: str
) -> None:
    response = client.request(
        method,
        path,
        content=HOSTILE[shape],
        headers={**headers, "content-type": "application/json", "accept": "application/json"},
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text
    assert response.headers["content-type"].startswith("application/json")


def test_deep_json_answers_400_naming_the_limit(client: TestClient) -> None:
    response = client.post("/subscribe", content=b"[" * 5000, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "nested deeper than 32 levels" in response.json()["error"]
    # a typeless body is parsed as JSON by FastAPI: it is checked too
    typeless = client.post("/subscribe", content=b"[" * 5000)
    assert 400 <= typeless.status_code < 500


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_a_validly_signed_hostile_webhook_body_is_never_a_500(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    monkeypatch.setenv("NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY", public_key_b64(key))
    get_settings.cache_clear()
    with TestClient(create_app(get_settings()), raise_server_exceptions=False) as client:
        body = HOSTILE[shape]
        response = client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
        if json_depth(body) > 32:
            assert response.status_code == 400, (response.status_code, response.text[:300])
        else:  # odd but shallow: refused or counted as nothing, never a server error
            assert response.status_code < 500, (response.status_code, response.text[:300])
        fine = json.dumps([{"event": "open", "sg_event_id": "évé-1", "email": "zoë@example.com"}]).encode()
        assert client.post("/webhooks/sendgrid", content=fine, headers=sign(key, fine)).status_code == 200


def _csrf(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, text[:500]
    return found.group(1)


def test_logout_revokes_the_session_cookie(client: TestClient) -> None:
    csrf = _csrf(client.get("/admin").text)
    login = client.post("/admin/login", data={"token": "test-admin-token", "csrf": csrf})
    assert login.status_code == 303
    cookie = client.cookies.get("nl_admin")
    assert cookie
    dashboard = client.get("/admin")
    assert dashboard.status_code == 200
    assert client.post("/admin/logout", data={"csrf": _csrf(dashboard.text)}).status_code == 303
    # The browser dropped it; a copy of the same cookie (another tab, a thief) must not work either.
    client.cookies.clear()
    client.cookies.set("nl_admin", cookie, path="/admin")
    again = client.get("/admin", headers={"accept": "application/json"})
    assert again.status_code == 401 and "signed out" in again.json()["error"]
    # ... while a fresh sign-in works
    client.cookies.clear()
    csrf = _csrf(client.get("/admin").text)
    assert client.post("/admin/login", data={"token": "test-admin-token", "csrf": csrf}).status_code == 303
    assert client.get("/admin").status_code == 200


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _subscribe_statuses(url: str, forwarded: list[str]) -> list[int]:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=1.0)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    return [
        httpx.post(
            f"{url}/subscribe",
            json={"email": f"lea.{n}@bücher.com", "name": "Léa — 李"},
            headers={"x-forwarded-for": ip, "accept": "application/json"},
            timeout=10,
        ).status_code
        for n, ip in enumerate(forwarded)
    ]


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_forwarded_for_counts_only_from_configured_proxies(sqlite_env: dict[str, str], trusted: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        **sqlite_env,
        "NEWSLETTER_SCHEDULER": "off",
        "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "2",
        "NEWSLETTER_TRUSTED_PROXIES": trusted,
    }
    process = _serve(env, port)
    try:
        clients = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        statuses = _subscribe_statuses(f"http://127.0.0.1:{port}", clients)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    assert "Traceback" not in output
    if trusted:
        assert statuses == [202, 202, 202]  # three clients behind the trusted proxy
    else:
        assert statuses == [202, 202, 429]  # one loopback client, whatever the header says
