"""The web app in-process (Starlette TestClient): pages, double opt-in, abuse limits, admin."""

from __future__ import annotations

import asyncio
import email
import operator
import re
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
import time_machine
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from newsletter import mail, subscribers
from newsletter.config import Settings
from newsletter.tables import ComparisonRow, IssueRow
from tests.support.web import TestClient


def outbox(settings: Settings) -> list[EmailMessage]:
    folder = Path(settings.outbox_dir)
    files = sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns) if folder.is_dir() else []
    return [email.message_from_bytes(p.read_bytes(), policy=default) for p in files]  # type: ignore[misc]


def link_in(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    found = re.search(rf"http://[^\s/]+(/{kind}/\S+)", str(part.get_content()))
    assert found, part.get_content()
    return found.group(1)


def status_of(engine: Engine, address: str) -> str | None:
    found = subscribers.find_subscriber(engine, address)
    return found.status if found else None


def add_issue(engine: Engine, settings: Settings, issue_id: str, status: str, subject: str) -> None:
    from newsletter.issues.archive import write_issue

    with Session(engine) as session, session.begin():
        session.add(
            IssueRow(
                id=issue_id,
                subject=subject,
                preheader=f"preheader of {issue_id}",
                status=status,
                issue_date=datetime(2026, 11, 23, 9, tzinfo=UTC),
            )
        )
    page = (
        f"<!doctype html><html><body style='color:#123'><h1>{subject}</h1>%%UNSUBSCRIBE_URL%%</body></html>"
    )
    write_issue(
        settings,
        issue_id,
        html=page,
        text=f"{subject}\nUnsubscribe: %%UNSUBSCRIBE_URL_TXT%%\n",
        web_html=page.replace("%%UNSUBSCRIBE_URL%%", ""),
        data={"id": issue_id, "subject": subject, "preheader": f"preheader of {issue_id}"},
    )


SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy", "x-frame-options")


def assert_secure(response: Any) -> None:
    for name in SECURITY_HEADERS:
        assert name in response.headers, name
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "Traceback" not in response.text


# --- pages ------------------------------------------------------------------------------------------


def test_home_has_pitch_form_honeypot_latest_issues_and_headers(
    client: TestClient, db: Engine, cfg: Settings
) -> None:
    add_issue(db, cfg, "2026-W47", "sent", "Cursor vs Copilot: the verdict")
    add_issue(db, cfg, "2026-W48", "draft", "Secret draft subject")
    response = client.get("/")
    assert response.status_code == 200
    assert_secure(response)
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "Weekly AI Tool Verdicts — Get the next comparison in your inbox" in response.text
    assert 'name="email"' in response.text and 'name="website"' in response.text
    assert "Cursor vs Copilot: the verdict" in response.text
    assert "Secret draft subject" not in response.text
    assert 'href="/static/site.css"' in response.text and "http" not in response.text.split("<body>")[0]
    css = client.get("/static/site.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]


def test_archive_lists_sent_issues_and_serves_their_web_version(
    client: TestClient, db: Engine, cfg: Settings
) -> None:
    add_issue(db, cfg, "2026-W47", "sent", "Issue forty-seven")
    add_issue(db, cfg, "2026-W48", "draft", "Draft forty-eight")
    listing = client.get("/issues")
    assert listing.status_code == 200 and "Issue forty-seven" in listing.text
    assert "Draft forty-eight" not in listing.text
    issue = client.get("/issues/2026-W47")
    assert issue.status_code == 200 and "<h1>Issue forty-seven</h1>" in issue.text
    assert "style-src 'self' 'unsafe-inline'" in issue.headers["content-security-policy"]
    assert client.get("/issues/2026-W48").status_code == 404  # drafts are not public
    missing = client.get("/issues/1999-W01")
    assert missing.status_code == 404 and "Traceback" not in missing.text
    assert client.get("/issues/..%2F..%2Fetc").status_code in (404, 422)
    assert (
        client.get("/issues", headers={"accept": "application/json"}).json()["issues"][0]["id"] == "2026-W47"
    )


def test_comparison_page(client: TestClient, db: Engine) -> None:
    data = {
        "title": "Axolotl vs Unsloth",
        "category": "Fine-tuning",
        "tools": [
            {
                "name": "Axolotl",
                "ship_pct": 75,
                "pricing": "Free",
                "reviews": [{"quote": "Solid <b>configs</b>"}],
            },
            {"name": "Unsloth", "ship_pct": 60, "reviews": []},
        ],
    }
    with Session(db) as session, session.begin():
        session.add(
            ComparisonRow(
                slug="axolotl-vs-unsloth",
                title="Axolotl vs Unsloth",
                category="Fine-tuning",
                content_hash="x" * 64,
                data=data,
                published_at=datetime(2026, 11, 20, tzinfo=UTC),
            )
        )
    response = client.get("/comparisons/axolotl-vs-unsloth")
    assert response.status_code == 200
    assert "Axolotl" in response.text and "75% ship" in response.text
    assert "Solid &lt;b&gt;configs&lt;/b&gt;" in response.text  # autoescaped
    assert client.get("/comparisons/nothing-here").status_code == 404


def test_healthz_checks_the_database(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_unknown_page_and_unexpected_errors_show_no_traceback(app: FastAPI, cfg: Settings) -> None:
    def boom() -> None:
        raise ZeroDivisionError("secret internals")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/boom")
        assert response.status_code == 500
        assert_secure(response)
        assert "secret internals" not in response.text and "ZeroDivisionError" not in response.text
        assert "Something went wrong" in response.text
        as_json = test_client.get("/boom", headers={"accept": "application/json"})
        assert as_json.status_code == 500 and as_json.json()["status"] == 500
        not_found = test_client.get("/no/such/page")
        assert not_found.status_code == 404 and "Not found" in not_found.text
        assert test_client.delete("/").status_code == 405


# --- subscribe -----------------------------------------------------------------------------------------


def test_bad_address_gets_422_with_a_message(client: TestClient, cfg: Settings, db: Engine) -> None:
    form = client.post("/subscribe", data={"email": "not-an-address"})
    assert form.status_code == 422
    assert "not a valid email address" in form.text and 'value="not-an-address"' in form.text
    as_json = client.post("/subscribe", json={"email": "a@"})
    assert as_json.status_code == 422 and "not a valid email address" in as_json.json()["error"]
    missing = client.post("/subscribe", json={})
    assert missing.status_code == 422 and "required" in missing.json()["error"]
    wrong_type = client.post("/subscribe", json={"email": ["a@b.com"]})
    assert wrong_type.status_code == 422
    assert subscribers.list_subscribers(db) == [] and outbox(cfg) == []


@pytest.mark.parametrize(
    "payload", ["a@b.com\r\nBcc: x@y.com", "a@b.com\nBcc: x@y.com", "a@b.com%0D%0ABcc:x@y.com"]
)
def test_header_injection_is_rejected(client: TestClient, cfg: Settings, db: Engine, payload: str) -> None:
    for response in (
        client.post("/subscribe", data={"email": payload}),
        client.post("/subscribe", json={"email": payload}),
    ):
        assert 400 <= response.status_code < 500
    assert subscribers.list_subscribers(db) == [] and outbox(cfg) == []


def test_honeypot_looks_accepted_but_stores_and_sends_nothing(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    trapped = client.post("/subscribe", data={"email": "bot@example.com", "website": "http://spam.example"})
    real = client.post("/subscribe", data={"email": "human@example.com"})
    assert trapped.status_code == real.status_code == 200
    assert trapped.text == real.text
    assert status_of(db, "bot@example.com") is None
    assert status_of(db, "human@example.com") == "pending"
    assert [m["To"] for m in outbox(cfg)] == ["human@example.com"]


def test_sixth_subscribe_from_one_ip_in_a_minute_gets_429(client: TestClient, cfg: Settings) -> None:
    assert cfg.subscribe_rate_limit == 5 and cfg.subscribe_rate_window == 60
    for index in range(5):
        assert client.post("/subscribe", data={"email": f"user{index}@example.com"}).status_code == 200
    blocked = client.post("/subscribe", data={"email": "user6@example.com"})
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    assert_secure(blocked)
    as_json = client.post("/subscribe", json={"email": "user7@example.com"})
    assert as_json.status_code == 429 and "too many requests" in as_json.json()["error"]


def test_known_and_unknown_addresses_get_identical_answers(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    mail.add(cfg, db, ["known@example.com"], confirmed=True)
    for index, kind in enumerate(("data", "json")):
        known = client.post("/subscribe", **{kind: {"email": "known@example.com"}})  # type: ignore[arg-type]
        unknown = client.post("/subscribe", **{kind: {"email": f"fresh{index}@example.com"}})  # type: ignore[arg-type]
        assert known.status_code == unknown.status_code
        assert known.content == unknown.content
        drop = {"date", "content-length"}
        assert {k: v for k, v in known.headers.items() if k not in drop} == {
            k: v for k, v in unknown.headers.items() if k not in drop
        }
    # the confirmed address got no mail; each new one got its confirmation
    assert sorted(m["To"] for m in outbox(cfg)) == ["fresh0@example.com", "fresh1@example.com"]
    assert all(m["To"] != "known@example.com" for m in outbox(cfg))


def test_body_size_and_content_type_limits(client: TestClient, cfg: Settings) -> None:
    big = client.post("/subscribe", data={"email": "a@example.com", "name": "x" * (cfg.max_body_bytes + 10)})
    assert big.status_code == 413
    assert_secure(big)
    odd = client.post("/subscribe", content=b"email=a@example.com", headers={"content-type": "text/plain"})
    assert odd.status_code == 415


def test_form_fields_are_read_as_browsers_encode_them(client: TestClient, cfg: Settings, db: Engine) -> None:
    body = "email=zoe%40b%C3%BCcher.de&name=Zo%C3%AB+%C3%9Cnal+%E2%80%94+%E6%9D%8E&website="
    sent = client.post(
        "/subscribe", content=body.encode(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert sent.status_code == 200
    [stored] = subscribers.list_subscribers(db)
    assert (stored.email, stored.name) == ("zoe@bücher.de", "Zoë Ünal — 李")
    too_many = "&".join(f"f{index}=x" for index in range(60))
    not_utf8 = b"email=a%40example.com&name=\xff\xfe"
    for bad in (too_many.encode(), not_utf8):
        refused = client.post(
            "/subscribe", content=bad, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert refused.status_code == 422 and "form is not valid" in refused.text
    assert len(subscribers.list_subscribers(db)) == 1 and len(outbox(cfg)) == 1


def test_work_after_the_answer_waits_for_a_free_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood waits before its answer instead of queueing work without bound behind it,
    a failure frees its slot, and a request that finds no slot in time gets a 503."""
    from fastapi import BackgroundTasks, HTTPException

    from newsletter.web import shared

    async def scenario() -> None:
        gate, calls = threading.Event(), []
        after = shared.AfterAnswer(1)
        first = BackgroundTasks()
        await after.schedule(first, "slow", gate.wait, 5)
        running = asyncio.create_task(first())
        second = BackgroundTasks()
        waiting = asyncio.create_task(after.schedule(second, "next", calls.append, "second"))
        await asyncio.sleep(0.1)
        assert not waiting.done()  # the one slot is taken
        gate.set()
        await running
        await asyncio.wait_for(waiting, 5)
        await second()
        assert calls == ["second"]

        failing = BackgroundTasks()
        await after.schedule(failing, "broken", operator.truediv, 1, 0)
        await failing()  # logged, not raised
        stuck = BackgroundTasks()
        await asyncio.wait_for(after.schedule(stuck, "held", calls.append, "held"), 5)  # slot freed
        monkeypatch.setattr(shared, "AFTER_ANSWER_WAIT", 0.05)
        with pytest.raises(HTTPException) as busy:
            await after.schedule(BackgroundTasks(), "refused", calls.append, "never")
        assert busy.value.status_code == 503 and busy.value.headers == {"Retry-After": "60"}
        await stuck()
        assert calls == ["second", "held"]

    asyncio.run(scenario())


def test_confirm_page_and_welcome_mail(client: TestClient, cfg: Settings, db: Engine) -> None:
    add_issue(db, cfg, "2026-W47", "sent", "Latest sent issue")
    client.post("/subscribe", data={"email": "ada@example.com", "name": "Ada"})
    path = link_in(outbox(cfg)[0], "confirm")
    response = client.get(path)
    assert response.status_code == 200 and "You're subscribed" in response.text
    assert response.headers["cache-control"] == "no-store"
    assert 'href="http://127.0.0.1:8000/issues/2026-W47"' in response.text
    assert status_of(db, "ada@example.com") == "confirmed"
    welcome = outbox(cfg)[-1]
    assert welcome["Subject"].startswith("Welcome")
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = str(welcome.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
    assert "http://127.0.0.1:8000/issues/2026-W47" in text and "/unsubscribe/" in text
    # a second click confirms nothing new and sends no second welcome
    assert client.get(path).status_code == 200
    assert len(outbox(cfg)) == 2


def test_tampered_and_expired_confirm_tokens_get_a_friendly_400(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    with time_machine.travel(datetime.now(UTC) - timedelta(days=8), tick=False):
        client.post("/subscribe", data={"email": "late@example.com"})
    path = link_in(outbox(cfg)[0], "confirm")
    token = path.rsplit("/", 1)[1]
    tampered = client.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"))
    assert tampered.status_code == 400
    assert "not valid" in tampered.text and 'action="/subscribe"' in tampered.text
    assert_secure(tampered)
    assert client.get("/confirm/garbage").status_code == 400
    expired = client.get(path)
    assert expired.status_code == 400
    assert "expired" in expired.text and 'action="/confirm/resend"' in expired.text and token in expired.text
    assert client.get(path, headers={"accept": "application/json"}).json()["expired"] is True
    assert status_of(db, "late@example.com") == "pending"
    # the page's button sends a fresh link that works
    resent = client.post("/confirm/resend", data={"token": token})
    assert resent.status_code == 200
    assert len(outbox(cfg)) == 2
    assert client.get(link_in(outbox(cfg)[-1], "confirm")).status_code == 200
    assert status_of(db, "late@example.com") == "confirmed"
    assert client.post("/confirm/resend", data={"token": "forged"}).status_code == 400


# --- unsubscribe -------------------------------------------------------------------------------------------


def _confirmed(client: TestClient, cfg: Settings, address: str) -> str:
    client.post("/subscribe", data={"email": address})
    client.get(link_in(outbox(cfg)[-1], "confirm"))
    return link_in(outbox(cfg)[-1], "unsubscribe")


def test_get_unsubscribe_shows_a_button_and_changes_nothing(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    path = _confirmed(client, cfg, "bea@example.com")
    for _ in range(3):  # link scanners follow links
        page = client.get(path)
        assert page.status_code == 200
        assert f'<form method="post" action="{path}">' in page.text and "Unsubscribe</button>" in page.text
    assert status_of(db, "bea@example.com") == "confirmed"
    clicked = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert clicked.status_code == 200 and "You're unsubscribed" in clicked.text
    assert status_of(db, "bea@example.com") == "unsubscribed"
    assert "already unsubscribed" in client.get(path).text


def test_one_click_post_is_rfc_8058(cfg: Settings, db: Engine, app: FastAPI) -> None:
    with TestClient(app, follow_redirects=False) as setup:
        path = _confirmed(setup, cfg, "cleo@example.com")
    # a mail provider's POST: no cookie, no login, the exact RFC 8058 body
    with TestClient(app, follow_redirects=False) as provider:
        response = provider.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200
        assert "set-cookie" not in response.headers and "location" not in response.headers
        assert status_of(db, "cleo@example.com") == "unsubscribed"
        assert subscribers.is_suppressed(db, "cleo@example.com")
        again = provider.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert again.status_code == 200  # idempotent
        assert provider.post(path[:-2] + "xx").status_code == 400
        assert provider.get("/unsubscribe/forged-token").status_code == 400


# --- admin ---------------------------------------------------------------------------------------


def test_admin_needs_the_token(client: TestClient) -> None:
    page = client.get("/admin")
    assert page.status_code == 401 and 'action="/admin/login"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert client.get("/admin", headers={"accept": "application/json"}).status_code == 401
    assert client.get("/admin", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/admin/issues/2026-W47/preview").status_code == 401
    client.cookies.set("nl_admin", "forged")
    assert client.get("/admin").status_code == 401
    client.cookies.clear()
    assert client.post("/admin/issues/2026-W47/send", data={"confirm": "yes"}).status_code == 401


def test_admin_bearer_shows_counts_and_issues(client: TestClient, cfg: Settings, db: Engine) -> None:
    mail.add(cfg, db, ["a@example.com", "b@example.com"], confirmed=True)
    mail.add(cfg, db, ["c@example.com"], send=False)
    add_issue(db, cfg, "2026-W48", "draft", "Draft for the editor")
    bearer = {"authorization": "Bearer test-admin-token"}
    page = client.get("/admin", headers=bearer)
    assert page.status_code == 200
    assert "Draft for the editor" in page.text and "<b>2</b><span>confirmed</span>" in page.text
    data = client.get("/admin", headers={**bearer, "accept": "application/json"}).json()
    assert data["subscribers"]["confirmed"] == 2 and data["subscribers"]["pending"] == 1
    preview = client.get("/admin/issues/2026-W48/preview", headers=bearer)
    assert preview.status_code == 200 and "Draft for the editor" in preview.text
    assert "frame-ancestors 'self'" in preview.headers["content-security-policy"]
    detail = client.get("/admin/issues/2026-W48", headers=bearer)
    assert '<iframe class="preview"' in detail.text and "sandbox" in detail.text


def _login(client: TestClient) -> None:
    page = client.get("/admin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    wrong = client.post("/admin/login", data={"token": "nope", "csrf": csrf})
    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    assert client.post("/admin/login", data={"token": "test-admin-token"}).status_code == 400  # no CSRF token
    response = client.post("/admin/login", data={"token": "test-admin-token", "csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie


def test_admin_login_cookie_csrf_test_send_and_send(
    client: TestClient, cfg: Settings, db: Engine, app: FastAPI
) -> None:
    mail.add(cfg, db, ["reader@example.com"], confirmed=True)
    add_issue(db, cfg, "2026-W48", "draft", "Ready to go")
    _login(client)
    dashboard = client.get("/admin")
    assert dashboard.status_code == 200 and "Ready to go" in dashboard.text
    detail = client.get("/admin/issues/2026-W48")
    csrf = re.search(r'name="csrf" value="([^"]+)"', detail.text).group(1)  # type: ignore[union-attr]

    # CSRF: a form without (or with a forged) token does nothing
    assert client.post("/admin/issues/2026-W48/test", data={"addresses": "ed@example.com"}).status_code == 400
    forged = client.post("/admin/issues/2026-W48/test", data={"addresses": "ed@example.com", "csrf": "x.y.z"})
    assert forged.status_code == 400
    assert outbox(cfg) == []

    injected = client.post(
        "/admin/issues/2026-W48/test", data={"addresses": "ed@example.com\r\nBcc: x@y.com", "csrf": csrf}
    )
    assert injected.status_code == 422
    sent = client.post(
        "/admin/issues/2026-W48/test", data={"addresses": "ed@example.com, Al@Example.com", "csrf": csrf}
    )
    assert sent.status_code == 200, sent.text
    tests = outbox(cfg)
    assert sorted(m["To"] for m in tests) == ["Al@example.com", "ed@example.com"]
    assert all(m["Subject"].startswith("[TEST]") for m in tests)

    # the send asks for confirmation first
    ask = client.get("/admin/issues/2026-W48/send")
    assert ask.status_code == 200 and "1</strong> confirmed subscriber" in ask.text
    unconfirmed = client.post("/admin/issues/2026-W48/send", data={"csrf": csrf})
    assert unconfirmed.status_code == 422
    started = client.post("/admin/issues/2026-W48/send", data={"csrf": csrf, "confirm": "yes"})
    assert started.status_code == 202, started.text
    assert "The send has started." in started.text
    from newsletter.web.routes.admin import admin_sends

    assert admin_sends(app).wait("2026-W48", timeout=30)
    assert "reader@example.com" in [m["To"] for m in outbox(cfg)]

    logout = client.post("/admin/logout", data={"csrf": csrf})
    assert logout.status_code == 303
    client.cookies.clear()
    assert client.get("/admin").status_code == 401


def test_app_templates_need_no_inline_styles() -> None:
    """The app's CSP is style-src 'self': an inline style attribute would be silently ignored."""
    root = Path(__file__).resolve().parent.parent / "templates" / "web"
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.html")
        if "mail" not in path.parts and 'style="' in path.read_text(encoding="utf-8")
    ]
    assert not offenders
