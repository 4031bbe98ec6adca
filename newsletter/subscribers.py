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

The unsubscribe URL and the ``List-Unsubscribe`` headers are built here, once
(``unsubscribe_url``, ``list_unsubscribe_headers``): delivery uses the same functions.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import re
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO, cast

import jinja2
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    String,
    Table,
    and_,
    any_,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import NullType

from newsletter.config import Settings
from newsletter.errors import NotFoundError, SubscriberError
from newsletter.resources import MAIL_TEMPLATES
from newsletter.tables import DeliveryRow, IssueRow, SubscriberRow, SuppressionRow, utcnow
from newsletter.tokens import (
    InvalidTokenError,
    make_confirm_token,
    read_confirm_token,
    read_expired_confirm_token,
    read_unsubscribe_token,
    sign_unsubscribe,
    unsubscribe_signer,
)

log = logging.getLogger(__name__)

S = cast(Table, SubscriberRow.__table__)
SUP = cast(Table, SuppressionRow.__table__)
I = cast(Table, IssueRow.__table__)  # noqa: E741
D = cast(Table, DeliveryRow.__table__)

STATUSES = ("pending", "confirmed", "unsubscribed", "bounced", "complained")
# A pending address asking again within this interval is not mailed again (no mail bombing).
RESEND_INTERVAL = timedelta(seconds=60)
MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 200
IMPORT_CHUNK = 5000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
PUBLIC_ISSUE_STATUSES = ("sending", "sent")
EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "source",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "consent_at",
    "consent_ip",
)


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str | None
    email_hash: str
    name: str | None
    status: str
    source: str | None
    created_at: datetime
    updated_at: datetime
    confirmation_sent_at: datetime | None = None
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None
    consent_at: datetime | None = None
    consent_ip: str | None = None
    consent_user_agent: str | None = None

    @property
    def erased(self) -> bool:
        return self.email is None


def _subscriber(row: Row[Any] | Any) -> Subscriber:
    m = row._mapping
    return Subscriber(
        id=m["id"],
        email=m["email"],
        email_hash=m["email_hash"],
        name=m["name"],
        status=m["status"],
        source=m["source"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        confirmation_sent_at=m["confirmation_sent_at"],
        confirmed_at=m["confirmed_at"],
        unsubscribed_at=m["unsubscribed_at"],
        consent_at=m["consent_at"],
        consent_ip=m["consent_ip"],
        consent_user_agent=m["consent_user_agent"],
    )


# --- write transactions -------------------------------------------------------------------------

_sqlite_locks: dict[int, threading.Lock] = {}
_sqlite_locks_guard = threading.Lock()


@contextmanager
def _writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction. On SQLite, threads of this process take turns first: SQLite allows
    one writer, and a second one would wait in its busy handler, which sleeps in steps of up
    to 100 ms (a tenth of the throughput under concurrent subscribes). PostgreSQL needs no lock.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with _sqlite_locks_guard:
        lock = _sqlite_locks.setdefault(id(engine), threading.Lock())
    with lock, engine.begin() as conn:
        yield conn


# --- addresses --------------------------------------------------------------------------------


def normalize_email(raw: str, *, check_deliverability: bool = False) -> str:
    """Trimmed, domain lower-cased (IDNA-aware), syntax-checked; SubscriberError otherwise."""
    if not isinstance(raw, str):
        raise SubscriberError("an email address is required")
    value = raw.strip()
    if not value:
        raise SubscriberError("an email address is required")
    if _CONTROL.search(value):
        # CR/LF would be a header injection ("a@b.com\r\nBcc: …"); no address has control characters.
        raise SubscriberError("an email address cannot contain line breaks or control characters")
    if len(value) > MAX_EMAIL_LENGTH:
        raise SubscriberError(f"an email address is at most {MAX_EMAIL_LENGTH} characters")
    if not check_deliverability:
        fast = _fast_normalize(value)
        if fast is not None:
            return fast
    try:
        # allow_smtputf8=False: a non-ASCII local part needs SMTPUTF8 from every relay on
        # the way, which neither SMTP servers nor providers promise; such an address is
        # refused here, with a message, rather than accepted and never mailed.
        result = validate_email(value, check_deliverability=check_deliverability, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"{value!r} is not a valid email address: {exc}") from None
    return str(result.normalized)


# RFC 5322 dot-atom of ASCII atext: email-validator accepts such a local part as it is.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
LOCAL_PART_MAX = 64


def _fast_normalize(value: str) -> str | None:
    """The common case (plain ASCII local part and domain) with each domain validated once.

    Bulk imports repeat a few domains many times; email-validator spends most of its time on
    the domain. Anything unusual (quoted or non-ASCII local parts, IDNs) returns None and
    takes the full path, so the result is always what ``validate_email`` would give.
    """
    local, at, domain = value.rpartition("@")
    if not at or not local or len(local) > LOCAL_PART_MAX or not domain.isascii():
        return None
    if not _DOT_ATOM.match(local) or local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:
        return None  # (postmaster@, www@ … are lower-cased by email-validator)
    normalized, error = _domain(domain)
    if error is not None:
        raise SubscriberError(f"{value!r} is not a valid email address: {error}")
    if normalized != domain.lower():
        return None  # e.g. punycode shown as Unicode: let the full path decide
    return f"{local}@{normalized}"


@lru_cache(maxsize=8192)
def _domain(domain: str) -> tuple[str | None, str | None]:
    """(normalised domain, None) or (None, why it is not valid), syntax only."""
    try:
        result = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError as exc:
        return None, str(exc)
    return str(result.domain), None


def email_hash(email: str) -> str:
    """sha256 of the normalised, lower-cased address (what survives erasure)."""
    try:
        value = normalize_email(email)
    except SubscriberError:
        value = (email or "").strip()
    return _hash_normalized(value)


def _hash_normalized(normalized: str) -> str:
    return hashlib.sha256(normalized.lower().encode("utf-8")).hexdigest()


def clean_name(name: str | None) -> str | None:
    """A subscriber's name as stored (spacing folded), or SubscriberError saying what is wrong."""
    if name is None:
        return None
    value = " ".join(name.split())
    if _CONTROL.search(value):
        raise SubscriberError("a name cannot contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SubscriberError("a name must be text (it holds an unpaired surrogate)") from None
    if len(value) > MAX_NAME_LENGTH:
        raise SubscriberError(f"a name is at most {MAX_NAME_LENGTH} characters")
    return value or None


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if value else None


# --- unsubscribe URL and headers: the one place they are built -----------------------------------


class UnsubscribeLinks:
    """Unsubscribe URLs and List-Unsubscribe headers for many recipients, the key read once."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._prefix = f"{settings.base_url}/unsubscribe/"
        self._signer = unsubscribe_signer(settings.secret())

    def url(self, subscriber_id: int, email_hash: str) -> str:
        """The personal unsubscribe page (GET shows a button, POST is RFC 8058 one-click)."""
        return self._prefix + sign_unsubscribe(self._signer, subscriber_id, email_hash)

    def headers(self, url: str) -> dict[str, str]:
        return list_unsubscribe_headers(self._settings, url)


def unsubscribe_url(settings: Settings, subscriber_id: int, email_hash: str) -> str:
    """The subscriber's personal unsubscribe page (GET shows a button, POST is RFC 8058 one-click)."""
    return UnsubscribeLinks(settings).url(subscriber_id, email_hash)


def list_unsubscribe_headers(settings: Settings, url: str, *, mailto: str | None = None) -> dict[str, str]:
    """``List-Unsubscribe`` (RFC 2369) and ``List-Unsubscribe-Post`` (RFC 8058 one-click)."""
    if any(ch in url for ch in "<>\r\n ,"):
        raise SubscriberError("an unsubscribe URL cannot contain <, >, commas, spaces or line breaks")
    targets = [f"<{url}>"]
    if mailto:
        targets.append(f"<mailto:{mailto}?subject=unsubscribe>")
    return {
        "List-Unsubscribe": ", ".join(targets),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def confirm_url(settings: Settings, subscriber_id: int, email_hash: str) -> str:
    return f"{settings.base_url}/confirm/{make_confirm_token(settings, subscriber_id, email_hash)}"


# --- lookups ----------------------------------------------------------------------------------------


def get_subscriber(engine: Engine, subscriber_id: int) -> Subscriber | None:
    with engine.connect() as conn:
        row = conn.execute(select(S).where(S.c.id == subscriber_id)).first()
    return _subscriber(row) if row is not None else None


def find_subscriber(engine: Engine, email: str) -> Subscriber | None:
    """By address (any spelling that normalises to it), erased rows included."""
    with engine.connect() as conn:
        row = conn.execute(select(S).where(S.c.email_hash == email_hash(email))).first()
    return _subscriber(row) if row is not None else None


def is_suppressed(engine: Engine, email: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(select(SUP.c.email_hash).where(SUP.c.email_hash == email_hash(email))).first()
    return found is not None


def list_subscribers(
    engine: Engine, *, status: str | None = None, limit: int | None = None, offset: int = 0
) -> list[Subscriber]:
    if status is not None and status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r} (choose {', '.join(STATUSES)})")
    query = select(S).order_by(S.c.id).offset(offset)
    if status is not None:
        query = query.where(S.c.status == status)
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [_subscriber(row) for row in conn.execute(query)]


SEARCH_LIMIT = 200


@dataclass(frozen=True)
class SubscriberPage:
    subscribers: list[Subscriber]
    next_cursor: int | None  # pass as ``after`` for the next page; None on the last one


def search_subscribers(
    engine: Engine,
    *,
    q: str | None = None,
    status: str | None = None,
    limit: int = 50,
    after: int = 0,
) -> SubscriberPage:
    """Subscribers whose address or name contains ``q`` (any case), in id order, one keyset page
    after the id ``after``: stable while rows are added, and as fast on page 1,000 as on page 1."""
    if status is not None and status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r} (choose {', '.join(STATUSES)})")
    limit = max(1, min(limit, SEARCH_LIMIT))
    query = select(S).where(S.c.id > after).order_by(S.c.id).limit(limit + 1)
    if status is not None:
        query = query.where(S.c.status == status)
    if q and q.strip():
        text = q.strip().lower()
        for char in ("\\", "%", "_"):  # LIKE's own characters match themselves
            text = text.replace(char, "\\" + char)
        pattern = f"%{text}%"
        query = query.where(
            func.lower(S.c.email).like(pattern, escape="\\")
            | func.lower(S.c.name).like(pattern, escape="\\")
        )
    with engine.connect() as conn:
        rows = [_subscriber(row) for row in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return SubscriberPage(rows, rows[-1].id if more and rows else None)


def delivery_history(engine: Engine, subscriber_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """What one subscriber was sent: issue, state, when; newest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(D.c.issue_id, D.c.state, D.c.updated_at, D.c.error)
            .where(D.c.subscriber_id == subscriber_id)
            .order_by(D.c.updated_at.desc())
            .limit(limit)
        ).all()
    return [
        {"issue_id": row.issue_id, "state": row.state, "at": _iso(row.updated_at), "error": row.error}
        for row in rows
    ]


def count_by_status(engine: Engine) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    with engine.connect() as conn:
        for status, count in conn.execute(select(S.c.status, func.count()).group_by(S.c.status)):
            counts[status] = int(count)
    return counts


# --- double opt-in -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscribeResult:
    """What happened. ``action``: created | resubscribed | resent | throttled | already_confirmed.

    The web answer never depends on it (no enumeration); ``mail_needed`` says whether
    a confirmation mail should go out (``subscribe(send=True)`` already sent it).
    """

    subscriber: Subscriber
    action: str
    mail_needed: bool


def subscribe(
    settings: Settings,
    engine: Engine,
    email: str,
    *,
    name: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    source: str = "web",
    send: bool = True,
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
    if send and result.mail_needed:
        send_confirmation(settings, result.subscriber)
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
    with _writing(engine) as conn:
        row = conn.execute(select(S).where(S.c.email_hash == digest)).first()
        if row is None:
            values = {
                "email": address,
                "email_hash": digest,
                "name": name,
                "status": "pending",
                "source": source,
                "created_at": moment,
                "updated_at": moment,
                "confirmation_sent_at": moment,
                **consent,
            }
            new_id = conn.execute(S.insert().values(**values).returning(S.c.id)).scalar_one()
            created = conn.execute(select(S).where(S.c.id == new_id)).one()
            return SubscribeResult(_subscriber(created), "created", True)
        current = _subscriber(row)
        if current.status == "confirmed":
            return SubscribeResult(current, "already_confirmed", False)
        if current.status == "pending":
            sent = current.confirmation_sent_at
            if sent is not None and moment - sent < RESEND_INTERVAL:
                return SubscribeResult(current, "throttled", False)
            action = "resent"
        else:
            action = "resubscribed"  # unsubscribed, bounced, complained or erased: opt in again
        changes: dict[str, Any] = {
            "email": address,
            "status": "pending",
            "updated_at": moment,
            "confirmation_sent_at": moment,
            "source": source if action == "resubscribed" else current.source,
            **consent,
        }
        if name is not None:
            changes["name"] = name
        conn.execute(update(S).where(S.c.id == current.id).values(**changes))
        updated = conn.execute(select(S).where(S.c.id == current.id)).one()
        return SubscribeResult(_subscriber(updated), action, True)


@dataclass(frozen=True)
class ConfirmResult:
    subscriber: Subscriber
    newly_confirmed: bool


def confirm(settings: Settings, engine: Engine, token: str, *, send: bool = True) -> ConfirmResult:
    """Confirm the subscriber a confirmation token names. TokenError when it is not (or no longer) valid."""
    claim = read_confirm_token(settings, token)
    moment = utcnow()
    with _writing(engine) as conn:
        row = conn.execute(select(S).where(S.c.id == claim.subscriber_id)).first()
        if (
            row is None
            or row.email is None
            or not secrets.compare_digest(row.email_hash[: len(claim.hash_prefix)], claim.hash_prefix)
        ):
            raise InvalidTokenError("this confirmation link is not valid any more")
        current = _subscriber(row)
        if current.status == "confirmed":
            return ConfirmResult(current, False)
        if current.status != "pending":
            # A link older than the unsubscribe (or bounce) must not undo it.
            raise InvalidTokenError("this confirmation link is older than your last unsubscribe")
        if current.unsubscribed_at and claim.issued_at < current.unsubscribed_at.replace(microsecond=0):
            # Re-subscribing needs the new link: an old one predates the unsubscribe.
            raise InvalidTokenError("this confirmation link is older than your last unsubscribe")
        conn.execute(
            update(S)
            .where(S.c.id == current.id)
            .values(status="confirmed", confirmed_at=moment, updated_at=moment)
        )
        # An explicit, confirmed double opt-in lifts an earlier suppression.
        conn.execute(delete(SUP).where(SUP.c.email_hash == current.email_hash))
        confirmed = _subscriber(conn.execute(select(S).where(S.c.id == current.id)).one())
    if send:
        send_welcome(settings, engine, confirmed)
    return ConfirmResult(confirmed, True)


def resend_confirmation(
    settings: Settings, engine: Engine, token: str, *, send: bool = True
) -> Subscriber | None:
    """A fresh confirmation mail for the subscriber of an (expired) genuine confirmation token.

    Returns the subscriber mailed, or None when there is nothing to confirm any more.
    """
    claim = read_expired_confirm_token(settings, token)
    moment = utcnow()
    with _writing(engine) as conn:
        row = conn.execute(select(S).where(S.c.id == claim.subscriber_id)).first()
        if (
            row is None
            or row.email is None
            or not row.email_hash.startswith(claim.hash_prefix)
            or row.status != "pending"
        ):
            return None
        current = _subscriber(row)
        if current.confirmation_sent_at and moment - current.confirmation_sent_at < RESEND_INTERVAL:
            return None
        conn.execute(
            update(S).where(S.c.id == current.id).values(confirmation_sent_at=moment, updated_at=moment)
        )
    if send:
        send_confirmation(settings, current)
    return current


# --- unsubscribe and suppression -------------------------------------------------------------------


def _suppress(conn: Connection, digest: str, reason: str, moment: datetime) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        insert(SUP)
        .values(email_hash=digest, reason=reason, created_at=moment)
        .on_conflict_do_nothing(index_elements=["email_hash"])
    )


def unsubscribe(
    engine: Engine, subscriber_id: int, *, hash_prefix: str | None = None, reason: str = "unsubscribe"
) -> Subscriber | None:
    """Unsubscribe one subscriber (idempotent). None when no such subscriber (or hash mismatch)."""
    moment = utcnow()
    with _writing(engine) as conn:
        row = conn.execute(select(S).where(S.c.id == subscriber_id)).first()
        if row is None:
            return None
        if hash_prefix is not None and not secrets.compare_digest(
            row.email_hash[: len(hash_prefix)], hash_prefix
        ):
            return None
        if row.status != "unsubscribed":
            conn.execute(
                update(S)
                .where(S.c.id == subscriber_id)
                .values(status="unsubscribed", unsubscribed_at=moment, updated_at=moment)
            )
        _suppress(conn, row.email_hash, reason, moment)
        return _subscriber(conn.execute(select(S).where(S.c.id == subscriber_id)).one())


def unsubscribe_by_token(settings: Settings, engine: Engine, token: str) -> Subscriber | None:
    """RFC 8058 one-click: the token alone is enough. TokenError when it is not ours."""
    claim = read_unsubscribe_token(settings, token)
    return unsubscribe(engine, claim.subscriber_id, hash_prefix=claim.hash_prefix)


def check_unsubscribe_token(settings: Settings, engine: Engine, token: str) -> Subscriber | None:
    """Validate a token without changing anything (GET /unsubscribe/{token})."""
    claim = read_unsubscribe_token(settings, token)
    found = get_subscriber(engine, claim.subscriber_id)
    if found is None or not found.email_hash.startswith(claim.hash_prefix):
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
        conn.execute(
            update(S)
            .where(S.c.id == row.id)
            .values(
                email=None,
                name=None,
                consent_ip=None,
                consent_user_agent=None,
                status="unsubscribed",
                # Now, and no confirmation on record: a confirmation link mailed before the
                # erasure must not bring the address back (confirm checks it is newer).
                unsubscribed_at=moment,
                confirmed_at=None,
                updated_at=moment,
            )
        )
        _suppress(conn, digest, "erased", moment)
        return _subscriber(conn.execute(select(S).where(S.c.id == row.id)).one())


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
    send: bool = True,
) -> list[AddResult]:
    """Add addresses by hand. Without ``confirmed`` they are pending and get a confirmation mail.

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
        results.append(_add_one(settings, engine, address, confirmed, name, source, send))
    return results


def _add_one(
    settings: Settings,
    engine: Engine,
    address: str,
    confirmed: bool,
    name: str | None,
    source: str,
    send: bool,
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
            if confirmed and row.status == "pending":
                conn.execute(
                    update(S)
                    .where(S.c.id == row.id)
                    .values(status="confirmed", confirmed_at=moment, updated_at=moment)
                )
                found = _subscriber(conn.execute(select(S).where(S.c.id == row.id)).one())
                return AddResult(address, "confirmed", "was pending, now confirmed", found)
            return AddResult(address, "exists", f"already {row.status}", _subscriber(row))
        values = {
            "email": address,
            "email_hash": digest,
            "name": clean_name(name),
            "status": "confirmed" if confirmed else "pending",
            "source": source,
            "created_at": moment,
            "updated_at": moment,
            "confirmed_at": moment if confirmed else None,
            "confirmation_sent_at": None if confirmed else moment,
            "consent_at": moment,
        }
        new_id = conn.execute(S.insert().values(**values).returning(S.c.id)).scalar_one()
        created = _subscriber(conn.execute(select(S).where(S.c.id == new_id)).one())
    if send and not confirmed:
        send_confirmation(settings, created)
    return AddResult(address, "added", "confirmed" if confirmed else "pending, confirmation mailed", created)


# --- CSV import / export ------------------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    line: int
    value: str
    message: str


@dataclass
class ImportReport:
    imported: int = 0
    existing: int = 0
    duplicates: int = 0
    suppressed: int = 0
    upgraded: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.imported + self.existing + self.duplicates + self.suppressed + len(self.errors)


def import_csv(
    settings: Settings,
    engine: Engine,
    source: str | Path | TextIO,
    *,
    confirmed: bool = False,
    source_label: str = "import",
    chunk_size: int = IMPORT_CHUNK,
) -> ImportReport:
    """Import a CSV with a header row naming ``email`` (and optionally ``name``).

    Bad rows are reported with their line number and skipped; good rows are inserted in
    chunks (INSERT … ON CONFLICT DO NOTHING). Duplicates inside the file and addresses
    already known are merged (the existing row wins; with ``confirmed`` a pending one is
    confirmed). Suppressed addresses are never re-added. No mail is sent.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        try:
            _check_utf8(path)  # all of it, before a row is written: never half an import
            with open(path, encoding="utf-8-sig", newline="") as handle:
                return _import(settings, engine, handle, confirmed, source_label, chunk_size)
        except FileNotFoundError:
            raise SubscriberError(f"{path}: no such file") from None
        except UnicodeDecodeError as exc:
            raise SubscriberError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except IsADirectoryError:
            raise SubscriberError(f"{path}: is a directory; give a CSV file") from None
        except OSError as exc:  # permissions, I/O: say what the system said, no traceback
            raise SubscriberError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return _import(settings, engine, source, confirmed, source_label, chunk_size)


def _check_utf8(path: Path, chunk: int = 1 << 20) -> None:
    """SubscriberError naming the line of the first byte that is not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 1
    with open(path, "rb") as handle:
        while True:
            data = handle.read(chunk)
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                line = lines + data[: exc.start].count(b"\n")
                raise SubscriberError(
                    f"{path}:{line}: not UTF-8 text ({exc.reason}); save the file as UTF-8 "
                    "(nothing was imported)"
                ) from None
            if not data:
                return
            lines += data.count(b"\n")


def _import(
    settings: Settings,
    engine: Engine,
    handle: TextIO,
    confirmed: bool,
    source_label: str,
    chunk_size: int,
) -> ImportReport:
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        raise SubscriberError(
            "the CSV file is empty (it needs a header row with an 'email' column)"
        ) from None
    except csv.Error as exc:
        raise SubscriberError(f"line 1: {exc}") from None
    columns = [name.lstrip("\ufeff").strip().lower() for name in header]
    if "email" not in columns:
        found = ", ".join(_CONTROL.sub("?", " ".join(name.split()))[:40] for name in header[:10])
        raise SubscriberError(f"line 1: the header row needs an 'email' column (found: {found})")
    email_at = columns.index("email")
    name_at = columns.index("name") if "name" in columns else None
    report = ImportReport()
    seen: set[str] = set()
    chunk: list[dict[str, Any]] = []
    moment = utcnow()
    status = "confirmed" if confirmed else "pending"
    check = settings.check_deliverability
    while True:
        line = reader.line_num + 1  # where the record starts (a quoted field may span lines)
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.errors.append(RowError(line, "", f"malformed CSV: {exc}"))
            continue
        if not record or all(not cell.strip() for cell in record):
            continue  # blank lines are not errors
        raw = record[email_at] if email_at < len(record) else ""
        try:
            address = normalize_email(raw, check_deliverability=check)
            name = clean_name(record[name_at]) if name_at is not None and name_at < len(record) else None
        except SubscriberError as exc:
            report.errors.append(RowError(line, raw, str(exc)))
            continue
        digest = _hash_normalized(address)
        if digest in seen:
            report.duplicates += 1
            continue
        seen.add(digest)
        chunk.append(
            {
                "email": address,
                "email_hash": digest,
                "name": name,
                "status": status,
                "source": source_label,
                "created_at": moment,
                "updated_at": moment,
                "confirmed_at": moment if confirmed else None,
                "confirmation_sent_at": None,
                "consent_at": moment,
                "consent_ip": None,
                "consent_user_agent": None,
            }
        )
        if len(chunk) >= chunk_size:
            _import_chunk(engine, chunk, confirmed, report)
            chunk = []
    if chunk:
        _import_chunk(engine, chunk, confirmed, report)
    return report


def _among(conn: Connection, column: Any, values: list[str]) -> Any:
    """``column IN values``; on PostgreSQL one array parameter (= ANY) instead of thousands."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam("values", values, type_=postgresql.ARRAY(String)))
    return column.in_(values)


def _import_chunk(engine: Engine, chunk: list[dict[str, Any]], confirmed: bool, report: ImportReport) -> None:
    hashes = [row["email_hash"] for row in chunk]
    with _writing(engine) as conn:
        suppressed = set(conn.scalars(select(SUP.c.email_hash).where(_among(conn, SUP.c.email_hash, hashes))))
        existing: dict[str, str] = {
            digest: status
            for digest, status in conn.execute(
                select(S.c.email_hash, S.c.status).where(_among(conn, S.c.email_hash, hashes))
            )
        }
        new_rows = []
        pending_to_confirm = []
        for row in chunk:
            digest = row["email_hash"]
            if digest in suppressed:
                report.suppressed += 1
            elif digest in existing:
                report.existing += 1
                if confirmed and existing[digest] == "pending":
                    pending_to_confirm.append(digest)
            else:
                new_rows.append(row)
        if new_rows:
            _bulk_insert(conn, new_rows)
            report.imported += len(new_rows)
        if pending_to_confirm:
            moment = utcnow()
            conn.execute(
                update(S)
                .where(and_(S.c.email_hash.in_(pending_to_confirm), S.c.status == "pending"))
                .values(status="confirmed", confirmed_at=moment, updated_at=moment)
            )
            report.upgraded += len(pending_to_confirm)


_DATETIME_COLUMNS = ("created_at", "updated_at", "confirmed_at", "confirmation_sent_at", "consent_at")
# The subscribers table without column types: rows go in already converted (see _bulk_insert).
_RAW = Table("subscribers", MetaData(), *(Column(column.name, NullType()) for column in S.columns))


def _bulk_insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING for many rows.

    Every row of an import carries the same timestamps, so each is converted for the
    database once per chunk instead of once per row and column (a third of the time).
    """
    if conn.dialect.name == "postgresql":
        _copy_insert(conn, rows)
        return
    converted: dict[tuple[str, Any], Any] = {}
    for name in _DATETIME_COLUMNS:
        process = S.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        for value in {row[name] for row in rows}:
            converted[name, value] = process(value) if process is not None and value is not None else value
    for row in rows:
        for name in _DATETIME_COLUMNS:
            row[name] = converted[name, row[name]]
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(_RAW).on_conflict_do_nothing(), rows)


_COPY_TYPES = {
    "email": "varchar(320)",
    "email_hash": "varchar(64)",
    "name": "varchar(200)",
    "status": "varchar(20)",
    "source": "varchar(100)",
    "consent_ip": "varchar(64)",
    "consent_user_agent": "varchar(500)",
    **dict.fromkeys(_DATETIME_COLUMNS, "timestamptz"),
}


def _copy_insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: COPY the chunk into a temporary table, then one INSERT … SELECT … ON CONFLICT
    DO NOTHING (an executemany would be one INSERT per row, even pipelined)."""
    columns = list(rows[0])
    names = ", ".join(columns)
    driver: Any = conn.connection.dbapi_connection
    with driver.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS newsletter_import "
            f"({', '.join(f'{c} {_COPY_TYPES[c]}' for c in columns)}) ON COMMIT DROP"
        )
        with cursor.copy(f"COPY newsletter_import ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
        # column names come from our own row dicts, never from the file
        cursor.execute(
            f"INSERT INTO subscribers ({names}) SELECT {names} FROM newsletter_import ON CONFLICT DO NOTHING"  # noqa: S608
        )
        cursor.execute("TRUNCATE newsletter_import")


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def export_rows(engine: Engine, *, status: str | None = None, page_size: int = 1000) -> Iterator[list[str]]:
    """Every subscriber with an address (erased ones have none), in id order, page by page."""
    if status is not None and status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r} (choose {', '.join(STATUSES)})")
    after = 0
    while True:
        query = (
            select(*(S.c[name] for name in EXPORT_COLUMNS), S.c.id)
            .where(S.c.email.is_not(None), S.c.id > after)
            .order_by(S.c.id)
            .limit(page_size)
        )
        if status is not None:
            query = query.where(S.c.status == status)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            yield [
                _iso(value) if isinstance(value, datetime) else _spreadsheet_safe(value)
                for value in row[: len(EXPORT_COLUMNS)]
            ]
        if len(rows) < page_size:
            return
        after = rows[-1].id


def _spreadsheet_safe(value: object) -> str:
    """Names come from a public form: a leading = + - @ would run as a formula in a spreadsheet
    (OWASP "CSV injection"); a leading apostrophe makes it text."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def iter_export_csv(engine: Engine, *, status: str | None = None) -> Iterator[str]:
    """The CSV export as text chunks (header first), for streaming."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for count, row in enumerate(export_rows(engine, status=status), start=1):
        writer.writerow(row)
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def export_csv(engine: Engine, out: TextIO, *, status: str | None = None) -> int:
    """Write the CSV export to ``out`` as it is read; returns the number of subscribers."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for row in export_rows(engine, status=status):
        writer.writerow(row)
        count += 1
    return count


# --- mails: confirmation and welcome ----------------------------------------------------------------


@lru_cache(maxsize=4)
def _mail_env(directory: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_mail(template: str, **context: Any) -> tuple[str, str]:
    """(html, text) of templates/web/mail/<template>.html and .txt."""
    env = _mail_env(str(MAIL_TEMPLATES))
    html = env.get_template(f"{template}.html").render(**context)
    return html, env.get_template(f"{template}.txt").render(**context)


def latest_issue_url(settings: Settings, engine: Engine) -> str:
    with engine.connect() as conn:
        issue_id = conn.execute(
            select(I.c.id)
            .where(I.c.status.in_(PUBLIC_ISSUE_STATUSES))
            .order_by(I.c.issue_date.desc(), I.c.id.desc())
            .limit(1)
        ).scalar()
    return f"{settings.base_url}/issues/{issue_id}" if issue_id else f"{settings.base_url}/issues"


def _push(settings: Settings, subject: str, html: str, text: str, recipient: Any) -> None:
    from newsletter.delivery.messengers import Content, get_messenger

    content = Content(
        subject=subject,
        html=html,
        text=text,
        from_email=settings.from_email,
        reply_to=settings.reply_to,
        categories=("transactional",),
    )
    messenger = get_messenger(settings)
    try:
        result = messenger.push(content, [recipient])
        messenger.flush()
    finally:
        messenger.close()
    if recipient.email not in result.accepted:
        reason = result.failed.get(recipient.email) or result.error or "not accepted by the provider"
        log.warning("mail %r to subscriber %s not sent: %s", subject, recipient.subscriber_id, reason)


def send_confirmation(settings: Settings, subscriber: Subscriber) -> None:
    """The double opt-in mail: one link that confirms."""
    from newsletter.delivery.messengers import Recipient

    if subscriber.email is None:
        return
    link = confirm_url(settings, subscriber.id, subscriber.email_hash)
    days = max(1, settings.confirm_token_max_age // 86400)
    context = {
        "settings": settings,
        "name": settings.newsletter_name,
        "confirm_url": link,
        "days": days,
        "first_name": (subscriber.name or "").split(" ")[0],
        "postal_address": settings.postal_address,
        "base_url": settings.base_url,
    }
    html, text = render_mail("confirm", **context)
    subject = f"Confirm your subscription to {settings.newsletter_name}"
    _push(settings, subject, html, text, Recipient(email=subscriber.email, subscriber_id=subscriber.id))


def send_welcome(settings: Settings, engine: Engine, subscriber: Subscriber) -> None:
    """What to expect, the latest issue, and the unsubscribe link (in the body and the headers)."""
    from newsletter.delivery.messengers import Recipient

    if subscriber.email is None:
        return
    unsub = unsubscribe_url(settings, subscriber.id, subscriber.email_hash)
    context = {
        "settings": settings,
        "name": settings.newsletter_name,
        "latest_url": latest_issue_url(settings, engine),
        "archive_url": f"{settings.base_url}/issues",
        "unsubscribe_url": unsub,
        "schedule": settings.schedule,
        "first_name": (subscriber.name or "").split(" ")[0],
        "postal_address": settings.postal_address,
        "base_url": settings.base_url,
    }
    html, text = render_mail("welcome", **context)
    subject = f"Welcome to {settings.newsletter_name}"
    recipient = Recipient(
        email=subscriber.email,
        subscriber_id=subscriber.id,
        headers=list_unsubscribe_headers(settings, unsub),
    )
    _push(settings, subject, html, text, recipient)
