"""Unsubscribe and confirmation URLs and the List-Unsubscribe headers: the one place they are built."""

from __future__ import annotations

import logging

from newsletter.config import Settings
from newsletter.errors import SubscriberError
from newsletter.tokens import (
    make_confirm_token,
    sign_unsubscribe,
    unsubscribe_signer,
)

log = logging.getLogger(__name__)

# RFC 8058: the List-Unsubscribe-Post value that makes the header's URL one-click
ONE_CLICK = "List-Unsubscribe=One-Click"

# --- unsubscribe URL and headers: the one place they are built -----------------------------------


class UnsubscribeLinks:
    """Unsubscribe URLs and List-Unsubscribe headers for many recipients, the key read once."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.url_prefix = f"{settings.base_url}/unsubscribe/"
        self._signer = unsubscribe_signer(settings.secret())

    def token(self, subscriber_id: int, email_hash: str) -> str:
        """The signed part of the URL (after ``url_prefix``)."""
        return sign_unsubscribe(self._signer, subscriber_id, email_hash)

    def url(self, subscriber_id: int, email_hash: str) -> str:
        """The personal unsubscribe page (GET shows a button, POST is RFC 8058 one-click)."""
        return self.url_prefix + self.token(subscriber_id, email_hash)

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
        "List-Unsubscribe-Post": ONE_CLICK,
    }


def confirm_url(settings: Settings, subscriber_id: int, email_hash: str) -> str:
    return f"{settings.base_url}/confirm/{make_confirm_token(settings, subscriber_id, email_hash)}"
