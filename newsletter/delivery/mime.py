"""RFC 5322 messages for the providers that build them locally (outbox, smtp)."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

from newsletter.delivery.messengers.base import Content, Recipient

# RFC 5322's hard limit, not the 78-column default: a header with no space to fold at
# (List-Unsubscribe's URL) is otherwise turned into an RFC 2047 encoded-word, which
# mail clients do not read as a URL, and Gmail then shows no unsubscribe button.
MESSAGE_POLICY = SMTP.clone(max_line_length=998)


def personalize(text: str, substitutions: dict[str, str] | object) -> str:
    """Fill placeholders by plain substitution (the issue was rendered once)."""
    if not substitutions:
        return text
    for placeholder, value in substitutions.items():  # type: ignore[attr-defined]
        text = text.replace(placeholder, value)
    return text


def build_message(content: Content, recipient: Recipient, *, domain: str | None = None) -> EmailMessage:
    """multipart/alternative, text then HTML, with the recipient's own headers."""
    subs = dict(recipient.substitutions)
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = content.from_email
    message["To"] = recipient.email
    message["Subject"] = personalize(content.subject, subs)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=domain or _domain_of(content.from_email))
    if content.reply_to:
        message["Reply-To"] = content.reply_to
    if content.issue_id:
        message["X-Newsletter-Issue"] = content.issue_id
    for name, value in recipient.headers.items():
        message[name] = value
    message.set_content(personalize(content.text, subs), subtype="plain", cte="quoted-printable")
    message.add_alternative(personalize(content.html, subs), subtype="html", cte="quoted-printable")
    return message


def _domain_of(address: str) -> str:
    tail = address.rsplit("@", 1)[-1]
    return tail.strip(" >") or "localhost"
