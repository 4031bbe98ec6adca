"""The whole double opt-in in a real browser: uvicorn on a free port + Debian's headless Chromium.

Open /, type an address, submit, read the confirmation mail from the outbox, open
its link, then open the unsubscribe link of the welcome mail and press the button.
The database is checked at each step; screenshots go to test-artifacts/web/.
"""

from __future__ import annotations

import email
import re
import time
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import Engine

from newsletter import subscribers
from newsletter.config import Settings, get_settings
from newsletter.db import open_database
from newsletter.web import create_app
from tests.support.browser import chromium_browser
from tests.support.server import free_port, running_server

pytestmark = pytest.mark.chromium


def wait_for_mail(settings: Settings, subject_start: str, timeout: float = 15.0) -> EmailMessage:
    deadline = time.monotonic() + timeout
    folder = Path(settings.outbox_dir)
    while time.monotonic() < deadline:
        for path in sorted(folder.glob("*.eml")) if folder.is_dir() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=default)
            if str(message["Subject"]).startswith(subject_start):
                return message  # type: ignore[return-value]
        time.sleep(0.1)
    pytest.fail(f"no mail {subject_start!r} in {folder} within {timeout}s")


def status(engine: Engine, address: str) -> str | None:
    found = subscribers.find_subscriber(engine, address)
    return found.status if found else None


def test_subscribe_confirm_unsubscribe_in_chromium(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, artifacts_dir: Path
) -> None:
    port = free_port()
    monkeypatch.setenv("NEWSLETTER_BASE_URL", f"http://127.0.0.1:{port}")  # the links in the mails
    get_settings.cache_clear()
    settings = get_settings()
    engine = open_database(settings.database_url)
    shots = artifacts_dir / "web"
    shots.mkdir(parents=True, exist_ok=True)
    address = "reader.one@example.com"
    problems: list[str] = []

    with running_server(create_app(settings), port=port) as server, chromium_browser() as context:
        page = context.new_page()
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))

        # 1. the subscribe page, on a phone and on a desktop
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{server.url}/")
        assert "Get the next comparison in your inbox" in page.inner_text("h1")
        page.screenshot(path=str(shots / "01-home-mobile.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 800})
        page.screenshot(path=str(shots / "02-home-desktop.png"), full_page=True)
        # the stylesheet loaded (the CSP allows it): the honeypot is moved off-screen
        box = page.locator("#website").bounding_box()
        assert box is not None and box["x"] < -1000

        # 2. type an address and submit
        page.fill("#email", address)
        page.click("form.subscribe button[type=submit]")
        page.wait_for_selector("text=Check your inbox")
        page.screenshot(path=str(shots / "03-check-inbox.png"), full_page=True)
        assert status(engine, address) == "pending"

        # 3. the confirmation mail, and its link
        confirmation = wait_for_mail(settings, "Confirm your subscription")
        assert confirmation["To"] == address
        text = str(confirmation.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
        confirm_link = re.search(rf"{re.escape(server.url)}/confirm/\S+", text)
        assert confirm_link, text
        page.goto(confirm_link.group(0))
        page.wait_for_selector("text=You're subscribed")
        page.screenshot(path=str(shots / "04-confirmed.png"), full_page=True)
        assert status(engine, address) == "confirmed"

        # 4. the welcome mail's List-Unsubscribe link: GET shows a button and changes nothing
        welcome = wait_for_mail(settings, "Welcome")
        header = str(welcome["List-Unsubscribe"])
        assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe_link = re.fullmatch(r"<(http://[^>]+/unsubscribe/[^>]+)>", header)
        assert unsubscribe_link, header
        page.goto(unsubscribe_link.group(1))
        page.wait_for_selector("button:has-text('Unsubscribe')")
        page.screenshot(path=str(shots / "05-unsubscribe.png"), full_page=True)
        assert status(engine, address) == "confirmed"

        # 5. press the button
        page.click("button:has-text('Unsubscribe')")
        page.wait_for_selector("text=You're unsubscribed")
        page.screenshot(path=str(shots / "06-unsubscribed.png"), full_page=True)
        assert status(engine, address) == "unsubscribed"
        assert subscribers.is_suppressed(engine, address)

        assert problems == [], problems  # no CSP violation, no missing asset, no script error

        # 6. a bad address gets the message on the page (the 422 is expected here)
        page.goto(f"{server.url}/")
        page.fill("#email", "not an address")
        page.click("form.subscribe button[type=submit]")
        page.wait_for_selector("#email-error")
        assert "not a valid email address" in page.inner_text("#email-error")
        page.screenshot(path=str(shots / "07-bad-address.png"), full_page=True)
