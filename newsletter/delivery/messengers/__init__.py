"""Providers. ``get_messenger`` picks one by NEWSLETTER_PROVIDER (or an explicit name).

The one documented seam for late imports in the package: a provider's module is loaded
when it is chosen (the SendGrid client and premailer-backed MIME cost start-up time). The
types every provider shares live outside this package (``delivery/message_types.py``), so
the MIME builder the providers use never runs this file: no import cycle.
"""

from __future__ import annotations

import threading

from newsletter.config import Settings
from newsletter.delivery.message_types import (
    Content,
    Messenger,
    PushResult,
    Recipient,
    Waiter,
    WaitInterrupted,
)
from newsletter.errors import ConfigError

__all__ = [
    "PROVIDERS",
    "Content",
    "Messenger",
    "PushResult",
    "Recipient",
    "WaitInterrupted",
    "Waiter",
    "get_messenger",
]

PROVIDERS = ("outbox", "smtp", "sendgrid")


def get_messenger(
    settings: Settings, name: str | None = None, *, stop: threading.Event | None = None
) -> Messenger:
    """The provider's messenger; ``stop`` cuts its waits between retries short (SIGTERM)."""
    provider = name or settings.provider
    if provider == "outbox":
        from newsletter.delivery.messengers.outbox import OutboxMessenger

        return OutboxMessenger(settings.outbox_dir)
    if provider == "smtp":
        from newsletter.delivery.messengers.smtp import SmtpMessenger

        if settings.smtp_url is None:
            raise ConfigError("the smtp provider needs NEWSLETTER_SMTP_URL")
        return SmtpMessenger(
            settings.smtp_url.get_secret_value(),
            connections=settings.smtp_connections,
            timeout=settings.smtp_timeout,
            max_retries=settings.max_retries,
            backoff=settings.retry_backoff,
            sleep=Waiter(stop, provider),
        )
    if provider == "sendgrid":
        from newsletter.delivery.messengers.sendgrid import SendGridMessenger

        if settings.sendgrid_api_key is None:
            raise ConfigError("the sendgrid provider needs NEWSLETTER_SENDGRID_API_KEY")
        return SendGridMessenger(
            settings.sendgrid_api_key.get_secret_value(),
            settings.sendgrid_api_url,
            timeout=settings.sendgrid_timeout,
            max_retries=settings.max_retries,
            backoff=settings.retry_backoff,
            sleep=Waiter(stop, provider),
        )
    raise ConfigError(f"unknown provider {provider!r} (choose outbox, smtp or sendgrid)")
