"""Signed tokens (itsdangerous), one salt per purpose so a token never works for another.

    confirm       [subscriber_id, hash prefix]   expires after CONFIRM_TOKEN_MAX_AGE
    unsubscribe   "<subscriber_id>-<hash prefix>" never expires (it sits in every mail)
    admin         {"n": nonce, "k": key id}      the admin session cookie, 12 hours
    csrf          session nonce                  hidden field of every admin form

The unsubscribe token is made for every recipient of every issue, so it is a
plain ``itsdangerous.Signer`` signature over a short text (1.5 µs with the key derived
once, and a shorter URL) from one signer kept per key, rather than a serializer's JSON payload
(22 µs).

A tampered token raises ``InvalidTokenError``; a genuine but expired one raises
``ExpiredTokenError`` that still carries the payload, so the page can offer to
resend. Both are ``TokenError`` (HTTP 400).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, Signer, URLSafeTimedSerializer

from newsletter.config import Settings
from newsletter.errors import TokenError

SALT_CONFIRM = "newsletter.confirm.v1"
SALT_UNSUBSCRIBE = "newsletter.unsubscribe.v2"
SALT_ADMIN = "newsletter.admin-session.v1"
SALT_CSRF = "newsletter.csrf.v1"

ADMIN_SESSION_MAX_AGE = 12 * 3600
CSRF_MAX_AGE = 12 * 3600
# How long an expired confirmation link may still ask for a fresh one.
RESEND_MAX_AGE = 90 * 24 * 3600
# Tokens carry a prefix of the address hash: enough to bind them (they are signed), short URLs.
HASH_CHARS = 16


class InvalidTokenError(TokenError):
    """The token was not made by us (tampered, truncated, another purpose or key)."""

    expired = False


class ExpiredTokenError(TokenError):
    """A genuine token past its age. ``payload`` is still trustworthy (it was signed)."""

    expired = True

    def __init__(self, message: str, *, payload: Any = None) -> None:
        self.payload = payload
        super().__init__(message)


@dataclass(frozen=True)
class ConfirmClaim:
    subscriber_id: int
    hash_prefix: str
    issued_at: datetime


@dataclass(frozen=True)
class UnsubscribeClaim:
    subscriber_id: int
    hash_prefix: str


def _timed(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret(), salt=salt)


class UnsubscribeSigner:
    """``itsdangerous.Signer``'s tokens byte for byte (HMAC-SHA1 under the derived key, URL-safe
    base64 without padding), with the key derived once rather than per token: 1.5 µs a token
    instead of 6, on the send's hot path. Checking a token is itsdangerous's own ``unsign``.
    """

    def __init__(self, secret: str) -> None:
        self._signer = Signer(secret, salt=SALT_UNSUBSCRIBE)
        self._key = self._signer.derive_key()

    def sign(self, value: str) -> str:
        mac = hmac.digest(self._key, value.encode("ascii"), "sha1")
        return f"{value}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"

    def unsign(self, token: str) -> bytes:
        return self._signer.unsign(token)


@lru_cache(maxsize=8)
def unsubscribe_signer(secret: str) -> UnsubscribeSigner:
    """One signer per key: building one per recipient would cost more than signing."""
    return UnsubscribeSigner(secret)


_UNSUBSCRIBE_PAYLOAD = re.compile(r"([0-9]{1,18})-([0-9a-f]{8,64})")


def _pair(payload: Any, what: str) -> tuple[int, str]:
    if (
        isinstance(payload, list)
        and len(payload) == 2
        and isinstance(payload[0], int)
        and not isinstance(payload[0], bool)
        and isinstance(payload[1], str)
        and len(payload[1]) >= 8
    ):
        return payload[0], payload[1]
    raise InvalidTokenError(f"this {what} link is not valid")


# --- confirmation ---------------------------------------------------------------------------


def make_confirm_token(settings: Settings, subscriber_id: int, email_hash: str) -> str:
    return _timed(settings, SALT_CONFIRM).dumps([subscriber_id, email_hash[:HASH_CHARS]])


def read_confirm_token(settings: Settings, token: str, *, max_age: int | None = None) -> ConfirmClaim:
    """The claim of a confirmation token; ExpiredTokenError / InvalidTokenError otherwise."""
    serializer = _timed(settings, SALT_CONFIRM)
    age = settings.confirm_token_max_age if max_age is None else max_age
    try:
        payload, issued = serializer.loads(token, max_age=age, return_timestamp=True)
    except SignatureExpired as exc:
        try:
            expired_payload = serializer.load_payload(exc.payload) if exc.payload is not None else None
        except BadSignature:
            expired_payload = None
        raise ExpiredTokenError("this confirmation link has expired", payload=expired_payload) from None
    except BadSignature:
        raise InvalidTokenError("this confirmation link is not valid") from None
    subscriber_id, prefix = _pair(payload, "confirmation")
    return ConfirmClaim(subscriber_id=subscriber_id, hash_prefix=prefix, issued_at=issued)


def read_expired_confirm_token(settings: Settings, token: str) -> ConfirmClaim:
    """A confirmation token checked for authenticity only (up to RESEND_MAX_AGE): to resend it."""
    return read_confirm_token(settings, token, max_age=RESEND_MAX_AGE)


# --- unsubscribe --------------------------------------------------------------------------------


def sign_unsubscribe(signer: UnsubscribeSigner, subscriber_id: int, email_hash: str) -> str:
    """The token with a signer already at hand (see ``unsubscribe_signer``): the send's hot path."""
    return signer.sign(f"{int(subscriber_id)}-{email_hash[:HASH_CHARS]}")


def make_unsubscribe_token(settings: Settings, subscriber_id: int, email_hash: str) -> str:
    return sign_unsubscribe(unsubscribe_signer(settings.secret()), subscriber_id, email_hash)


def read_unsubscribe_token(settings: Settings, token: str) -> UnsubscribeClaim:
    try:
        payload = unsubscribe_signer(settings.secret()).unsign(token).decode("ascii")
    except (BadSignature, UnicodeError):
        raise InvalidTokenError("this unsubscribe link is not valid") from None
    match = _UNSUBSCRIBE_PAYLOAD.fullmatch(payload)
    if match is None:
        raise InvalidTokenError("this unsubscribe link is not valid")
    return UnsubscribeClaim(subscriber_id=int(match.group(1)), hash_prefix=match.group(2))


# --- admin session and CSRF --------------------------------------------------------------------


def _key_id(admin_token: str) -> str:
    """Sessions die when the admin token changes."""
    return hashlib.sha256(admin_token.encode()).hexdigest()[:16]


def make_admin_session(settings: Settings, admin_token: str) -> tuple[str, str]:
    """(cookie value, nonce): the nonce binds the CSRF tokens of this session."""
    nonce = secrets.token_urlsafe(16)
    return _timed(settings, SALT_ADMIN).dumps({"n": nonce, "k": _key_id(admin_token)}), nonce


def read_admin_session(settings: Settings, value: str, admin_token: str) -> str:
    """The session's nonce, or TokenError."""
    try:
        payload = _timed(settings, SALT_ADMIN).loads(value, max_age=ADMIN_SESSION_MAX_AGE)
    except SignatureExpired:
        raise ExpiredTokenError("your admin session has expired") from None
    except BadSignature:
        raise InvalidTokenError("not a valid admin session") from None
    if not isinstance(payload, dict) or payload.get("k") != _key_id(admin_token):
        raise InvalidTokenError("not a valid admin session")
    nonce = payload.get("n")
    if not isinstance(nonce, str):
        raise InvalidTokenError("not a valid admin session")
    return nonce


def make_csrf_token(settings: Settings, binding: str) -> str:
    return _timed(settings, SALT_CSRF).dumps(binding)


def check_csrf_token(settings: Settings, token: str | None, binding: str) -> None:
    if not token:
        raise InvalidTokenError("the form is missing its security token; reload the page and try again")
    try:
        payload = _timed(settings, SALT_CSRF).loads(token, max_age=CSRF_MAX_AGE)
    except SignatureExpired:
        raise ExpiredTokenError("the form has expired; reload the page and try again") from None
    except BadSignature:
        raise InvalidTokenError("the form's security token is not valid; reload the page") from None
    if not isinstance(payload, str) or not secrets.compare_digest(payload, binding):
        raise InvalidTokenError("the form's security token is not valid; reload the page")
