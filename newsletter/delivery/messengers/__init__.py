"""Providers. ``get_messenger`` picks one by NEWSLETTER_PROVIDER (or an explicit name)."""

from __future__ import annotations

from newsletter.config import Settings
from newsletter.delivery.messengers.base import Content, Messenger, PushResult, Recipient
from newsletter.delivery.messengers.outbox import OutboxMessenger
from newsletter.errors import ConfigError

__all__ = ["PROVIDERS", "Content", "Messenger", "OutboxMessenger", "PushResult", "Recipient", "get_messenger"]

PROVIDERS = ("outbox", "smtp", "sendgrid")


def get_messenger(settings: Settings, name: str | None = None) -> Messenger:
    provider = name or settings.provider
    if provider == "outbox":
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
        )
    raise ConfigError(f"unknown provider {provider!r} (choose outbox, smtp or sendgrid)")
