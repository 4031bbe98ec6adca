"""MessageTemplate against the email package: the same message, built a thousand times faster.

The oracle below is how a message is built with the email package alone (what
the providers did before the template). Both are parsed back with the standard
parser and must agree on every header and on each part's decoded text, for any
text, any placeholder position and any recipient values.
"""

from __future__ import annotations

import email
import email as email_lib
from dataclasses import replace
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.delivery.message_types import Content, Recipient, wire_address
from newsletter.delivery.mime import MESSAGE_POLICY, MessageTemplate, personalize
from newsletter.issues.placeholders import PLACEHOLDERS, TEXT_PLACEHOLDERS

TOKENS = [*PLACEHOLDERS.values(), *TEXT_PLACEHOLDERS.values()]


def oracle(content: Content, recipient: Recipient) -> bytes:
    subs = dict(recipient.substitutions)
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["From"] = content.from_email
    address = wire_address(recipient.email)
    message["To"] = Address(display_name=recipient.name, addr_spec=address) if recipient.name else address
    message["Subject"] = personalize(content.subject, subs)
    if content.reply_to:
        message["Reply-To"] = content.reply_to
    if content.issue_id:
        message["X-Newsletter-Issue"] = content.issue_id
    for name, value in recipient.headers.items():
        message[name] = value
    message.set_content(personalize(content.text, subs), subtype="plain", cte="quoted-printable")
    message.add_alternative(personalize(content.html, subs), subtype="html", cte="quoted-printable")
    return message.as_bytes()


def parsed(data: bytes) -> tuple[dict[str, str], str, str]:
    message = email.message_from_bytes(data, policy=default)
    # Date, Message-ID and the MIME boundary differ between any two messages by design.
    headers = {name: str(value) for name, value in message.items() if name not in ("Date", "Message-ID")}
    headers["Content-Type"] = message.get_content_type()
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return headers, text, html


def content_with(text: str, html: str, subject: str = "This week: Axolotl vs Unsloth") -> Content:
    return Content(
        subject=subject,
        html=html,
        text=text,
        from_email="Weekly AI Tool Verdicts <verdicts@example.com>",
        reply_to="editor@example.com",
        categories=("newsletter",),
        issue_id="2026-W48",
    )


def recipient_with(
    url: str, first: str, *, email: str = "ada@example.com", name: str | None = None
) -> Recipient:
    return Recipient(
        email=email,
        subscriber_id=7,
        name=name,
        substitutions={
            PLACEHOLDERS["unsubscribe_url"]: url.replace("&", "&amp;"),
            TEXT_PLACEHOLDERS["unsubscribe_url"]: url,
            PLACEHOLDERS["first_name"]: first,
            TEXT_PLACEHOLDERS["first_name"]: first,
        },
        headers={"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )


def test_a_realistic_issue_matches_the_email_package() -> None:
    html = (
        '<!doctype html>\n<html lang="en"><body><p>Hi %%FIRST_NAME%%,</p>'
        + '<td style="padding:0 16px">Axolotl ships — 3 ship / 1 skip ✓</td>' * 300
        + '<a href="%%UNSUBSCRIBE_URL%%">Unsubscribe</a>\n</body></html>'
    )
    text = (
        "Hi %%FIRST_NAME_TXT%%,\n\n"
        + "Axolotl v0.16: ship. “Fast” \n" * 50
        + "Unsubscribe: %%UNSUBSCRIBE_URL_TXT%%"
    )
    content = content_with(text, html)
    recipient = recipient_with("https://verdicts.example.com/unsubscribe/123-0123456789abcdef.Sig_-x", "Zoë")
    mail = MessageTemplate(content).render(recipient)
    assert parsed(mail.data) == parsed(oracle(content, recipient))
    body = mail.data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76  # quoted-printable's limit
    assert b"\n" not in mail.data.replace(b"\r\n", b"")  # CRLF only
    assert mail.message_id in mail.data.decode()


line_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"), max_size=300
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(st.one_of(line_text, st.sampled_from(TOKENS)), max_size=12),
    url=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="<>,"),
        min_size=1,
        max_size=200,
    ),
    first=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
)
def test_any_text_and_values_decode_exactly_as_the_email_package_builds_them(
    pieces: list[str], url: str, first: str
) -> None:
    body = "".join(pieces)
    content = content_with(body, "<p>" + body + "</p>")
    recipient = recipient_with("https://x.example/u/" + url, first)
    assert parsed(MessageTemplate(content).render(recipient).data) == parsed(oracle(content, recipient))


def test_a_line_break_in_a_personal_header_is_refused() -> None:
    recipient = Recipient(
        email="ada@example.com", headers={"List-Unsubscribe": "<https://x>\r\nBcc: eve@x.com"}
    )
    try:
        MessageTemplate(content_with("hi", "<p>hi</p>")).render(recipient)
    except ValueError as error:
        assert "line breaks" in str(error)
    else:
        raise AssertionError("a header with CRLF was accepted")


def header_lines(data: bytes) -> dict[bytes, bytes]:
    """Each header's folded bytes, as written on the wire (continuation lines included)."""
    head = data.split(b"\r\n\r\n", 1)[0]
    lines: dict[bytes, bytes] = {}
    name = b""
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            lines[name] += b"\r\n" + line
        else:
            name = line.split(b":", 1)[0]
            lines[name] = line
    return lines


PERSONAL = (b"To", b"Subject", b"From", b"Reply-To", b"List-Unsubscribe", b"List-Unsubscribe-Post")

REAL_SUBJECTS = [
    "Axolotl v0.16 ships — +2 more verdicts",
    "Café crème: Mistral 8x24B vs Axolotl — the panel’s split",
    "李小龙的选择: Qwen 3 vs DeepSeek — 3 of 4 ship",
    "🚀 Ship it? Unsloth vs Axolotl — “no panel take” & more",
    "Seán O'Brien's pick: " + "a very long subject that goes on and on — " * 6,
]


@pytest.mark.parametrize("subject", REAL_SUBJECTS)
@pytest.mark.parametrize(
    ("email", "name"),
    [
        ("zoe@example.com", "Zoë Ünal"),
        ("li@例え.jp", "李 小龙"),
        ("sean@bücher.de", "Seán O'Brien"),
        ("a@b.example", None),
    ],
)
def test_real_subjects_and_names_are_encoded_byte_for_byte_as_the_email_package_does(
    subject: str, email: str, name: str | None
) -> None:
    content = replace(
        content_with("Hi %%FIRST_NAME_TXT%%", "<p>Hi %%FIRST_NAME%%</p>", subject),
        from_email="Verdicts — Café <verdicts@example.com>",
    )
    recipient = recipient_with(
        "https://verdicts.example.com/unsubscribe/1-abc.Sig",
        (name or "").split(" ")[0],
        email=email,
        name=name,
    )
    mail = MessageTemplate(content).render(recipient).data
    expected = oracle(content, recipient)
    ours, theirs = header_lines(mail), header_lines(expected)
    for header in PERSONAL:
        assert ours[header] == theirs[header], header
    assert mail.isascii()
    message = email_lib.message_from_bytes(mail, policy=default)
    assert message["Subject"] == subject
    assert message["To"].addresses[0].display_name == (name or "")
    assert message["To"].addresses[0].domain.isascii()
    assert parsed(mail) == parsed(expected)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=400),
    name=st.one_of(
        st.none(), st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=80)
    ),
)
def test_any_unicode_subject_and_name_round_trip(subject: str, name: str | None) -> None:
    content = content_with("Hi", "<p>Hi</p>", subject)
    recipient = recipient_with("https://x.example/u/1", "x", name=name)
    mail = MessageTemplate(content).render(recipient).data
    assert mail.isascii()
    message = email_lib.message_from_bytes(mail, policy=default)
    theirs = email_lib.message_from_bytes(oracle(content, recipient), policy=default)
    assert message["Subject"] == theirs["Subject"]
    assert str(message["To"]) == str(theirs["To"])
    assert header_lines(mail)[b"Subject"] == header_lines(oracle(content, recipient))[b"Subject"]
