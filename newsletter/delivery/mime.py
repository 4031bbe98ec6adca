"""RFC 5322 messages for the providers that build them locally (outbox, smtp).

An issue goes to many recipients and only a few values change between them,
so the message is built the way the issue is rendered: once. ``MessageTemplate``
has the email package build the issue's multipart/alternative message (text
then HTML, quoted-printable) around two sentinels, and quoted-printable-encodes
each part's static text once, cut at its placeholders. Per recipient only the
placeholder values are encoded and the personal headers (To, Date, Message-ID,
List-Unsubscribe...) are folded by the same package's policy: about 30 µs,
where building and serialising a whole ``EmailMessage`` took 1.5 ms.

Each encoded piece starts on a fresh line (a soft line break ``=\\r\\n`` ends the
one before), so the result is valid quoted-printable whatever the values, and
decodes to exactly the personalised text (tests/test_mime.py checks it against
messages built entirely by the email package).
"""

from __future__ import annotations

import binascii
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

from newsletter.delivery.message_types import Content, Recipient, wire_address
from newsletter.issues.placeholders import split_placeholders

# RFC 5322's hard limit, not the 78-column default: a header with no space to fold at
# (List-Unsubscribe's URL) is otherwise turned into an RFC 2047 encoded-word, which
# mail clients do not read as a URL, and Gmail then shows no unsubscribe button.
_MAX_LINE = 998
MESSAGE_POLICY = SMTP.clone(max_line_length=_MAX_LINE)

# Plain ASCII letters: quoted-printable leaves them as they are, so they can be found.
_TEXT_SENTINEL = b"NEWSLETTERTEXTPARTGOESHERE"
_HTML_SENTINEL = b"NEWSLETTERHTMLPARTGOESHERE"
_SOFT_BREAK = b"=\r\n"


def personalize(text: str, substitutions: Mapping[str, str]) -> str:
    """Fill placeholders by plain substitution (the issue was rendered once)."""
    for placeholder, value in substitutions.items():
        text = text.replace(placeholder, value)
    return text


@dataclass(frozen=True)
class Mail:
    message_id: str
    data: bytes  # the whole RFC 5322 message, CRLF line ends


class MessageTemplate:
    """One issue's message, built once; ``render`` makes each recipient's copy."""

    def __init__(self, content: Content, *, domain: str | None = None) -> None:
        self._static_head, self._between, self._after = _skeleton(
            content.from_email, content.reply_to, content.issue_id
        )
        self._subject = content.subject
        self._text = _EncodedPart(content.text)
        self._html = _EncodedPart(content.html)
        self._domain = domain or _domain_of(content.from_email)

    def render(self, recipient: Recipient) -> Mail:
        substitutions = recipient.substitutions
        message_id = make_msgid(domain=self._domain)
        headers = [
            ("To", _to_header(recipient)),
            ("Subject", personalize(self._subject, substitutions)),
            ("Date", formatdate(localtime=False, usegmt=True)),
            ("Message-ID", message_id),
            *recipient.headers.items(),
        ]
        data = b"".join(
            (
                *(fold_header(name, value) for name, value in headers),
                self._static_head,
                self._text.encode(substitutions),
                self._between,
                self._html.encode(substitutions),
                self._after,
            )
        )
        return Mail(message_id=message_id, data=data)


@functools.lru_cache(maxsize=64)
def _skeleton(from_email: str, reply_to: str | None, issue_id: str | None) -> tuple[bytes, bytes, bytes]:
    """The message around its two parts, as the email package lays it out: (head, between, after).

    Cached: it depends on nothing personal, and building it is most of the cost of a
    single message (a confirmation mail). One boundary for many messages is fine: a
    quoted-printable body never contains "==".
    """
    skeleton = EmailMessage(policy=MESSAGE_POLICY)
    skeleton["From"] = from_email
    if reply_to:
        skeleton["Reply-To"] = reply_to
    if issue_id:
        skeleton["X-Newsletter-Issue"] = issue_id
    skeleton.set_content(_TEXT_SENTINEL.decode(), subtype="plain", cte="quoted-printable")
    skeleton.add_alternative(_HTML_SENTINEL.decode(), subtype="html", cte="quoted-printable")
    head, _, body = skeleton.as_bytes().partition(b"\r\n\r\n")
    before_text, _, rest = body.partition(_TEXT_SENTINEL + b"\r\n")
    between, _, after_html = rest.partition(_HTML_SENTINEL + b"\r\n")
    if not after_html:
        raise ValueError("the email package laid the message out unexpectedly")
    # The sentinels' own line ends were taken out above: each part ends its last line
    # itself (a hard or a soft line break).
    return head + b"\r\n\r\n" + before_text, between, after_html


class _EncodedPart:
    """A body part's text cut at its placeholders, the static pieces encoded once."""

    def __init__(self, text: str) -> None:
        text = text.replace("\r\n", "\n")
        if not text.endswith("\n"):
            text += "\n"  # as the email package does: a part ends with a line end
        self._pieces: list[bytes | str] = []
        for index, piece in enumerate(split_placeholders(text)):
            if index % 2:
                self._pieces.append(piece)  # a placeholder, filled per recipient
            elif piece:
                self._pieces.append(_quoted_printable(piece))

    def encode(self, substitutions: Mapping[str, str]) -> bytes:
        return b"".join(
            piece if isinstance(piece, bytes) else _quoted_printable(substitutions.get(piece, piece))
            for piece in self._pieces
        )


def _quoted_printable(text: str) -> bytes:
    """``text`` as quoted-printable lines ending in CRLF; a soft break when it ends mid-line."""
    if not text:
        return b""
    encoded = binascii.b2a_qp(text.encode("utf-8"))
    # b2a_qp keeps the input's line ends and uses the first one it sees for its own soft
    # breaks: make every line end CRLF.
    encoded = encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return encoded if encoded.endswith(b"\r\n") else encoded + _SOFT_BREAK


def fold_header(name: str, value: str) -> bytes:
    """One header as the email package writes it: RFC 2047 encoded-words for any non-ASCII text.

    The value goes through the policy's header factory, as ``EmailMessage`` does when a
    header is set. Handing ``fold_binary`` a plain ``str`` skips that step: the value is
    then written as it is and encoded as ASCII, which raises ``UnicodeEncodeError`` for
    "Café" or an em dash on Python 3.11 and 3.12 (3.13 refolds non-ASCII itself).
    An ASCII value that fits on one line is already in its folded form; it skips the
    parser (most headers of most messages), with the same bytes.
    """
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} may not contain line breaks")
    # "=?" would read as the start of an encoded-word: the email package escapes that case.
    if value.isascii() and "=?" not in value and len(name) + 2 + len(value) <= _MAX_LINE:
        return f"{name}: {value}\r\n".encode("ascii")
    return _fold_parsed(name, value)


@functools.lru_cache(maxsize=1024)
def _fold_parsed(name: str, value: str) -> bytes:
    # Cached: the subject (and a From name) is the same for every recipient of an issue.
    return MESSAGE_POLICY.fold_binary(name, MESSAGE_POLICY.header_factory(name, value))


def _to_header(recipient: Recipient) -> str:
    """The To header: the address in ASCII (IDN domains as punycode), with the name if known."""
    address = wire_address(recipient.email)
    if any(c in value for value in (address, recipient.name or "") for c in "\r\n"):
        raise ValueError("header To may not contain line breaks")
    if not recipient.name:
        return address
    return str(Address(display_name=recipient.name, addr_spec=address))


def _domain_of(address: str) -> str:
    tail = address.rsplit("@", 1)[-1]
    return tail.strip(" >") or "localhost"
