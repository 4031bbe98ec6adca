"""Transactional mail: the double opt-in confirmation and the welcome, above delivery.

The subscriber package changes state only; the flows here do that, then mail.
"""

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from sqlalchemy import (
    Engine,
    select,
)

from newsletter.config import Settings
from newsletter.delivery.messengers import Content, Recipient, get_messenger
from newsletter.resources import MAIL_TEMPLATES
from newsletter.subscribers import lifecycle
from newsletter.subscribers.lifecycle import AddResult, ConfirmResult, SubscribeResult
from newsletter.subscribers.links import confirm_url, list_unsubscribe_headers, unsubscribe_url
from newsletter.subscribers.records import I, Subscriber
from newsletter.tables import published_issue

log = logging.getLogger(__name__)


# --- mails: confirmation and welcome ----------------------------------------------------------------


@lru_cache(maxsize=4)
def _mail_env(directory: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # package templates: no stat() per mail
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
            .where(published_issue(I.c.status, I.c.id))
            .order_by(I.c.issue_date.desc(), I.c.id.desc())
            .limit(1)
        ).scalar()
    return f"{settings.base_url}/issues/{issue_id}" if issue_id else f"{settings.base_url}/issues"


def _push(settings: Settings, subject: str, html: str, text: str, recipient: Any) -> None:
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


# --- the flows that change state, then mail -------------------------------------------------------


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
    """``subscribers.subscribe``, then the confirmation mail when one is needed."""
    result = lifecycle.subscribe(
        settings, engine, email, name=name, ip=ip, user_agent=user_agent, source=source, now=now
    )
    if send and result.mail_needed:
        send_confirmation(settings, result.subscriber)
    return result


def confirm(settings: Settings, engine: Engine, token: str, *, send: bool = True) -> ConfirmResult:
    """``subscribers.confirm``, then the welcome mail on the first confirmation."""
    result = lifecycle.confirm(settings, engine, token)
    if send and result.newly_confirmed:
        send_welcome(settings, engine, result.subscriber)
    return result


def resend_confirmation(
    settings: Settings, engine: Engine, token: str, *, send: bool = True
) -> Subscriber | None:
    """``subscribers.resend_confirmation``, then the fresh confirmation mail."""
    current = lifecycle.resend_confirmation(settings, engine, token)
    if send and current is not None:
        send_confirmation(settings, current)
    return current


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
    """``subscribers.add``, then a confirmation mail to each new pending address."""
    results = lifecycle.add(settings, engine, emails, confirmed=confirmed, name=name, source=source)
    if send and not confirmed:
        for result in results:
            if result.action == "added" and result.subscriber is not None:
                send_confirmation(settings, result.subscriber)
    return results
