"""POST /webhooks/sendgrid: signed with a real EC P-256 key, like SendGrid signs it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from sqlalchemy import Engine, func, insert, select

from newsletter import mail
from newsletter.config import Settings, get_settings
from newsletter.db import open_database
from newsletter.delivery import delivery_status, send_issue
from newsletter.delivery.events import SIGNATURE_HEADER, TIMESTAMP_HEADER
from newsletter.tables import DeliveryBatchRow, DeliveryRow, SubscriberRow, SuppressionRow, WebhookEventRow
from newsletter.web.routes import webhooks
from tests.support.delivery_fixtures import add_subscribers, email_hash, make_issue, subscriber_ids
from tests.support.webhooks import public_key_b64, sign


class AsgiClient:
    """Requests straight into the ASGI app through httpx (no sockets, no starlette.testclient)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def __enter__(self) -> AsgiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.post(url, **kwargs)

        return asyncio.run(go())


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def hook_settings(
    env: dict[str, str], key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY", public_key_b64(key))
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_MAX_BODY_BYTES", str(4 * 1024 * 1024))
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def hook_engine(hook_settings: Settings) -> Engine:
    return open_database(hook_settings.database_url)


@pytest.fixture
def client(hook_settings: Settings, hook_engine: Engine) -> Iterator[AsgiClient]:
    app = FastAPI()
    app.state.settings = hook_settings
    app.state.engine = hook_engine
    app.include_router(webhooks.router)
    with AsgiClient(app) as test_client:
        yield test_client


def event(
    name: str, email: str, *, issue_id: str | None = None, subscriber_id: int | None = None, **extra: Any
) -> dict:
    data: dict[str, Any] = {
        "email": email,
        "event": name,
        "timestamp": int(time.time()),
        "sg_event_id": f"{name}-{email}-{extra.pop('n', 0)}",
        "sg_message_id": "msg-1.filter",
        **extra,
    }
    if issue_id is not None:
        data["issue_id"] = issue_id
    if subscriber_id is not None:
        data["subscriber_id"] = str(subscriber_id)
    return data


def _status(engine: Engine, email: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(select(SubscriberRow.status).where(SubscriberRow.email == email)).scalar_one()
        )


def _suppressed(engine: Engine, email: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            select(SuppressionRow.reason).where(SuppressionRow.email_hash == email_hash(email))
        )
        return found.first() is not None


def test_signed_events_suppress_and_replays_change_nothing(
    client: AsgiClient, key: ec.EllipticCurvePrivateKey, hook_engine: Engine
) -> None:
    emails = add_subscribers(hook_engine, 6)
    body = json.dumps(
        [
            event("bounce", emails[0], type="bounce", reason="550 no such user"),
            event("spamreport", emails[1]),
            event("unsubscribe", emails[2]),
            event("group_unsubscribe", emails[3], asm_group_id=1),
            event("bounce", emails[4], type="blocked", reason="temporarily blocked"),
            event("dropped", "nobody-we-know@example.net", reason="Bounced Address"),
        ]
    ).encode()
    response = client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
    assert response.status_code == 200, response.text
    assert response.json()["new"] == 5

    assert _status(hook_engine, emails[0]) == "bounced"
    assert _status(hook_engine, emails[1]) == "complained"
    assert _status(hook_engine, emails[2]) == "unsubscribed"
    assert _status(hook_engine, emails[3]) == "unsubscribed"
    assert _status(hook_engine, emails[4]) == "confirmed"  # a temporary block is not a bad address
    assert _status(hook_engine, emails[5]) == "confirmed"
    for email in emails[:4]:
        assert _suppressed(hook_engine, email)
    assert _suppressed(hook_engine, "nobody-we-know@example.net")
    assert not _suppressed(hook_engine, emails[4])

    # SendGrid retries deliveries: the same events again are harmless.
    again = client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
    assert again.status_code == 200 and again.json()["new"] == 0 and again.json()["duplicates"] == 5
    with hook_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(WebhookEventRow)).scalar_one() == 5
        assert conn.execute(select(func.count()).select_from(SuppressionRow)).scalar_one() == 5


@pytest.mark.parametrize(
    "tamper", ["wrong-key", "changed-body", "unsigned", "garbage-signature", "old-timestamp"]
)
def test_badly_signed_requests_get_403_and_change_nothing(
    client: AsgiClient, key: ec.EllipticCurvePrivateKey, hook_engine: Engine, tamper: str
) -> None:
    emails = add_subscribers(hook_engine, 1)
    body = json.dumps([event("spamreport", emails[0])]).encode()
    headers = sign(key, body)
    if tamper == "wrong-key":
        headers = sign(ec.generate_private_key(ec.SECP256R1()), body)
    elif tamper == "changed-body":
        body = json.dumps([event("unsubscribe", emails[0])]).encode()
    elif tamper == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif tamper == "garbage-signature":
        headers[SIGNATURE_HEADER] = "not base64 at all!"
    elif tamper == "old-timestamp":
        headers[TIMESTAMP_HEADER] = str(int(headers[TIMESTAMP_HEADER]) - 1)
    response = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 403
    assert _status(hook_engine, emails[0]) == "confirmed"
    assert not _suppressed(hook_engine, emails[0])


def test_unsigned_allowed_only_when_configured(
    hook_settings: Settings, hook_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    emails = add_subscribers(hook_engine, 1)
    settings = hook_settings.model_copy(
        update={"sendgrid_webhook_allow_unsigned": True, "sendgrid_webhook_public_key": None}
    )
    app = FastAPI()
    app.state.settings, app.state.engine = settings, hook_engine
    app.include_router(webhooks.router)
    with AsgiClient(app) as client:
        response = client.post("/webhooks/sendgrid", json=[event("unsubscribe", emails[0])])
        assert response.status_code == 200
        assert client.post("/webhooks/sendgrid", content=b"{not json").status_code == 400
    assert _status(hook_engine, emails[0]) == "unsubscribed"


def test_oversized_body_is_refused(client: AsgiClient, key: ec.EllipticCurvePrivateKey) -> None:
    body = b"[" + b" " * (4 * 1024 * 1024) + b"]"
    response = client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
    assert response.status_code == 413


def test_thousands_of_events_count_per_issue_and_resolve_uncertain_batches(
    client: AsgiClient, key: ec.EllipticCurvePrivateKey, hook_settings: Settings, hook_engine: Engine
) -> None:
    issue = make_issue(hook_settings, hook_engine)
    emails = add_subscribers(hook_engine, 1500)
    ids = subscriber_ids(hook_engine)
    # The ledger as a crash leaves it: 1,300 sent, the last batch of 200 in flight.
    with hook_engine.begin() as conn:
        conn.execute(
            insert(DeliveryBatchRow).values(id="batch-1", issue_id=issue, state="sent", recipients=1300)
        )
        conn.execute(
            insert(DeliveryBatchRow).values(id="batch-2", issue_id=issue, state="in_flight", recipients=200)
        )
        conn.execute(
            insert(DeliveryRow),
            [
                {
                    "issue_id": issue,
                    "subscriber_id": ids[email],
                    "state": "in_flight" if index >= 1300 else "sent",
                    "batch_id": "batch-2" if index >= 1300 else "batch-1",
                }
                for index, email in enumerate(emails)
            ],
        )
    assert delivery_status(hook_engine, issue).counts["in_flight"] == 200

    events = []
    for email in emails:
        events.append(event("processed", email, issue_id=issue, subscriber_id=ids[email]))
        events.append(event("delivered", email, issue_id=issue, subscriber_id=ids[email]))
    for email in emails[:300]:
        events.append(event("open", email, issue_id=issue, subscriber_id=ids[email]))
    for email in emails[:120]:
        events.append(
            event("click", email, issue_id=issue, subscriber_id=ids[email], url="https://example.com")
        )
    body = json.dumps(events).encode()
    assert len(events) == 3420
    started = time.monotonic()
    response = client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 20
    assert response.json()["resolved"] == 200

    status = delivery_status(hook_engine, issue)
    assert status.events == {"delivered": 1500, "open": 300, "click": 120}
    assert status.counts["in_flight"] == 0 and status.counts["sent"] == 1500
    assert not status.uncertain
    # replay: counts unchanged
    client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
    assert delivery_status(hook_engine, issue).events == {"delivered": 1500, "open": 300, "click": 120}


def test_a_suppressed_address_is_not_mailed_afterwards(
    client: AsgiClient, key: ec.EllipticCurvePrivateKey, hook_settings: Settings, hook_engine: Engine
) -> None:
    issue = make_issue(hook_settings, hook_engine)
    emails = add_subscribers(hook_engine, 4)
    body = json.dumps([event("spamreport", emails[2])]).encode()
    assert client.post("/webhooks/sendgrid", content=body, headers=sign(key, body)).status_code == 200
    report = send_issue(hook_settings, hook_engine, issue)
    assert report.sent == 3
    outbox = list(hook_settings.outbox_dir.glob("*.eml"))
    assert len(outbox) == 3 and not any(emails[2] in path.name for path in outbox)


def test_a_replayed_unsubscribe_does_not_undo_a_later_resubscription(
    client: AsgiClient, key: ec.EllipticCurvePrivateKey, hook_settings: Settings, hook_engine: Engine
) -> None:
    from newsletter import subscribers
    from newsletter.tokens import make_confirm_token

    address = "ada@example.com"
    body = json.dumps([event("unsubscribe", address)]).encode()
    subscribed = mail.subscribe(hook_settings, hook_engine, address, send=False)
    subscriber = subscribed.subscriber
    mail.confirm(
        hook_settings,
        hook_engine,
        make_confirm_token(hook_settings, subscriber.id, subscriber.email_hash),
        send=False,
    )
    assert client.post("/webhooks/sendgrid", content=body, headers=sign(key, body)).status_code == 200
    assert subscribers.get_subscriber(hook_engine, subscriber.id).status == "unsubscribed"  # type: ignore[union-attr]

    # They change their mind and confirm again...
    time.sleep(1.1)  # a confirm link must be newer than the unsubscribe it overrides
    mail.subscribe(hook_settings, hook_engine, address, send=False)
    mail.confirm(
        hook_settings,
        hook_engine,
        make_confirm_token(hook_settings, subscriber.id, subscriber.email_hash),
        send=False,
    )
    assert subscribers.get_subscriber(hook_engine, subscriber.id).status == "confirmed"  # type: ignore[union-attr]
    # ...then SendGrid retries the old delivery of the old event: it changes nothing.
    replay = client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
    assert replay.status_code == 200 and replay.json()["duplicates"] == 1
    assert subscribers.get_subscriber(hook_engine, subscriber.id).status == "confirmed"  # type: ignore[union-attr]
    assert not subscribers.is_suppressed(hook_engine, address)


def test_webhooks_settling_the_last_uncertain_rows_finish_the_issue(
    client: AsgiClient, key: ec.EllipticCurvePrivateKey, hook_settings: Settings, hook_engine: Engine
) -> None:
    from newsletter.issues import get_issue, mark_sending

    issue = make_issue(hook_settings, hook_engine)
    emails = add_subscribers(hook_engine, 3)
    ids = subscriber_ids(hook_engine)
    mark_sending(hook_engine, issue)
    with hook_engine.begin() as conn:
        conn.execute(insert(DeliveryBatchRow).values(id="b-ok", issue_id=issue, state="sent", recipients=2))
        conn.execute(
            insert(DeliveryBatchRow).values(id="b-??", issue_id=issue, state="in_flight", recipients=1)
        )
        conn.execute(
            insert(DeliveryRow),
            [
                {"issue_id": issue, "subscriber_id": ids[emails[0]], "state": "sent", "batch_id": "b-ok"},
                {"issue_id": issue, "subscriber_id": ids[emails[1]], "state": "sent", "batch_id": "b-ok"},
                {
                    "issue_id": issue,
                    "subscriber_id": ids[emails[2]],
                    "state": "in_flight",
                    "batch_id": "b-??",
                },
            ],
        )
    body = json.dumps([event("processed", emails[2], issue_id=issue, subscriber_id=ids[emails[2]])]).encode()
    response = client.post("/webhooks/sendgrid", content=body, headers=sign(key, body))
    assert response.status_code == 200 and response.json()["resolved"] == 1
    assert get_issue(hook_engine, issue).status == "sent"
