"""SendGrid Event Webhook: signature check, suppression, per-issue counts.

* The signature is ECDSA P-256 over ``timestamp + raw body`` (SHA-256), base64
  in ``X-Twilio-Email-Event-Webhook-Signature``; the key is the base64 DER
  public key SendGrid shows (a PEM block is accepted too).
* Idempotent per ``sg_event_id``: every effect is conditional (status changes
  only from confirmed/pending, suppression ON CONFLICT DO NOTHING, in_flight ->
  sent only once), and counted events are stored once in ``webhook_events``.
* ``bounce`` (not ``blocked``) and ``dropped`` -> bounced, ``spamreport`` ->
  complained, ``unsubscribe``/``group_unsubscribe`` -> unsubscribed; each also
  adds the address to the suppression list. Any event carrying our
  ``custom_args`` proves SendGrid took the message: an uncertain ``in_flight``
  row becomes ``sent``. ``delivered``, ``open``, ``click`` are counted per issue.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key
from sqlalchemy import Engine, Table, and_, or_, select

from newsletter.db import insert_or_ignore
from newsletter.delivery import ledger
from newsletter.errors import ConfigError, NewsletterError
from newsletter.issues import get_issue, mark_sent
from newsletter.states import IssueStatus
from newsletter.subscribers import email_hash
from newsletter.subscribers.lifecycle import apply_provider_report
from newsletter.tables import SubscriberRow, WebhookEventRow, utcnow

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

# event -> (the subscriber lifecycle's provider-report kind, suppression reason)
SUPPRESSING = {
    "bounce": ("bounce", "bounce"),
    "dropped": ("bounce", "dropped"),
    "spamreport": ("complaint", "complaint"),
    "unsubscribe": ("unsubscribe", "unsubscribe"),
    "group_unsubscribe": ("unsubscribe", "unsubscribe"),
}
COUNTED = ("delivered", "open", "click")
STORED = frozenset((*COUNTED, *SUPPRESSING))
# Events that prove SendGrid received the message (an uncertain batch did go out).
RECEIVED = frozenset(
    ("processed", "delivered", "deferred", "bounce", "dropped", "open", "click", "spamreport")
)

S = cast(Table, SubscriberRow.__table__)
EV = cast(Table, WebhookEventRow.__table__)


# --- signatures -----------------------------------------------------------------------------


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, TypeError) as exc:
        raise ConfigError("NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not an EC public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError("NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY is not an EC public key")
    return key


def verify_signature(
    public_key: ec.EllipticCurvePublicKey, body: bytes, signature: str, timestamp: str
) -> bool:
    """SendGrid's scheme: ECDSA/SHA-256 over timestamp + payload, signature base64 (DER)."""
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
        public_key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


# --- handling events ------------------------------------------------------------------------


@dataclass
class EventsResult:
    received: int = 0
    new: int = 0
    duplicates: int = 0
    ignored: int = 0
    suppressed: int = 0
    resolved: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def parse_events(body: bytes) -> list[dict[str, Any]]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ValueError("expected a JSON array of event objects")
    return data


def _event_id(event: Mapping[str, Any]) -> str:
    value = event.get("sg_event_id")
    if isinstance(value, str) and value:
        return value[:200]
    canonical = json.dumps(event, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


_MAX_ID = 2**31 - 1  # the INTEGER columns the ids are stored in


def _int(value: Any) -> int | None:
    """A positive id that fits its column, or None (a signed body can still carry anything)."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 < number <= _MAX_ID else None


def _storable(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event without string values no database can store or hash: a NUL (PostgreSQL
    refuses it) or a lone surrogate (not UTF-8). Such a value is as good as absent."""
    clean: dict[str, Any] = {}
    for key, value in event.items():
        if isinstance(value, str):
            if "\x00" in value:
                continue
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                continue
        clean[key] = value
    return clean


def _hash_email(email: str) -> str:
    return email_hash(email)


def handle_events(engine: Engine, events: Iterable[Mapping[str, Any]], *, chunk: int = 500) -> EventsResult:
    """Apply a batch of SendGrid events. Safe to call again with the same events."""
    result = EventsResult()
    items = list(events)
    result.received = len(items)
    for start in range(0, len(items), chunk):
        _handle_chunk(engine, items[start : start + chunk], result)
    return result


def _handle_chunk(engine: Engine, events: list[Mapping[str, Any]], result: EventsResult) -> None:
    now = utcnow()
    rows: dict[str, dict[str, Any]] = {}
    received: dict[tuple[str, int], str | None] = {}
    suppress: list[tuple[str, str, Mapping[str, Any]]] = []
    for raw in events:
        event = _storable(raw)
        name = str(event.get("event") or "")
        issue_id = event.get("issue_id")
        issue_id = str(issue_id)[:40] if issue_id else None
        subscriber_id = _int(event.get("subscriber_id"))
        if name in RECEIVED and issue_id and subscriber_id is not None:
            received.setdefault((issue_id, subscriber_id), _message_id(event))
        if name == "bounce" and str(event.get("type") or "bounce") == "blocked":
            name = "blocked"  # a temporary block, not a bad address
        if name in SUPPRESSING:
            suppress.append((_event_id(event), name, event))
        if name in STORED:
            rows.setdefault(
                _event_id(event),
                {
                    "event_id": _event_id(event),
                    "event": name,
                    "issue_id": issue_id,
                    "subscriber_id": subscriber_id,
                },
            )
        elif name not in RECEIVED:
            result.ignored += 1
    with engine.begin() as conn:
        existing: set[str] = set()
        if rows:
            existing = set(conn.scalars(select(EV.c.event_id).where(EV.c.event_id.in_(list(rows)))))
            fresh = [dict(row, received_at=now) for key, row in rows.items() if key not in existing]
            result.duplicates += len(rows) - len(fresh)
            if fresh:
                conn.execute(insert_or_ignore(conn, EV, ["event_id"]), fresh)
                result.new += len(fresh)
                for row in fresh:
                    result.counts[row["event"]] = result.counts.get(row["event"], 0) + 1
        for event_id, name, suppressing in suppress:
            # A retried delivery of an event already applied must not apply again: the
            # person may have re-subscribed since (which lifted the suppression).
            if event_id not in existing and _suppress(conn, name, suppressing, now):
                result.suppressed += 1
        resolved = ledger.mark_in_flight_sent(conn, received)
        result.resolved += resolved
    if resolved:
        _finish_settled_issues(engine, {issue_id for issue_id, _ in received})


def _finish_settled_issues(engine: Engine, issue_ids: set[str]) -> None:
    """An issue whose last uncertain rows a webhook just settled is sent, if its send scanned everyone."""
    for issue_id in sorted(issue_ids):
        try:
            status = get_issue(engine, issue_id).status
        except NewsletterError:
            continue
        if (
            status == IssueStatus.SENDING
            and ledger.remaining(engine, issue_id) == 0
            and ledger.recipients_to_send(engine, issue_id) == 0
        ):
            mark_sent(engine, issue_id)


def _message_id(event: Mapping[str, Any]) -> str | None:
    value = event.get("sg_message_id")
    return str(value)[:200] if value else None


def _suppress(conn: Any, name: str, event: Mapping[str, Any], now: Any) -> bool:
    """Suppress the event's address; True when a subscriber's status changed."""
    kind, reason = SUPPRESSING[name]
    email = str(event.get("email") or "").strip()
    subscriber_id = _int(event.get("subscriber_id"))
    if name == "dropped":
        detail = str(event.get("reason") or "").lower()
        if "unsubscribe" in detail:
            kind, reason = SUPPRESSING["unsubscribe"]
        elif "spam" in detail:
            kind, reason = SUPPRESSING["spamreport"]
    match = []
    if email:
        match.append(S.c.email == email)
        match.append(S.c.email_hash == _hash_email(email))
    if subscriber_id is not None and email:
        # custom_args name the subscriber; the address must agree (an erased one has none)
        match.append(and_(S.c.id == subscriber_id, or_(S.c.email.is_(None), S.c.email == email)))
    if not match:
        return False
    found = conn.execute(select(S.c.id, S.c.email_hash).where(or_(*match))).all()
    hashes = sorted({row[1] for row in found} or {_hash_email(email)})
    return apply_provider_report(conn, [row[0] for row in found], hashes, kind, now, reason=reason)
