"""Subscribers: normalised addresses, double opt-in, consent, unsubscribe, erasure, CSV.

Status and the timestamp each change sets::

    (new) ──subscribe──> pending ──confirm──> confirmed ──unsubscribe──> unsubscribed
                           ^                                   │  (also bounced / complained,
                           └──── an explicit new subscribe ────┘   set by provider events)

* A pending or confirmed address that subscribes again is not stored twice; a
  confirmed one is not mailed again; any other status goes back to pending and must
  confirm again (double opt-in every time).
* Unsubscribing and erasing also write a ``SuppressionRow`` (by hash): delivery never
  mails a suppressed address and an import never re-adds it. Only a confirmed new
  double opt-in lifts the suppression.
* ``remove`` is the right to be forgotten: the address, name and consent IP/user
  agent are erased; the row keeps its hash (and the suppression) only.

State changes only: the confirmation and welcome mails are sent by ``newsletter.mail``
(transactional mail sits above delivery, which itself reads this package).
"""

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Engine,
    delete,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from newsletter.config import Settings
from newsletter.db import insert_or_ignore
from newsletter.errors import NotFoundError, SubscriberError
from newsletter.states import SubscriberStatus
from newsletter.subscribers.addresses import _clip, _hash_normalized, clean_name, email_hash, normalize_email
from newsletter.subscribers.queries import get_subscriber
from newsletter.subscribers.records import SUP, S, Subscriber, _subscriber, _writing
from newsletter.tables import utcnow
from newsletter.tokens import (
    InvalidTokenError,
    read_confirm_token,
    read_expired_confirm_token,
    read_unsubscribe_token,
)

log = logging.getLogger(__name__)

# A pending address asking again within this interval is not mailed again (no mail bombing).
RESEND_INTERVAL = timedelta(seconds=60)


# --- double opt-in -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscribeResult:
    """What happened. ``action``: created | resubscribed | resent | throttled | already_confirmed.

    The web answer never depends on it (no enumeration); ``mail_needed`` says whether
    a confirmation mail should go out (``newsletter.mail.subscribe`` sends it).
    """

    subscriber: Subscriber
    action: str
    mail_needed: bool


def _hash_matches(email_hash: str, prefix: str) -> bool:
    """Whether a token's address-hash prefix is this subscriber's (constant time)."""
    return secrets.compare_digest(email_hash[: len(prefix)], prefix)


def _set(conn: Connection, subscriber_id: int, **values: Any) -> Subscriber:
    """Update one subscriber and return the stored row (RETURNING: no second read)."""
    return _subscriber(
        conn.execute(update(S).where(S.c.id == subscriber_id).values(**values).returning(*S.c)).one()
    )


def subscribe(
    settings: Settings,
    engine: Engine,
    email: str,
    *,
    name: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    source: str = "web",
    now: datetime | None = None,
) -> SubscribeResult:
    """Start (or restart) a double opt-in for ``email``. Raises SubscriberError for a bad address."""
    address = normalize_email(email, check_deliverability=settings.check_deliverability)
    stored_name = clean_name(name)
    digest = _hash_normalized(address)
    moment = now or utcnow()
    consent = {
        "consent_at": moment,
        "consent_ip": _clip(ip, 64),
        "consent_user_agent": _clip(user_agent, 500),
    }
    for attempt in range(2):
        try:
            result = _subscribe_once(engine, address, digest, stored_name, source, consent, moment)
            break
        except IntegrityError:
            # Two requests for the same new address raced; the second one sees the row now.
            if attempt:
                raise
    return result


def _subscribe_once(
    engine: Engine,
    address: str,
    digest: str,
    name: str | None,
    source: str,
    consent: dict[str, Any],
    moment: datetime,
) -> SubscribeResult:
    values = {
        "email": address,
        "email_hash": digest,
        "name": name,
        "status": SubscriberStatus.PENDING,
        "source": source,
        "created_at": moment,
        "updated_at": moment,
        "confirmation_sent_at": moment,
        **consent,
    }
    with _writing(engine) as conn:
        # The common case, a new address, in one round trip: the row comes back (RETURNING),
        # or nothing when the address is known (ON CONFLICT DO NOTHING), which is read then.
        insert = insert_or_ignore(conn, S, ["email_hash"]).values(**values).returning(*S.c)
        created = conn.execute(insert).first()
        if created is not None:
            return SubscribeResult(_subscriber(created), "created", True)
        row = conn.execute(select(S).where(S.c.email_hash == digest)).one()
        current = _subscriber(row)
        if current.status == SubscriberStatus.CONFIRMED:
            return SubscribeResult(current, "already_confirmed", False)
        if current.status == SubscriberStatus.PENDING:
            sent = current.confirmation_sent_at
            if sent is not None and moment - sent < RESEND_INTERVAL:
                return SubscribeResult(current, "throttled", False)
            action = "resent"
        else:
            action = "resubscribed"  # unsubscribed, bounced, complained or erased: opt in again
        changes: dict[str, Any] = {
            "email": address,
            "status": SubscriberStatus.PENDING,
            "updated_at": moment,
            "confirmation_sent_at": moment,
            "source": source if action == "resubscribed" else current.source,
            **consent,
        }
        if name is not None:
            changes["name"] = name
        return SubscribeResult(_set(conn, current.id, **changes), action, True)


@dataclass(frozen=True)
class ConfirmResult:
    subscriber: Subscriber
    newly_confirmed: bool


def confirm(settings: Settings, engine: Engine, token: str) -> ConfirmResult:
    """Confirm the subscriber a confirmation token names. TokenError when it is not (or no longer) valid."""
    claim = read_confirm_token(settings, token)
    moment = utcnow()
    with _writing(engine) as conn:
        row = conn.execute(select(S).where(S.c.id == claim.subscriber_id)).first()
        if row is None or row.email is None or not _hash_matches(row.email_hash, claim.hash_prefix):
            raise InvalidTokenError("this confirmation link is not valid any more")
        current = _subscriber(row)
        if current.status == SubscriberStatus.CONFIRMED:
            return ConfirmResult(current, False)
        if current.status != SubscriberStatus.PENDING:
            # A link older than the unsubscribe (or bounce) must not undo it.
            raise InvalidTokenError("this confirmation link is older than your last unsubscribe")
        if current.unsubscribed_at and claim.issued_at < current.unsubscribed_at.replace(microsecond=0):
            # Re-subscribing needs the new link: an old one predates the unsubscribe.
            raise InvalidTokenError("this confirmation link is older than your last unsubscribe")
        confirmed = _set(
            conn, current.id, status=SubscriberStatus.CONFIRMED, confirmed_at=moment, updated_at=moment
        )
        # An explicit, confirmed double opt-in lifts an earlier suppression.
        conn.execute(delete(SUP).where(SUP.c.email_hash == current.email_hash))
    return ConfirmResult(confirmed, True)


def resend_confirmation(settings: Settings, engine: Engine, token: str) -> Subscriber | None:
    """A fresh confirmation mail for the subscriber of an (expired) genuine confirmation token.

    Returns the subscriber to mail, or None when there is nothing to confirm any more.
    """
    claim = read_expired_confirm_token(settings, token)
    moment = utcnow()
    with _writing(engine) as conn:
        row = conn.execute(select(S).where(S.c.id == claim.subscriber_id)).first()
        if (
            row is None
            or row.email is None
            or not _hash_matches(row.email_hash, claim.hash_prefix)
            or row.status != SubscriberStatus.PENDING
        ):
            return None
        current = _subscriber(row)
        if current.confirmation_sent_at and moment - current.confirmation_sent_at < RESEND_INTERVAL:
            return None
        conn.execute(
            update(S).where(S.c.id == current.id).values(confirmation_sent_at=moment, updated_at=moment)
        )
    return current


# --- unsubscribe and suppression -------------------------------------------------------------------


def _suppress(conn: Connection, digest: str, reason: str, moment: datetime) -> None:
    conn.execute(
        insert_or_ignore(conn, SUP, ["email_hash"]).values(
            email_hash=digest, reason=reason, created_at=moment
        )
    )


# What a provider report (bounce, complaint, unsubscribe at the provider) does to a subscriber:
# (status, suppression reason, timestamp column). Only a pending or confirmed one changes.
PROVIDER_TRANSITIONS = {
    "bounce": (SubscriberStatus.BOUNCED, "bounce", "bounced_at"),
    "complaint": (SubscriberStatus.COMPLAINED, "complaint", "complained_at"),
    "unsubscribe": (SubscriberStatus.UNSUBSCRIBED, "unsubscribe", "unsubscribed_at"),
}


def apply_provider_report(
    conn: Connection,
    subscriber_ids: Sequence[int],
    hashes: Sequence[str],
    kind: str,
    moment: datetime,
    *,
    reason: str | None = None,
) -> bool:
    """Suppress ``hashes`` and move the pending/confirmed ``subscriber_ids`` to the status of ``kind``
    (a key of PROVIDER_TRANSITIONS), inside the caller's transaction. True when a status changed.

    The bounce/complaint half of the state machine (``delivery/events.py`` calls it for each
    signed webhook event); ``reason`` overrides the suppression's reason (e.g. "dropped").
    """
    status, default_reason, column = PROVIDER_TRANSITIONS[kind]
    reason = reason or default_reason
    for digest in sorted(set(hashes)):
        _suppress(conn, digest, reason, moment)
    if not subscriber_ids:
        return False
    changed = conn.execute(
        update(S)
        .where(
            S.c.id.in_(list(subscriber_ids)),
            S.c.status.in_((SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED)),
        )
        .values({"status": status, column: moment, "updated_at": moment})
    ).rowcount
    return bool(changed)


def unsubscribe(
    engine: Engine, subscriber_id: int, *, hash_prefix: str | None = None, reason: str = "unsubscribe"
) -> Subscriber | None:
    """Unsubscribe one subscriber (idempotent). None when no such subscriber (or hash mismatch)."""
    moment = utcnow()
    with _writing(engine) as conn:
        row = conn.execute(select(S).where(S.c.id == subscriber_id)).first()
        if row is None:
            return None
        if hash_prefix is not None and not _hash_matches(row.email_hash, hash_prefix):
            return None
        current = _subscriber(row)
        if current.status != SubscriberStatus.UNSUBSCRIBED:
            current = _set(
                conn,
                subscriber_id,
                status=SubscriberStatus.UNSUBSCRIBED,
                unsubscribed_at=moment,
                updated_at=moment,
            )
        _suppress(conn, row.email_hash, reason, moment)
        return current


def unsubscribe_by_token(settings: Settings, engine: Engine, token: str) -> Subscriber | None:
    """RFC 8058 one-click: the token alone is enough. TokenError when it is not ours."""
    claim = read_unsubscribe_token(settings, token)
    return unsubscribe(engine, claim.subscriber_id, hash_prefix=claim.hash_prefix)


def check_unsubscribe_token(settings: Settings, engine: Engine, token: str) -> Subscriber | None:
    """Validate a token without changing anything (GET /unsubscribe/{token})."""
    claim = read_unsubscribe_token(settings, token)
    found = get_subscriber(engine, claim.subscriber_id)
    if found is None or not _hash_matches(found.email_hash, claim.hash_prefix):
        return None
    return found


def remove(engine: Engine, email: str) -> Subscriber:
    """Erase the person's data (right to be forgotten), keeping only the hash and a suppression."""
    digest = email_hash(email)
    moment = utcnow()
    with _writing(engine) as conn:
        row = conn.execute(select(S).where(S.c.email_hash == digest)).first()
        if row is None:
            raise NotFoundError(f"no subscriber {email.strip()!r}")
        erased = _set(
            conn,
            row.id,
            email=None,
            name=None,
            consent_ip=None,
            consent_user_agent=None,
            status=SubscriberStatus.UNSUBSCRIBED,
            # Now, and no confirmation on record: a confirmation link mailed before the
            # erasure must not bring the address back (confirm checks it is newer).
            unsubscribed_at=moment,
            confirmed_at=None,
            updated_at=moment,
        )
        _suppress(conn, digest, "erased", moment)
        return erased


# --- CLI add -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddResult:
    """``action``: added | confirmed (a pending one) | exists | suppressed | invalid."""

    email: str
    action: str
    message: str = ""
    subscriber: Subscriber | None = None


def add(
    settings: Settings,
    engine: Engine,
    emails: Sequence[str],
    *,
    confirmed: bool = False,
    name: str | None = None,
    source: str = "cli",
) -> list[AddResult]:
    """Add addresses by hand. Without ``confirmed`` they are pending (``newsletter.mail.add`` mails them).

    Suppressed addresses (unsubscribed, erased, bounced) are refused: only the person's own
    new double opt-in lifts that.
    """
    results: list[AddResult] = []
    for raw in emails:
        try:
            address = normalize_email(raw, check_deliverability=settings.check_deliverability)
        except SubscriberError as exc:
            results.append(AddResult(raw, "invalid", str(exc)))
            continue
        results.append(_add_one(engine, address, confirmed, name, source))
    return results


def _add_one(
    engine: Engine,
    address: str,
    confirmed: bool,
    name: str | None,
    source: str,
) -> AddResult:
    digest = _hash_normalized(address)
    moment = utcnow()
    with _writing(engine) as conn:
        if conn.execute(select(SUP.c.email_hash).where(SUP.c.email_hash == digest)).first() is not None:
            return AddResult(
                address, "suppressed", "suppressed (unsubscribed, erased or bounced): not re-added"
            )
        row = conn.execute(select(S).where(S.c.email_hash == digest)).first()
        if row is not None:
            if confirmed and row.status == SubscriberStatus.PENDING:
                found = _set(
                    conn, row.id, status=SubscriberStatus.CONFIRMED, confirmed_at=moment, updated_at=moment
                )
                return AddResult(address, "confirmed", "was pending, now confirmed", found)
            return AddResult(address, "exists", f"already {row.status}", _subscriber(row))
        values = {
            "email": address,
            "email_hash": digest,
            "name": clean_name(name),
            "status": SubscriberStatus.CONFIRMED if confirmed else SubscriberStatus.PENDING,
            "source": source,
            "created_at": moment,
            "updated_at": moment,
            "confirmed_at": moment if confirmed else None,
            "confirmation_sent_at": None if confirmed else moment,
            "consent_at": moment,
        }
        created = _subscriber(conn.execute(S.insert().values(**values).returning(*S.c)).one())
    return AddResult(address, "added", "confirmed" if confirmed else "pending, confirmation mailed", created)
