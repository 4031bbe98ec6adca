"""The admin's send button: a background send with live progress, its outcome and the ledger.

In-process (Starlette TestClient), signed in with the cookie and CSRF like an editor;
the outbox provider for a send that works, SendGrid's look-alike for one it refuses.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, insert

from newsletter.config import Settings, get_settings
from newsletter.db import open_database
from newsletter.delivery import ledger
from newsletter.delivery.message_types import Content, PushResult, Recipient
from newsletter.delivery.messengers.outbox import OutboxMessenger
from newsletter.errors import ProviderRejectedError, ProviderUnavailableError
from newsletter.tables import WebhookEventRow
from newsletter.web import create_app
from newsletter.web.routes.admin import SendSnapshot, admin_sends, describe_send_error
from tests.support.delivery_fixtures import ISSUE_ID, add_subscribers, make_issue
from tests.support.fake_sendgrid import API_KEY, FakeSendGrid
from tests.support.web import TestClient

REFRESH = '<meta http-equiv="refresh" content="2">'
PAGE = f"/admin/issues/{ISSUE_ID}"
JSON = {"accept": "application/json"}


def _client(settings: Settings) -> Iterator[tuple[FastAPI, TestClient]]:
    app = create_app(settings)
    with TestClient(app, follow_redirects=False) as client:
        yield app, client
        # never leave a send thread behind (it would write into the next test's tmp dir)
        admin_sends(app).wait(ISSUE_ID, timeout=30)


@pytest.fixture
def outbox_app(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FastAPI, TestClient]]:
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "10")
    get_settings.cache_clear()
    yield from _client(get_settings())


@pytest.fixture
def sendgrid_app(
    sqlite_env: dict[str, str], fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FastAPI, TestClient]]:
    for key, value in {
        "NEWSLETTER_PROVIDER": "sendgrid",
        "NEWSLETTER_SENDGRID_API_KEY": API_KEY,
        "NEWSLETTER_SENDGRID_API_URL": fake.url,
        "NEWSLETTER_SENDGRID_TIMEOUT": "10",
        "NEWSLETTER_RETRY_BACKOFF": "0.05",
        "NEWSLETTER_MAX_RETRIES": "1",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield from _client(get_settings())


def _engine() -> Engine:
    return open_database(get_settings().database_url)


def _sign_in(client: TestClient) -> str:
    """Cookie session as an editor gets it; the CSRF token of its forms."""
    login = client.get("/admin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert csrf is not None
    signed_in = client.post("/admin/login", data={"token": "test-admin-token", "csrf": csrf.group(1)})
    assert signed_in.status_code == 303
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(PAGE).text)
    assert found is not None
    return found.group(1)


def _until(check: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def _send(client: TestClient, csrf: str) -> Any:
    return client.post(f"{PAGE}/send", data={"csrf": csrf, "confirm": "yes"})


def _wait_finished(app: FastAPI) -> SendSnapshot:
    _until(lambda: not admin_sends(app).running(ISSUE_ID), what="the admin send to end")
    snapshot = admin_sends(app).get(ISSUE_ID)
    assert snapshot is not None
    return snapshot


def _outbox_files() -> list[Path]:
    folder = Path(get_settings().outbox_dir)
    return sorted(folder.glob("*.eml")) if folder.is_dir() else []


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Holds the outbox's second batch until set: the send is then running, one batch done."""
    release = threading.Event()
    real_push = OutboxMessenger.push
    calls = {"n": 0}

    def push(self: OutboxMessenger, content: Content, recipients: Sequence[Recipient]) -> PushResult:
        calls["n"] += 1
        if calls["n"] == 2:
            release.wait(timeout=20)
        return real_push(self, content, recipients)

    monkeypatch.setattr(OutboxMessenger, "push", push)
    yield release
    release.set()  # a failed assertion must not leave the send waiting


# --- a send that works: live progress while it runs, counts after ---------------------------------


def test_send_shows_live_progress_then_the_ledger_counts(
    outbox_app: tuple[FastAPI, TestClient], gate: threading.Event
) -> None:
    app, client = outbox_app
    engine = _engine()
    make_issue(get_settings(), engine)
    add_subscribers(engine, 30)
    csrf = _sign_in(client)

    before = client.get(PAGE)
    assert REFRESH not in before.text and "sending now" not in before.text

    started = _send(client, csrf)
    assert started.status_code == 202 and "The send has started." in started.text
    registry = admin_sends(app)
    _until(lambda: (s := registry.get(ISSUE_ID)) is not None and s.sent == 10, what="the first batch")

    # running: the page refreshes itself and shows sent / total, rate, ETA and failures
    running = client.get(PAGE)
    assert running.status_code == 200
    assert running.text.count(REFRESH) == 1 and "sending now" in running.text
    assert "<b>10 / 30</b><span>sent / total</span>" in running.text
    assert "recipients/s</b><span>rate</span>" in running.text
    assert "<span>ETA</span>" in running.text
    assert "<b>0 failed</b><span>failures</span>" in running.text
    assert '<progress max="30" value="10">' in running.text
    assert "Already sending" in running.text and f'href="{PAGE}/send"' not in running.text
    live = client.get(PAGE, headers=JSON).json()
    assert live["send"]["state"] == "running"
    assert (live["send"]["sent"], live["send"]["total"]) == (10, 30)
    assert live["send"]["eta_seconds"] is not None and live["send"]["rate"] >= 0
    assert live["ledger"]["counts"]["sent"] == 10 and live["ledger"]["remaining"] == 20
    # the batch held at the gate is in flight: listed with its worker
    assert live["ledger"]["uncertain_batches"][0]["recipients"] == 10

    # a second click starts nothing
    again = _send(client, csrf)
    assert again.status_code == 202 and "Already sending." in again.text
    assert _send(client, csrf).status_code == 202
    json_again = client.post(f"{PAGE}/send", data={"csrf": csrf, "confirm": "yes"}, headers=JSON)
    assert json_again.status_code == 202 and json_again.json()["started"] is False
    threads = [t for t in threading.enumerate() if t.name == f"admin-send-{ISSUE_ID}"]
    assert len(threads) == 1
    assert "Already sending" in client.get(f"{PAGE}/send").text

    gate.set()
    done = _wait_finished(app)
    assert done.state == "finished" and (done.sent, done.total, done.failed) == (30, 30, 0)
    assert done.batches == 3 and done.remaining == 0 and done.error is None

    final = client.get(PAGE)
    assert REFRESH not in final.text and "sending now" not in final.text
    assert "Send finished" in final.text
    assert "<b>30 / 30</b><span>sent / total</span>" in final.text
    assert "<b>30</b><span>sent</span>" in final.text and "<b>0</b><span>remaining</span>" in final.text
    assert "<b>0</b><span>delivered</span>" in final.text
    assert "Batches in flight" not in final.text
    assert '<span class="badge sent">sent</span>' in final.text
    data = client.get(PAGE, headers=JSON).json()
    assert data["status"] == "sent" and data["deliveries"]["sent"] == 30
    assert data["send"]["state"] == "finished" and data["send"]["eta_seconds"] is None
    assert data["ledger"]["events"] == {"delivered": 0, "open": 0, "click": 0}
    assert len(_outbox_files()) == 30


def test_send_of_an_issue_already_sent_mails_nobody(outbox_app: tuple[FastAPI, TestClient]) -> None:
    app, client = outbox_app
    engine = _engine()
    make_issue(get_settings(), engine)
    add_subscribers(engine, 3)
    csrf = _sign_in(client)
    assert _send(client, csrf).status_code == 202
    assert _wait_finished(app).sent == 3
    # a new send after the first one ended is allowed; the ledger makes it a no-op
    assert "The send has started." in _send(client, csrf).text
    again = _wait_finished(app)
    assert again.state == "finished" and again.already_sent and again.sent == 0
    assert "Already sent" in client.get(PAGE).text
    assert len(_outbox_files()) == 3


# --- a send the provider refuses: the editor sees why --------------------------------------------


def test_provider_refusal_is_shown_with_its_field(
    sendgrid_app: tuple[FastAPI, TestClient], fake: FakeSendGrid
) -> None:
    app, client = sendgrid_app
    engine = _engine()
    make_issue(get_settings(), engine)
    add_subscribers(engine, 30)
    fake.fail_always(
        400, message="The from email does not contain a valid address <script>x</script>.", field="from.email"
    )
    csrf = _sign_in(client)
    assert _send(client, csrf).status_code == 202
    done = _wait_finished(app)
    assert done.state == "failed" and done.error_field == "from.email" and done.error_status == 400

    failed = client.get(PAGE)
    assert REFRESH not in failed.text and "sending now" not in failed.text
    assert "The send stopped" in failed.text
    assert (
        '<p class="error" role="alert">SendGrid refused the request: field &#39;from.email&#39;: '
        "The from email does not contain a valid address &lt;script&gt;x&lt;/script&gt;.</p>"
    ) in failed.text
    assert "<script>x" not in failed.text
    # nothing was sent: the batch went back to pending, and the editor may send again
    assert "<b>30</b><span>pending</span>" in failed.text and "<b>30</b><span>remaining</span>" in failed.text
    assert f'href="{PAGE}/send">Send again…</a>' in failed.text
    data = client.get(PAGE, headers=JSON).json()
    assert data["send"]["state"] == "failed" and data["send"]["error_field"] == "from.email"
    assert data["send"]["error"].startswith("SendGrid refused the request: field 'from.email': ")
    assert data["ledger"]["counts"]["sent"] == 0 and fake.accepted_recipients == 0

    # fixed at the provider: the next click sends everyone, once
    fake.clear_failures()
    assert "The send has started." in _send(client, csrf).text
    done = _wait_finished(app)
    assert done.state == "finished" and done.sent == 30 and done.error is None
    assert sorted(fake.address_counts().values()) == [1] * 30
    assert 'role="alert"' not in client.get(PAGE).text


# --- what the ledger alone says: in-flight batches and webhook events -------------------------------


def test_issue_page_lists_uncertain_batches_and_event_counts(outbox_app: tuple[FastAPI, TestClient]) -> None:
    _app, client = outbox_app
    engine = _engine()
    make_issue(get_settings(), engine)
    add_subscribers(engine, 5)
    ledger.materialize_page(engine, ISSUE_ID, 0, 100)
    claim = ledger.claim_batch(engine, ISSUE_ID, 3, worker="mailer-2:4242", provider="sendgrid")
    assert claim is not None
    ledger.note_uncertain(engine, claim.batch_id, "no answer after the request was sent: timed out")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(WebhookEventRow),
            [
                {
                    "event_id": uuid.uuid4().hex,
                    "event": event,
                    "issue_id": ISSUE_ID,
                    "subscriber_id": 1,
                    "received_at": now,
                }
                for event in ["delivered"] * 4 + ["open"] * 2 + ["click"]
            ],
        )
    _sign_in(client)
    page = client.get(PAGE)
    assert page.status_code == 200 and REFRESH not in page.text
    assert "Batches in flight" in page.text and "1 batch with 3 recipients" in page.text
    assert f"<td><code>{claim.batch_id[:8]}</code></td>" in page.text
    assert "<td>mailer-2:4242</td>" in page.text and "<td>3</td>" in page.text
    assert "<b>3</b><span>in_flight</span>" in page.text and "<b>5</b><span>remaining</span>" in page.text
    assert "<b>4</b><span>delivered</span>" in page.text
    assert "<b>2</b><span>open</span>" in page.text and "<b>1</b><span>click</span>" in page.text
    data = client.get(PAGE, headers=JSON).json()["ledger"]
    assert data["events"] == {"delivered": 4, "open": 2, "click": 1}
    [batch] = data["uncertain_batches"]
    assert batch["batch_id"] == claim.batch_id and batch["worker"] == "mailer-2:4242"
    assert batch["recipients"] == 3 and batch["error"].startswith("uncertain: no answer")


# --- the pieces -------------------------------------------------------------------------------------


def test_error_lines_name_the_provider_and_field() -> None:
    rejected = ProviderRejectedError("bad address", provider="sendgrid", status=400, field="from.email")
    assert describe_send_error(rejected) == "SendGrid refused the request: field 'from.email': bad address"
    assert describe_send_error(ProviderRejectedError("no", provider="sendgrid", status=401)) == (
        "SendGrid refused the request: no"
    )
    unavailable = ProviderUnavailableError("503 (gave up after 2 attempts)", provider="sendgrid", status=503)
    assert describe_send_error(unavailable) == "SendGrid is unavailable: 503 (gave up after 2 attempts)"
    assert "RuntimeError" in describe_send_error(RuntimeError("secret internals"))
    assert "secret internals" not in describe_send_error(RuntimeError("secret internals"))


def test_snapshot_rate_and_eta() -> None:
    start = datetime.now(UTC)
    snap = SendSnapshot(
        issue_id="x",
        state="running",
        started_at=start,
        finished_at=None,
        total=1000,
        sent=240,
        failed=10,
        suppressed=0,
        uncertain=0,
        batches=5,
        elapsed=10.0,
    )
    assert snap.done == 250 and snap.rate == 24.0 and snap.rate_text == "24 recipients/s"
    assert snap.eta_seconds == pytest.approx(30.0) and snap.eta_text == "0:00:30"
    assert snap.failures == 10
    counting = SendSnapshot(
        issue_id="x",
        state="running",
        started_at=start,
        finished_at=None,
        total=None,
        sent=0,
        failed=0,
        suppressed=0,
        uncertain=0,
        batches=0,
        elapsed=0.5,
    )
    assert counting.eta_seconds is None and counting.eta_text == "-:--:--" and counting.progress_max == 1
