"""The Messenger protocol every provider implements (after listmonk: name, push, flush, close).

A push carries one ``Content`` (rendered once per issue, with placeholders) and a
batch of ``Recipient`` values (each with its own substitutions and headers).
Providers that can personalise server-side (SendGrid) send the placeholders and
substitutions as they are; the others fill them in locally, per recipient.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import ProviderUnavailableError


@dataclass(frozen=True)
class Content:
    """What every recipient of one push gets, before personalisation."""

    subject: str
    html: str
    text: str
    from_email: str
    reply_to: str | None = None
    categories: tuple[str, ...] = ()
    issue_id: str | None = None


@lru_cache(maxsize=4096)
def wire_address(email: str) -> str:
    """The address as it goes on the wire (SMTP envelope, To header, provider API).

    Stored addresses keep an internationalised domain readable (``ada@bücher.de``);
    mail systems want it in ASCII (``ada@xn--bcher-kva.de``), as email-validator
    computes it. Local parts are ASCII already: subscribing refuses the others.
    """
    if email.isascii():
        return email
    try:
        ascii_email = validate_email(email, check_deliverability=False, allow_smtputf8=False).ascii_email
    except EmailNotValidError:
        return email  # let the provider say what is wrong with it, for this recipient only
    return ascii_email or email


@dataclass(frozen=True)
class Recipient:
    email: str
    subscriber_id: int | None = None
    # the display name of the To header (the subscriber's name), or None for the bare address
    name: str | None = None
    # placeholder text -> value, applied to subject, html and text
    substitutions: Mapping[str, str] = field(default_factory=dict)
    # per-recipient headers, e.g. List-Unsubscribe / List-Unsubscribe-Post
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class PushResult:
    """What the provider did with each address of a push.

    ``accepted``: taken by the provider. ``failed``: permanent error per address.
    ``refused``: the provider refuses the address itself (e.g. SendGrid's 400 on
    ``personalizations.N.to.0.email``): failed, and kept from later sends.
    ``temporary``: the server said "later" for this address (SMTP 4xx), with its reply:
    pending again with a not-before time (the send goes on with everyone else).
    ``deferred``: certainly not sent (e.g. the server was unreachable): safe to send again.
    ``uncertain``: the connection died while the message was being handed over; whether
    it went out is unknown, so the ledger keeps it ``in_flight`` (never resent automatically).
    ``error``: why some addresses were deferred (the send stops after recording the push);
    without the provider's name, which the caller adds.
    """

    accepted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    message_ids: dict[str, str] = field(default_factory=dict)
    batch_message_id: str | None = None
    deferred: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    error: str | None = None
    refused: dict[str, str] = field(default_factory=dict)
    temporary: dict[str, str] = field(default_factory=dict)
    # the send was stopped (SIGTERM) while waiting: ``deferred`` are unsent, nothing is wrong
    interrupted: bool = False


class WaitInterrupted(ProviderUnavailableError):
    """SIGTERM/SIGINT arrived while a messenger waited to retry: nothing of the batch was handed over."""


class Waiter:
    """The waits between retries, cut short the moment the send is stopped (SIGTERM, SIGINT)."""

    def __init__(self, stop: threading.Event | None, provider: str) -> None:
        self.stop = stop or threading.Event()
        self.provider = provider

    def __call__(self, seconds: float) -> None:
        # Event.wait returns as soon as the event is set: a signal ends the wait at once.
        if self.stop.wait(max(0.0, seconds)):
            raise WaitInterrupted("stopped while waiting to retry", provider=self.provider)


class Messenger(Protocol):
    name: str
    # the most recipients one push may carry (SendGrid: 1,000 personalizations)
    max_batch_size: int

    def push(self, content: Content, recipients: Sequence[Recipient]) -> PushResult:
        """Hand the batch to the provider. Raises ProviderError when it cannot."""
        ...

    def flush(self) -> None:
        """Finish anything buffered."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
