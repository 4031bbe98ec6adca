"""Addresses: normalisation, the hash stored for every address, clean display names."""

from __future__ import annotations

import hashlib
import logging
import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from newsletter.errors import SubscriberError

log = logging.getLogger(__name__)

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
