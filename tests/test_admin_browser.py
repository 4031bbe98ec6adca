"""The editor's desk and the reader's site in Debian's Chromium, against uvicorn on 127.0.0.1.

An editor signs in, builds the issue, writes a note and watches the live preview at 375 px
follow it, saves, sends, and sees the progress reach "sent"; a reader subscribes with a
first name, confirms through the link of the outbox mail, opens the archive page and the
feed. Screenshots go to test-artifacts/admin/ (and H16_SHOTS, when set, for a person to look at).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from newsletter import subscribers
from newsletter.catalog import import_locations
from newsletter.config import get_settings
from newsletter.db import open_database
from newsletter.web import create_app
from tests.support.browser import chromium_browser
from tests.support.server import free_port, running_server
from tests.test_web_browser import wait_for_mail

pytestmark = pytest.mark.chromium

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "comparisons"
NOTE = "Cette semaine — **trois verdicts**, un thé ☕ et 漢字.\n\n- Zoë’s pick: _Axolotl_\n- [the site](https://example.com/ça)"


def shot(page: Any, folders: list[Path], name: str, **options: Any) -> None:
    for folder in folders:
        page.screenshot(path=str(folder / name), **options)


def test_editor_builds_notes_previews_sends_and_a_reader_subscribes(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, artifacts_dir: Path
) -> None:
    port = free_port()
    monkeypatch.setenv("NEWSLETTER_BASE_URL", f"http://127.0.0.1:{port}")
    get_settings.cache_clear()
    settings = get_settings()
    engine = open_database(settings.database_url)
    assert not import_locations(settings, engine, [str(SAMPLES)]).failed
    subscribers.add(settings, engine, ["zoe@example.com"], confirmed=True, name="Zoë")
    subscribers.add(settings, engine, ["li@example.com"], confirmed=True, name="李")
    folders = [artifacts_dir / "admin"]
    if os.environ.get("H16_SHOTS"):
        folders.append(Path(os.environ["H16_SHOTS"]))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    with running_server(create_app(settings), port=port) as server, chromium_browser() as context:
        page = context.new_page()
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.set_viewport_size({"width": 1280, "height": 900})

        # 1. sign in, build the next issue
        page.goto(f"{server.url}/admin")
        page.fill("#token", "test-admin-token")
        page.click("button:has-text('Sign in')")
        page.wait_for_selector("text=Subscribers")
        problems.clear()  # the sign-in page itself is served with 401, as it should be
        page.goto(f"{server.url}/admin/issues")
        page.click("#build")
        page.wait_for_selector("#edit-form")
        issue_id = page.url.rsplit("/", 1)[1]

        # 2. write a note: the previews follow without saving (phone, desktop, text part)
        page.fill("#note", NOTE)
        phone = page.frame_locator("#preview-phone")
        phone.locator("strong", has_text="trois verdicts").wait_for(timeout=15_000)
        page.frame_locator("#preview-desktop").locator("strong", has_text="trois verdicts").wait_for(
            timeout=15_000
        )
        page.frame_locator("#preview-text").locator("text=trois verdicts").first.wait_for(timeout=15_000)
        box = page.locator("#preview-phone").bounding_box()
        assert box is not None and 370 <= box["width"] <= 380
        inner = page.locator("#preview-phone").element_handle()
        assert inner is not None
        frame = inner.content_frame()
        assert frame is not None and frame.evaluate("document.documentElement.clientWidth") <= 375
        page.locator("#preview-phone").screenshot(path=str(folders[0] / "preview-375.png"))
        for folder in folders[1:]:
            page.locator("#preview-phone").screenshot(path=str(folder / "preview-375.png"))
        page.click("#save")
        page.wait_for_selector("text=Saved: the draft was re-rendered.")
        # the saved draft, loaded by the frames' own GET (the session cookie goes with it)
        for frame_id in ("#preview-phone", "#preview-desktop"):
            page.frame_locator(frame_id).locator("strong", has_text="trois verdicts").wait_for(timeout=15_000)
        page.frame_locator("#preview-text").locator("text=trois verdicts").first.wait_for(timeout=15_000)
        phone_box = page.locator("#preview-phone").bounding_box()
        desktop_box = page.locator("#preview-desktop").bounding_box()
        assert phone_box and desktop_box and phone_box["y"] == desktop_box["y"]  # side by side
        shot(page, folders, "admin-issue.png", full_page=True)
        # A full-page capture can leave sandboxed (out-of-process) frames blank: the previews in view.
        page.locator("section.previews").scroll_into_view_if_needed()
        shot(page, folders, "admin-issue-previews.png")

        # 3. send, and watch the progress reach "sent"
        page.click("a.button:has-text('Send')")
        page.check("input[name=confirm]")
        page.click("button.danger")
        page.wait_for_selector("text=The send has started.")
        page.goto(f"{server.url}/admin/issues/{issue_id}")
        # The page refreshes itself while the send runs; the loop also reloads it (bounded).
        deadline = time.monotonic() + 60
        while not page.locator(".badge.sent").count() and time.monotonic() < deadline:
            page.wait_for_timeout(1000)
            if not page.locator("meta[http-equiv=refresh]").count():
                page.reload()
        assert page.locator(".badge.sent").count(), page.inner_text("main")
        assert "Send finished" in page.inner_text(".send-progress")
        outbox = [p for p in Path(settings.outbox_dir).glob("*.eml")]
        assert len(outbox) == 2

        page.goto(f"{server.url}/admin/stats")
        assert page.locator("svg.chart").count() == 2
        shot(page, folders, "admin-stats.png", full_page=True)

        # 4. a reader subscribes with a first name, confirms, reads the archive and the feed
        reader = context.new_page()
        reader.on("pageerror", lambda exc: problems.append(str(exc)))
        reader.set_viewport_size({"width": 375, "height": 812})
        reader.goto(f"{server.url}/")
        reader.fill("#email", "sean@example.com")
        reader.fill("#name", "Seán")
        reader.click("form.subscribe button[type=submit]")
        reader.wait_for_selector("text=Check your inbox")
        mail = wait_for_mail(settings, "Confirm your subscription")
        text = str(mail.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
        link = re.search(rf"{re.escape(server.url)}/confirm/\S+", text)
        assert link, text
        reader.goto(link.group(0))
        reader.click("a:has-text('Read the latest issue')")
        reader.wait_for_url(f"**/issues/{issue_id}")
        assert "trois verdicts" in reader.inner_text("main")
        assert "View this issue in your browser" not in reader.content()
        shot(reader, folders, "reader-issue-375.png", full_page=True)
        reader.set_viewport_size({"width": 1100, "height": 900})
        shot(reader, folders, "reader-issue-1100.png", full_page=True)
        found = subscribers.find_subscriber(engine, "sean@example.com")
        assert found is not None and found.status == "confirmed" and found.name == "Seán"
        feed_href = reader.get_attribute("link[rel=alternate]", "href")
        assert feed_href == "/feed.xml"
        feed = httpx.get(f"{server.url}{feed_href}", timeout=5)
        assert feed.status_code == 200
        assert f"/issues/{issue_id}" in feed.text and "<feed" in feed.text

    assert problems == [], problems
