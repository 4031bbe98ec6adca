"""Every real issue reaches every inbox: the product as a user runs it, on the data users have.

One flow per provider, through the real command (``python -m newsletter`` in a
subprocess, on whichever interpreter runs the suite: ``make test`` runs this module
on every supported Python it finds):

    db upgrade -> comparisons import (every sample page + non-ASCII variants)
    -> subscribers import (names like Zoë Ünal, 李 小龙, Seán O'Brien; an IDN domain)
    -> issue build -> send --test-to -> send --yes

and every delivered message is read as a mail client reads it
(``email.message_from_bytes(..., policy=default)``): the decoded subject is the
issue's subject, one To with the subscriber's name, a text and an HTML part that
decode, the first name in the greeting, no placeholder left, and a
``List-Unsubscribe`` + ``List-Unsubscribe-Post`` pair of the recipient's own.
"""

from __future__ import annotations

import email
import json
import re
import shutil
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SEEDS
from tests.support.delivery_fixtures import run_cli
from tests.support.fake_sendgrid import API_KEY, FakeSendGrid
from tests.support.smtp_server import SmtpServer

SUBSCRIBERS = [
    ("zoe@example.com", "Zoë Ünal"),
    ("li@example.org", "李 小龙"),
    ("sean@example.net", "Seán O'Brien"),
    ("ada@bücher.de", "Ada 🚀 Lovelace"),
    ("plain@example.com", ""),
]
TEST_TO = "editor@example.com"

# Each seed page, retold with the text users paste: accents, CJK, emoji, apostrophes, dashes.
VARIANTS = {
    "Axolotl v0.16": "Äxolotl Crème v0.16",
    "Mistral 8x24B Mixture-of-Experts": "Mistral 8x24B — Édition 東京",
    "Mistral 3 8B & 70B Instruct (Open Source)": "通义千问 Qwen 3 Instruct (Open Source)",
    "Mistral 3 Small": "Mistral 3 Small 🚀",
    "The thesis here": "L’hypothèse — 李小龙 says — here",
    "Developer Tools": "Outils de développement",
}


def variant_page(text: str) -> str:
    for before, after in VARIANTS.items():
        text = text.replace(before, after)
    return text


@pytest.fixture
def install(tmp_path: Path) -> dict[str, str]:
    """A fresh SQLite install with the sample pages, their non-ASCII variants and the subscribers."""
    pages = tmp_path / "pages"
    pages.mkdir()
    for seed in sorted(SEEDS.glob("*.txt")):
        shutil.copy(seed, pages / seed.name)
        (pages / f"variant_{seed.name}").write_text(
            variant_page(seed.read_text(encoding="utf-8")), encoding="utf-8"
        )
    csv = tmp_path / "subscribers.csv"
    csv.write_text("email,name\n" + "".join(f"{e},{n}\n" for e, n in SUBSCRIBERS), encoding="utf-8")
    env = {
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'newsletter.db'}",
        "NEWSLETTER_DATA_DIR": str(tmp_path / "data"),
        "NEWSLETTER_ISSUES_DIR": str(tmp_path / "issues"),
        "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox"),
        "NEWSLETTER_PROVIDER": "outbox",
        "NEWSLETTER_SECRET_KEY": "acceptance-secret-key",
        "NEWSLETTER_ADMIN_TOKEN": "acceptance-admin-token",
        "NEWSLETTER_BASE_URL": "http://127.0.0.1:8000",
        "NEWSLETTER_FROM_EMAIL": "Les Verdicts — Café IA <verdicts@example.com>",
        "NEWSLETTER_ISSUE_SIZE": "10",
        "NEWSLETTER_RETRY_BACKOFF": "0.05",
    }
    for args in (
        ["db", "upgrade"],
        ["comparisons", "import", str(pages)],
        ["subscribers", "import", str(csv), "--confirmed"],
    ):
        done = run_cli(env, *args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return env


def build_issue(env: dict[str, str]) -> tuple[str, dict[str, Any]]:
    done = run_cli(env, "issue", "build")
    assert done.returncode == 0, done.stderr
    issue_id = done.stdout.strip().splitlines()[-1]
    issue = json.loads((Path(env["NEWSLETTER_ISSUES_DIR"]) / issue_id / "issue.json").read_text("utf-8"))
    assert len(issue["comparisons"]) == 6
    assert not issue["subject"].isascii(), "the point: a subject with non-ASCII text"
    return issue_id, issue


@pytest.fixture(params=["outbox", "smtp", "sendgrid"])
def provider(request: pytest.FixtureRequest, install: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """The provider's name and the thing that received the mail (a folder, a server)."""
    name = request.param
    if name == "outbox":
        yield name, Path(install["NEWSLETTER_OUTBOX_DIR"])
    elif name == "smtp":
        with SmtpServer() as server:
            install.update(NEWSLETTER_PROVIDER="smtp", NEWSLETTER_SMTP_URL=server.url)
            yield name, server
    else:
        with FakeSendGrid() as fake:
            install.update(
                NEWSLETTER_PROVIDER="sendgrid",
                NEWSLETTER_SENDGRID_API_KEY=API_KEY,
                NEWSLETTER_SENDGRID_API_URL=fake.url,
            )
            yield name, fake


def delivered(name: str, receiver: Any) -> list[EmailMessage]:
    """What reached the inboxes, parsed as a mail client parses it."""
    if name == "outbox":
        raw = [path.read_bytes() for path in sorted(receiver.glob("*.eml"))]
    elif name == "smtp":
        raw = [data for _rcpts, data in receiver.messages]
    else:
        raw = [as_sendgrid_would_deliver(body, p) for body, p in sendgrid_messages(receiver)]
    return [email.message_from_bytes(data, policy=default) for data in raw]  # type: ignore[misc]


def sendgrid_messages(fake: FakeSendGrid) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for body, request in zip(fake.bodies, fake.requests, strict=True):
        for personalization in request["personalizations"]:
            yield body, personalization


def as_sendgrid_would_deliver(body: dict[str, Any], personalization: dict[str, Any]) -> bytes:
    """The message SendGrid builds from one personalization: substitutions applied everywhere."""

    def fill(text: str) -> str:
        for token, value in personalization.get("substitutions", {}).items():
            text = text.replace(token, value)
        return text

    message = EmailMessage(policy=default)
    sender = body["from"]
    message["From"] = f"{sender.get('name', '')} <{sender['email']}>"
    to = personalization["to"][0]
    message["To"] = f"{to['name']} <{to['email']}>" if to.get("name") else to["email"]
    message["Subject"] = fill(body["subject"])
    for header, value in personalization.get("headers", {}).items():
        message[header] = value
    parts = {part["type"]: fill(part["value"]) for part in body["content"]}
    message.set_content(parts["text/plain"])
    message.add_alternative(parts["text/html"], subtype="html")
    return message.as_bytes()


def check_inbox(message: EmailMessage, subject: str, name: str) -> str:
    """One message, read as a client does; returns its List-Unsubscribe URL."""
    assert message["Subject"] == subject
    assert len(message.get_all("To", [])) == 1
    to = message["To"].addresses
    assert len(to) == 1
    assert to[0].display_name == name
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    first = name.split(" ")[0] if name else "there"
    assert f"Hi {first}" in text
    assert re.search(rf"Hi\s+{re.escape(first)}", html), html[:2000]
    for part in (text, html, str(message["Subject"])):
        assert "%%" not in part, "a placeholder was left unfilled"
    assert "—" in text or "—" in html
    url = str(message["List-Unsubscribe"]).strip("<>")
    assert url.startswith("http://127.0.0.1:8000/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert url in text  # the link in the body is the recipient's own, as in the header
    return url


def test_a_real_issue_reaches_every_inbox_through_every_provider(
    install: dict[str, str], provider: tuple[str, Any]
) -> None:
    name, receiver = provider
    issue_id, issue = build_issue(install)

    test_send = run_cli(install, "send", issue_id, "--test-to", TEST_TO)
    assert test_send.returncode == 0, test_send.stderr
    (test_copy,) = delivered(name, receiver)
    assert test_copy["Subject"] == "[TEST] " + issue["subject"]

    sent = run_cli(install, "send", issue_id, "--yes")
    assert sent.returncode == 0, sent.stderr
    assert "Traceback" not in sent.stderr
    messages = delivered(name, receiver)[1:]
    expected = {email_: n for email_, n in SUBSCRIBERS}
    to_names = {}
    urls = set()
    for message in messages:
        address = message["To"].addresses[0]
        to_names[address.addr_spec] = address.display_name
        urls.add(check_inbox(message, issue["subject"], address.display_name))
    assert sorted(to_names) == sorted(e.replace("bücher.de", "xn--bcher-kva.de") for e in expected), (
        "every subscriber exactly once (the IDN domain in ASCII)"
    )
    assert len(messages) == len(SUBSCRIBERS)
    assert to_names["xn--bcher-kva.de".join(("ada@", ""))] == "Ada 🚀 Lovelace"
    assert len(urls) == len(SUBSCRIBERS), "each recipient has an unsubscribe link of their own"

    again = run_cli(install, "send", issue_id, "--yes")
    assert again.returncode == 0, again.stderr
    assert len(delivered(name, receiver)) == len(SUBSCRIBERS) + 1, "a second send mails nobody twice"
