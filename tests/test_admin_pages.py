"""The editor's admin pages in-process: issues (build, edit, live preview), schedule (pause,
resume, skip), subscribers (search, pages, add, import, export, history, erase) and stats.
Every form post without the session's CSRF token is refused and changes nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, update

from newsletter import mail, subscribers
from newsletter.catalog import import_locations
from newsletter.config import Settings
from newsletter.issues import get_issue, mark_sending, mark_sent
from newsletter.schedule import schedule_state
from newsletter.stats import growth_by_week, issue_stats
from newsletter.tables import DeliveryRow, SubscriberRow, WebhookEventRow
from tests.support.web import TestClient

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "comparisons"
NOTE = "Cette semaine — **trois** verdicts, 漢字 et ☕.\n\n<script>alert('x')</script> [lien](https://example.com/ça)"


def login(client: TestClient) -> str:
    """Sign in with the form; the CSRF token of the session."""
    page = client.get("/admin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert client.post("/admin/login", data={"token": "test-admin-token", "csrf": csrf}).status_code == 303
    return csrf_of(client.get("/admin/issues").text)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def test_every_admin_page_needs_a_session(client: TestClient) -> None:
    for path in (
        "/admin/issues",
        "/admin/schedule",
        "/admin/subscribers",
        "/admin/stats",
        "/admin/subscribers/1",
    ):
        page = client.get(path)
        assert page.status_code == 401 and 'action="/admin/login"' in page.text, path


def test_the_sign_in_check_runs_before_the_parameters_are_read(client: TestClient) -> None:
    """The sign-in is a FastAPI dependency: it runs before the path and query are validated,
    so a stranger gets the sign-in page (or a JSON 401), never a hint of what a route takes."""
    for path in (
        "/admin/subscribers/0",
        "/admin/issues/2026-W48/email?format=pdf",
        "/admin/issues/-x/preview",
    ):
        page = client.get(path)
        assert page.status_code == 401 and 'action="/admin/login"' in page.text, path
    as_json = client.get("/admin/subscribers/0", headers={"accept": "application/json"})
    assert as_json.status_code == 401 and as_json.json()["status"] == 401
    post = client.post("/admin/issues/-x/edit", data={"subject": "x"})
    assert post.status_code == 401 and 'action="/admin/login"' in post.text
    api = client.get("/api/v1/subscribers", params={"status": "lost"})
    assert api.status_code == 401 and "Authorization: Bearer" in api.json()["error"]


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/admin/issues/build", {}),
        ("/admin/issues/2026-W48/edit", {"subject": "Zoë’s pick"}),
        ("/admin/issues/2026-W48/email", {"note": "x"}),
        ("/admin/schedule/pause", {"reason": "vacances"}),
        ("/admin/schedule/resume", {}),
        ("/admin/schedule/skip", {}),
        ("/admin/subscribers", {"email": "zoe@example.com"}),
        ("/admin/subscribers/1/erase", {"confirm": "yes"}),
    ],
)
def test_a_form_post_without_the_csrf_token_is_refused(
    client: TestClient, cfg: Settings, db: Engine, path: str, data: dict[str, str]
) -> None:
    import_locations(cfg, db, [str(SAMPLES)])
    login(client)
    mail.add(cfg, db, ["keep@example.com"], confirmed=True)
    for token in (None, "forged.token.value"):
        fields = dict(data, **({"csrf": token} if token else {}))
        answer = client.post(path, data=fields)
        assert answer.status_code == 400, (path, answer.text)
    # nothing happened: no issue, schedule running, nobody added or erased
    assert client.get("/admin/issues").text.count('class="badge draft"') == 0
    assert not schedule_state(db).paused
    assert subscribers.find_subscriber(db, "zoe@example.com") is None
    assert subscribers.find_subscriber(db, "keep@example.com") is not None


def test_build_edit_and_live_preview(client: TestClient, cfg: Settings, db: Engine) -> None:
    csrf = login(client)
    empty = client.post("/admin/issues/build", data={"csrf": csrf})
    assert empty.status_code == 200 and "catalog is empty" in empty.text
    import_locations(cfg, db, [str(SAMPLES)])
    built = client.post("/admin/issues/build", data={"csrf": csrf})
    assert built.status_code == 303
    issue_url = built.headers["location"]
    issue_id = issue_url.rsplit("/", 1)[1]
    listing = client.get("/admin/issues")
    assert f'href="/admin/issues/{issue_id}"' in listing.text and 'id="build"' in listing.text

    page = client.get(issue_url)
    assert page.status_code == 200
    for frame in ("preview-phone", "preview-desktop", "preview-text"):
        assert f'id="{frame}"' in page.text
    assert '<script src="/static/admin.js" defer></script>' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]

    # the live preview renders unsaved words and stores nothing
    draft = client.post(f"/admin/issues/{issue_id}/email", data={"csrf": csrf, "note": NOTE, "subject": ""})
    assert draft.status_code == 200 and "<strong>trois</strong>" in draft.text
    assert "<script>alert" not in draft.text and "漢字" in draft.text
    assert "style-src 'self' 'unsafe-inline'" in draft.headers["content-security-policy"]
    text = client.post(f"/admin/issues/{issue_id}/email?format=text", data={"csrf": csrf, "note": NOTE})
    assert text.headers["content-type"].startswith("text/plain") and "trois" in text.text
    assert get_issue(db, issue_id).note is None
    bad = client.post(f"/admin/issues/{issue_id}/email", data={"csrf": csrf, "subject": "two\nlines"})
    assert bad.status_code == 422 and "Subject: must be one line" in bad.text

    # saving re-renders the draft; the saved email shows it
    saved = client.post(
        f"/admin/issues/{issue_id}/edit",
        data={"csrf": csrf, "subject": "Zoë’s pick — 3 verdicts", "preheader": "", "note": NOTE},
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("?saved=1")
    info = get_issue(db, issue_id)
    assert info.subject == "Zoë’s pick — 3 verdicts" and info.note == NOTE.strip()
    email_page = client.get(f"/admin/issues/{issue_id}/email")
    assert "<strong>trois</strong>" in email_page.text
    after = client.get(saved.headers["location"])
    assert "Saved: the draft was re-rendered." in after.text and "Zoë’s pick — 3 verdicts" in after.text

    # once sending started the issue cannot be edited: 409, and the form is gone
    mark_sending(db, issue_id)
    frozen = client.post(f"/admin/issues/{issue_id}/edit", data={"csrf": csrf, "subject": "Too late"})
    assert frozen.status_code == 409
    assert 'id="edit-form"' not in client.get(issue_url).text


def test_schedule_pause_resume_skip(client: TestClient, db: Engine) -> None:
    csrf = login(client)
    page = client.get("/admin/schedule")
    assert "Running" in page.text and 'id="pause"' in page.text
    paused = client.post("/admin/schedule/pause", data={"csrf": csrf, "reason": "vacances d’été ☀"})
    assert paused.status_code == 303
    assert schedule_state(db).paused and schedule_state(db).reason == "vacances d’été ☀"
    page = client.get("/admin/schedule")
    assert "Paused: vacances d’été ☀" in page.text and 'id="resume"' in page.text
    assert client.post("/admin/schedule/resume", data={"csrf": csrf}).status_code == 303
    assert not schedule_state(db).paused
    assert client.post("/admin/schedule/skip", data={"csrf": csrf}).status_code == 303
    page = client.get("/admin/schedule")
    assert page.text.count('class="badge skipped"') == 2  # the next run, and the recorded slot
    assert client.post("/admin/schedule/resume", data={"csrf": csrf}).status_code == 303
    assert 'class="badge skipped"' not in client.get("/admin/schedule").text


def test_subscribers_search_pages_add_import_export_history_erase(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    csrf = login(client)
    mail.add(cfg, db, ["zoe@example.com"], confirmed=True, name="Zoë Ünal")
    mail.add(cfg, db, [f"reader{n:02d}@example.com" for n in range(60)], confirmed=True)

    found = client.get("/admin/subscribers", params={"q": "ZOË"})
    assert "zoe@example.com" in found.text and "reader01@" not in found.text
    first = client.get("/admin/subscribers", params={"status": "confirmed"})
    assert first.text.count("<tr>") == 1 + 50  # header + one page
    next_href = re.search(r'id="next-page" href="([^"]+)"', first.text).group(1)  # type: ignore[union-attr]
    second = client.get(next_href.replace("&amp;", "&"))
    assert second.text.count("<tr>") == 1 + 11 and 'id="next-page"' not in second.text
    assert client.get("/admin/subscribers", params={"status": "nope"}).status_code == 422

    added = client.post(
        "/admin/subscribers", data={"csrf": csrf, "email": "Sean.OBrien@Example.com", "name": "Seán"}
    )
    assert added.status_code == 200 and "confirmation mail" in added.text
    assert subscribers.find_subscriber(db, "Sean.OBrien@example.com").status == "pending"  # type: ignore[union-attr]
    invalid = client.post("/admin/subscribers", data={"csrf": csrf, "email": "not an address"})
    assert invalid.status_code == 422

    upload = "email,name\nli@example.com,李 小龙\nbroken-line,x\nzoe@example.com,Zoë\n".encode()
    imported = client.post(
        "/admin/subscribers/import",
        data={"csrf": csrf, "confirmed": "yes"},
        files={"file": ("readers — été.csv", upload, "text/csv")},
    )
    assert imported.status_code == 200, imported.text
    assert "readers — été.csv: 1 imported, 1 known already" in imported.text
    assert "readers — été.csv:3:" in imported.text
    assert subscribers.find_subscriber(db, "li@example.com").name == "李 小龙"  # type: ignore[union-attr]
    not_utf8 = client.post(
        "/admin/subscribers/import", data={"csrf": csrf}, files={"file": ("latin.csv", b"email\n\xe9@x.fr\n")}
    )
    assert not_utf8.status_code == 422 and "Latin.csv:2: not UTF-8" in not_utf8.text
    forged = client.post(
        "/admin/subscribers/import", data={"csrf": "x.y.z"}, files={"file": ("a.csv", upload)}
    )
    assert forged.status_code == 400

    export = client.get("/admin/subscribers/export.csv", params={"status": "confirmed"})
    assert export.headers["content-type"].startswith("text/csv") and "李 小龙" in export.text
    assert "Sean.OBrien@example.com" not in export.text  # pending: filtered out

    zoe = subscribers.find_subscriber(db, "zoe@example.com")
    assert zoe is not None
    with db.begin() as conn:
        from tests.test_web import add_issue

        add_issue(db, cfg, "2026-W48", "sent", "Sent one")
        conn.execute(insert(DeliveryRow).values(issue_id="2026-W48", subscriber_id=zoe.id, state="sent"))
    detail = client.get(f"/admin/subscribers/{zoe.id}")
    assert "Zoë Ünal" in detail.text and 'href="/admin/issues/2026-W48"' in detail.text
    unticked = client.post(f"/admin/subscribers/{zoe.id}/erase", data={"csrf": csrf})
    assert unticked.status_code == 422 and subscribers.find_subscriber(db, "zoe@example.com") is not None
    erased = client.post(f"/admin/subscribers/{zoe.id}/erase", data={"csrf": csrf, "confirm": "yes"})
    assert erased.status_code == 200
    gone = subscribers.get_subscriber(db, zoe.id)
    assert gone is not None and gone.email is None and gone.name is None  # erased: only the hash stays
    assert subscribers.is_suppressed(db, "zoe@example.com")
    assert "(erased)" in client.get(f"/admin/subscribers/{zoe.id}").text
    assert client.get("/admin/subscribers/999999").status_code == 404


def test_stats_count_people_per_issue_and_growth_by_week(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    from tests.test_web import add_issue

    login(client)
    mail.add(cfg, db, [f"r{n}@example.com" for n in range(4)], confirmed=True)
    ids = [s.id for s in subscribers.search_subscribers(db).subscribers]
    add_issue(db, cfg, "2026-W47", "sent", "Older <b>issue</b> & co")
    add_issue(db, cfg, "2026-W48", "draft", "A draft is not counted")
    events = [("open", ids[0]), ("open", ids[0]), ("open", ids[1]), ("click", ids[1]), ("bounce", ids[2])]
    events += [("unsubscribe", ids[3]), ("delivered", ids[0]), ("delivered", ids[1])]
    with db.begin() as conn:
        for sid in ids:
            conn.execute(insert(DeliveryRow).values(issue_id="2026-W47", subscriber_id=sid, state="sent"))
        for n, (name, sid) in enumerate(events):
            conn.execute(
                insert(WebhookEventRow).values(
                    event_id=f"e{n}", event=name, issue_id="2026-W47", subscriber_id=sid
                )
            )
        week_ago = datetime.now(UTC) - timedelta(days=7)
        conn.execute(update(SubscriberRow).where(SubscriberRow.id == ids[0]).values(confirmed_at=week_ago))
        conn.execute(
            update(SubscriberRow).where(SubscriberRow.id == ids[3]).values(unsubscribed_at=datetime.now(UTC))
        )

    (one,) = issue_stats(db)
    assert (one.issue_id, one.sent, one.delivered, one.opened, one.clicked) == ("2026-W47", 4, 2, 2, 1)
    assert (one.bounced, one.unsubscribed, one.rate(one.opened)) == (1, 1, "50%")
    growth = growth_by_week(db, weeks=3)
    assert [w.confirmed for w in growth] == [0, 1, 3] and [w.left for w in growth] == [0, 0, 1]

    page = client.get("/admin/stats")
    assert page.status_code == 200
    assert page.text.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart"') == 2
    assert "Older &lt;b&gt;issue&lt;/b&gt; &amp; co" in page.text and "<b>issue</b>" not in page.text
    assert "A draft is not counted" not in page.text
    data = client.get("/admin/stats", headers={"accept": "application/json"}).json()
    assert data["issues"][0]["opened"] == 2 and data["growth"][-1]["confirmed"] == 3


def test_the_issue_page_shows_a_sent_issue_read_only(client: TestClient, cfg: Settings, db: Engine) -> None:
    import_locations(cfg, db, [str(SAMPLES)])
    csrf = login(client)
    issue_id = client.post("/admin/issues/build", data={"csrf": csrf}).headers["location"].rsplit("/", 1)[1]
    mark_sending(db, issue_id)
    mark_sent(db, issue_id)
    page = client.get(f"/admin/issues/{issue_id}")
    assert "what was sent cannot be edited" in page.text and 'class="badge sent"' in page.text
