"""The reader's site: /issues/{id} is a page of the site from what was sent (no "View in
browser", no "Hi there", no unsubscribe link), /feed.xml is Atom (feedgen), the subscribe form
takes a first name, confirming links the latest issue or names the first issue's day, and
comparison pages show their verdict and the issues that carried them."""

from __future__ import annotations

import email
import re
import xml.etree.ElementTree as ET
from email.policy import default
from pathlib import Path

from sqlalchemy import Engine

from newsletter import mail, subscribers
from newsletter.catalog import import_locations
from newsletter.config import Settings
from newsletter.delivery import send_issue
from newsletter.issues.build import build_issue, edit_issue
from newsletter.schedule import next_run_times
from tests.support.web import TestClient

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "comparisons"
ATOM = "{http://www.w3.org/2005/Atom}"


def _sent_issue(cfg: Settings, db: Engine) -> str:
    assert not import_locations(cfg, db, [str(SAMPLES)]).failed
    issue_id = build_issue(cfg, db).issue_id
    assert issue_id
    edit_issue(cfg, db, issue_id, note="Cette semaine — *trois* verdicts, 一 surprise ☕")
    mail.add(cfg, db, ["ana@example.com"], confirmed=True, name="Ana")
    assert send_issue(cfg, db, issue_id).issue_status == "sent"
    return issue_id


def test_the_issue_page_is_a_site_page_without_the_email_leftovers(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    issue_id = _sent_issue(cfg, db)
    page = client.get(f"/issues/{issue_id}")
    assert page.status_code == 200
    html = page.text
    assert '<header class="site">' in html and 'action="/subscribe"' in html  # header, nav, subscribe box
    assert 'href="/issues"' in html and 'rel="alternate" type="application/atom+xml"' in html
    assert "<em>trois</em> verdicts, 一 surprise ☕" in html
    for leftover in ("View this issue in your browser", "View in browser", "Hi there", "Unsubscribe", "%%"):
        assert leftover not in html, leftover
    slugs = re.findall(r'href="/comparisons/([^"#]+)"', html)
    assert len(set(slugs)) == 3  # every comparison is linked from the issue page
    comparison = client.get(f"/comparisons/{slugs[0]}")
    assert comparison.status_code == 200
    assert 'class="verdict">Verdict: ' in comparison.text
    assert f'href="/issues/{issue_id}"' in comparison.text  # and back to the issue


def test_the_atom_feed_lists_sent_issues_and_every_page_links_it(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    empty = client.get("/feed.xml")
    assert empty.status_code == 200 and empty.headers["content-type"].startswith("application/atom+xml")
    assert ET.fromstring(empty.content)  # noqa: S314 - our own feed.findall(f"{ATOM}entry") == []
    issue_id = _sent_issue(cfg, db)
    feed = ET.fromstring(client.get("/feed.xml").content)  # noqa: S314 - our own feed
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 1
    entry = entries[0]
    assert entry.findtext(f"{ATOM}id") == f"{cfg.base_url}/issues/{issue_id}"
    assert "一 surprise ☕" in (entry.findtext(f"{ATOM}content") or "")
    for path in ("/", "/issues", f"/issues/{issue_id}"):
        assert 'href="/feed.xml"' in client.get(path).text, path


def test_subscribe_with_a_first_name_then_confirm_says_when_the_first_issue_comes(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    form = client.get("/").text
    assert 'name="name"' in form and "First name" in form
    client.post("/subscribe", data={"email": "chloe@example.com", "name": "Chloé"})
    found = subscribers.find_subscriber(db, "chloe@example.com")
    assert found is not None and found.name == "Chloé"
    message = email.message_from_bytes(next(Path(cfg.outbox_dir).glob("*.eml")).read_bytes(), policy=default)
    part = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    token = re.search(r"/confirm/(\S+)", str(part.get_content()))
    assert token
    confirmed = client.get(f"/confirm/{token.group(1)}")
    first = next_run_times(cfg, count=1)[0]
    assert f"The first issue comes on <strong>{first:%A} {first.day} {first:%B %Y}</strong>" in confirmed.text
    issue_id = _sent_issue(cfg, db)
    again = client.get(f"/confirm/{token.group(1)}")
    assert f'href="{cfg.base_url}/issues/{issue_id}"' in again.text and "Read the latest issue" in again.text
