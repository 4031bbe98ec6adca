"""The admin JSON API (/api/v1) in-process: auth, 404, 409 once sending started, 422 naming the
field, and the editor's whole walk: build -> note -> preview -> send -> status, with the outbox.
Pausing through the API and `newsletter tick` at the slot: nothing sent, then the next one sends.
"""

from __future__ import annotations

import email
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from typer.testing import CliRunner

from newsletter import mail, subscribers
from newsletter.catalog import import_locations
from newsletter.cli import app as cli
from newsletter.config import Settings, get_settings
from newsletter.schedule import next_run_times
from newsletter.web import create_app
from newsletter.web.routes.admin import admin_sends
from tests.support.web import TestClient

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "comparisons"
AUTH = {"authorization": "Bearer test-admin-token"}
NOTE = (
    "This week — three **verdicts**, one surprise: 漢字 and ☕.\n\n"
    "<script>alert('x')</script> [a trap](javascript:alert(1)) [fine](https://example.com/ça) "
    "and a try at %%UNSUBSCRIBE_URL%%."
)

# Every route, for the auth test (method, path, JSON body).
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/issues", None),
    ("POST", "/api/v1/issues", None),
    ("GET", "/api/v1/issues/2026-W48", None),
    ("PATCH", "/api/v1/issues/2026-W48", {"subject": "Zoë’s pick"}),
    ("GET", "/api/v1/issues/2026-W48/preview", None),
    ("POST", "/api/v1/issues/2026-W48/test", {"to": ["ed@example.com"]}),
    ("POST", "/api/v1/issues/2026-W48/send", None),
    ("GET", "/api/v1/issues/2026-W48/status", None),
    ("GET", "/api/v1/schedule", None),
    ("POST", "/api/v1/schedule/pause", {"reason": "vacances d’été"}),
    ("POST", "/api/v1/schedule/resume", None),
    ("POST", "/api/v1/schedule/skip", None),
    ("GET", "/api/v1/subscribers", None),
    ("POST", "/api/v1/subscribers", {"email": "zoe@example.com"}),
    ("GET", "/api/v1/subscribers/export", None),
    ("POST", "/api/v1/subscribers/import", None),
    ("GET", "/api/v1/subscribers/zoe@example.com", None),
    ("DELETE", "/api/v1/subscribers/zoe@example.com", None),
]


@pytest.fixture
def cfg(sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("NEWSLETTER_SOURCES", str(SAMPLES))
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def web_app(cfg: Settings) -> FastAPI:
    return create_app(cfg)


@pytest.fixture
def client(web_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(web_app, follow_redirects=False, raise_server_exceptions=False) as test_client:
        yield test_client
        for snapshot_id in ("2026-W48",):
            admin_sends(web_app).wait(snapshot_id, timeout=30)


def _outbox(settings: Settings) -> list[EmailMessage]:
    folder = Path(settings.outbox_dir)
    files = sorted(folder.glob("*.eml")) if folder.is_dir() else []
    return [email.message_from_bytes(p.read_bytes(), policy=default) for p in files]  # type: ignore[misc]


def _to(message: EmailMessage) -> str:
    return str(message["To"].addresses[0].addr_spec)


def _build(client: TestClient, cfg: Settings, db: Engine) -> str:
    report = import_locations(cfg, db, [str(SAMPLES)])
    assert not report.failed
    built = client.post("/api/v1/issues", headers=AUTH)
    assert built.status_code == 201, built.text
    return str(built.json()["id"])


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_route_needs_the_token(client: TestClient, method: str, path: str, body: Any) -> None:
    for headers in ({}, {"authorization": "Bearer wrong-token"}, {"authorization": "Basic dGVzdA=="}):
        response = client.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert "token" in response.json()["error"]


def test_the_api_is_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for _method, path, _body in ROUTES:
        template = path.replace("2026-W48", "{issue_id}").replace("zoe@example.com", "{email}")
        assert template in paths, template
    assert "/api/v1/issues/{issue_id}" in paths and "patch" in paths["/api/v1/issues/{issue_id}"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/issues/2031-W01", None),
        ("PATCH", "/api/v1/issues/2031-W01", {"note": "Hé"}),
        ("GET", "/api/v1/issues/2031-W01/preview", None),
        ("POST", "/api/v1/issues/2031-W01/test", {"to": ["ed@example.com"]}),
        ("POST", "/api/v1/issues/2031-W01/send", None),
        ("GET", "/api/v1/issues/2031-W01/status", None),
        ("GET", "/api/v1/subscribers/nobody@example.com", None),
        ("DELETE", "/api/v1/subscribers/nobody@example.com", None),
    ],
)
def test_unknown_things_are_404(client: TestClient, method: str, path: str, body: Any) -> None:
    response = client.request(method, path, json=body, headers=AUTH)
    assert response.status_code == 404, response.text
    assert response.json()["status"] == 404


def test_nothing_to_build_says_why(client: TestClient) -> None:
    response = client.post("/api/v1/issues", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["id"] is None and "catalog is empty" in response.json()["reason"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subject": "two\nlines"}, "subject"),
        ({"subject": "x" * 201}, "subject"),
        ({"preheader": "tab\tinside"}, "preheader"),
        ({"note": "n" * 10_001}, "note"),
        ({"subject": 42}, "subject"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_edits_are_422_naming_the_field(
    client: TestClient, cfg: Settings, db: Engine, body: dict[str, Any], field: str
) -> None:
    issue_id = _build(client, cfg, db)
    response = client.patch(f"/api/v1/issues/{issue_id}", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(("body", "field"), [({"to": []}, "to"), ({"to": ["not an address"]}, None)])
def test_bad_test_send_is_422(
    client: TestClient, cfg: Settings, db: Engine, body: dict[str, Any], field: str | None
) -> None:
    issue_id = _build(client, cfg, db)
    response = client.post(f"/api/v1/issues/{issue_id}/test", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    if field:
        assert response.json()["field"] == field
    else:
        assert response.json()["error"].startswith("to.0:")
    assert _outbox(cfg) == []


def _wait_sent(client: TestClient, issue_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.get(f"/api/v1/issues/{issue_id}/status", headers=AUTH).json()
        if status["status"] == "sent" and status["send"] and status["send"]["state"] != "running":
            return dict(status)
        time.sleep(0.05)
    raise AssertionError(f"issue {issue_id} not sent in 30 s: {status}")


def test_build_note_preview_send_status_with_the_outbox(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    readers = ["ana@example.com", "bjorn@bücher.com", "chloe@例え.jp"]  # IDN domains
    mail.add(cfg, db, readers[:1], confirmed=True, name="Ana María")
    mail.add(cfg, db, readers[1:], confirmed=True)

    issue_id = _build(client, cfg, db)
    again = client.post("/api/v1/issues", headers=AUTH)
    assert again.status_code == 200 and again.json()["id"] == issue_id and again.json()["status"] == "draft"
    listed = client.get("/api/v1/issues", headers=AUTH).json()["issues"]
    assert [issue["id"] for issue in listed] == [issue_id]

    edited = client.patch(
        f"/api/v1/issues/{issue_id}",
        json={
            "subject": "Verdicts — Axolotl’s week ☕",
            "preheader": "Trois comparaisons, 一 verdict",
            "note": NOTE,
        },
        headers=AUTH,
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["subject"] == "Verdicts — Axolotl’s week ☕"
    assert client.get(f"/api/v1/issues/{issue_id}", headers=AUTH).json()["note"] == NOTE.strip()

    html = client.get(f"/api/v1/issues/{issue_id}/preview", headers=AUTH)
    # email HTML styles itself inline: a browser showing this preview must be allowed to apply them
    assert "style-src 'self' 'unsafe-inline'" in html.headers["content-security-policy"]
    assert "script-src 'none'" in html.headers["content-security-policy"]
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "<strong>verdicts</strong>" in html.text and "漢字 and ☕" in html.text
    assert "<script>alert" not in html.text and "&lt;script&gt;" in html.text  # shown, not run
    assert 'href="javascript' not in html.text
    assert 'href="https://example.com/%C3%A7a"' in html.text
    assert "%%UNSUBSCRIBE_URL%%" not in html.text and "preview-sample-token" in html.text  # sample link only
    assert html.text.count("preview-sample-token") == 1  # the footer's, not one from the note
    text = client.get(f"/api/v1/issues/{issue_id}/preview?format=text", headers=AUTH)
    assert text.headers["content-type"].startswith("text/plain")
    assert "This week — three **verdicts**" in text.text and "Hi Ada" in text.text
    assert client.get(f"/api/v1/issues/{issue_id}/preview?format=pdf", headers=AUTH).status_code == 422

    tested = client.post(f"/api/v1/issues/{issue_id}/test", json={"to": ["editor@example.com"]}, headers=AUTH)
    assert tested.status_code == 200 and tested.json()["accepted"] == ["editor@example.com"]
    assert client.get(f"/api/v1/issues/{issue_id}/status", headers=AUTH).json()["status"] == "draft"

    sent = client.post(f"/api/v1/issues/{issue_id}/send", headers=AUTH)
    assert sent.status_code == 202 and sent.json()["status"] == "sending"
    status = _wait_sent(client, issue_id)
    assert status["counts"].get("sent") == 3 and status["uncertain_batches"] == []
    assert status["send"]["sent"] == 3

    mails = [m for m in _outbox(cfg) if not str(m["Subject"]).startswith("[TEST]")]
    assert sorted(_to(m) for m in mails) == sorted(
        ["ana@example.com", "bjorn@xn--bcher-kva.com", "chloe@xn--r8jz45g.jp"]
    )
    assert all(m["Subject"] == "Verdicts — Axolotl’s week ☕" for m in mails)
    ana = next(m for m in mails if _to(m) == "ana@example.com")
    assert str(ana["To"]) == "Ana María <ana@example.com>"
    body = ana.get_body(preferencelist=("plain",))
    assert body is not None and "Hi Ana," in body.get_content() and "one surprise: 漢字" in body.get_content()

    # frozen once sending started
    late = client.patch(f"/api/v1/issues/{issue_id}", json={"note": "trop tard"}, headers=AUTH)
    assert late.status_code == 409 and "no longer be edited" in late.json()["error"]
    assert client.post(f"/api/v1/issues/{issue_id}/send", headers=AUTH).status_code == 409
    nothing = client.post("/api/v1/issues", headers=AUTH).json()
    assert nothing["id"] is None and "no new comparison" in nothing["reason"]


def test_subscribers_search_pages_add_erase_import_export(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    for n in range(5):
        mail.add(cfg, db, [f"reader{n}@example.com"], confirmed=True, name=f"Lecteur {n} — 読者")
    added = client.post(
        "/api/v1/subscribers",
        json={"email": "Zoe@Exämple.com", "name": "Zoë O’Brien", "confirmed": True},
        headers=AUTH,
    )
    assert added.status_code == 201, added.text
    assert added.json()["subscriber"]["status"] == "confirmed"
    assert (
        client.post("/api/v1/subscribers", json={"email": "Zoe@exämple.com"}, headers=AUTH).status_code == 200
    )
    bad = client.post("/api/v1/subscribers", json={"email": "no-at-sign"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["field"] == "email"
    missing = client.post("/api/v1/subscribers", json={"name": "Nobody"}, headers=AUTH)
    assert missing.status_code == 422 and missing.json()["field"] == "email"

    found = client.get("/api/v1/subscribers", params={"q": "o’brien"}, headers=AUTH).json()
    assert [s["email"] for s in found["subscribers"]] == ["Zoe@exämple.com"]
    assert (
        len(client.get("/api/v1/subscribers", params={"q": "読者"}, headers=AUTH).json()["subscribers"]) == 5
    )
    assert client.get("/api/v1/subscribers", params={"q": "100%"}, headers=AUTH).json()["subscribers"] == []

    seen: list[str] = []
    cursor: int | None = 0
    for _page in range(10):
        page = client.get("/api/v1/subscribers", params={"limit": 2, "cursor": cursor}, headers=AUTH).json()
        seen += [s["email"] for s in page["subscribers"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6 and len(set(seen)) == 6
    assert (
        client.get("/api/v1/subscribers", params={"status": "pending"}, headers=AUTH).json()["subscribers"]
        == []
    )
    assert client.get("/api/v1/subscribers", params={"status": "lost"}, headers=AUTH).status_code == 422
    assert client.get("/api/v1/subscribers", params={"limit": 0}, headers=AUTH).json()["field"] == "limit"

    detail = client.get("/api/v1/subscribers/Zoe@exämple.com", headers=AUTH)
    assert detail.status_code == 200 and detail.json()["subscriber"]["name"] == "Zoë O’Brien"
    erased = client.delete("/api/v1/subscribers/zoe@exämple.com", headers=AUTH)
    assert erased.status_code == 200, erased.text
    assert client.get("/api/v1/subscribers/Zoe@exämple.com", headers=AUTH).status_code == 404
    again = client.post("/api/v1/subscribers", json={"email": "Zoe@exämple.com"}, headers=AUTH)
    assert again.status_code == 409  # erased: kept suppressed

    export = client.get("/api/v1/subscribers/export", headers=AUTH)
    assert export.headers["content-type"].startswith("text/csv")
    assert "reader4@example.com" in export.text and "Zoe@" not in export.text

    csv_body = "email,name\nnew.one@example.com,Ünal Çelik\nbroken,Nobody\nreader0@example.com,Dup\n"
    imported = client.post(
        "/api/v1/subscribers/import?confirmed=true",
        content=csv_body.encode(),
        headers={**AUTH, "content-type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    report = imported.json()
    assert report["imported"] == 1 and report["existing"] == 1 and report["error_count"] == 1
    assert report["errors"][0]["line"] == 3
    assert subscribers.find_subscriber(db, "new.one@example.com").name == "Ünal Çelik"  # type: ignore[union-attr]


def _tick(now: str) -> str:
    result = CliRunner().invoke(cli, ["tick", "--now", now])
    assert result.exit_code == 0, result.output
    return result.output


def test_pause_through_the_api_then_tick_sends_nothing_and_resume_sends_the_next(
    client: TestClient, cfg: Settings, db: Engine
) -> None:
    mail.add(cfg, db, ["lea@bücher.com", "li@例え.jp"], confirmed=True, name="Léa 李")
    first, second, third = next_run_times(cfg, count=3)
    paused = client.post("/api/v1/schedule/pause", json={"reason": "vacances d’été ☀"}, headers=AUTH)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert client.get("/api/v1/schedule", headers=AUTH).json()["pause"]["reason"] == "vacances d’été ☀"

    output = _tick(first.isoformat())
    assert "paused" in output and "vacances d’été ☀" in output and "nothing sent" in output
    assert _outbox(cfg) == []
    slots = {s["key"]: s["outcome"] for s in client.get("/api/v1/schedule", headers=AUTH).json()["slots"]}
    assert "paused" in slots.values()

    resumed = client.post("/api/v1/schedule/resume", headers=AUTH)
    assert resumed.json()["paused"] is False
    # the paused slot stays paused (no stale send), the next one sends
    assert "already taken" in _tick(first.isoformat()) and _outbox(cfg) == []
    output = _tick(second.isoformat())
    assert "sent issue" in output
    assert sorted(_to(m) for m in _outbox(cfg)) == ["lea@xn--bcher-kva.com", "li@xn--r8jz45g.jp"]

    skipped = client.post("/api/v1/schedule/skip", headers=AUTH)
    assert skipped.status_code == 200
    view = skipped.json()
    marked = [run["slot"] for run in view["next_runs"] if run["skipped"]]
    assert marked == [view["skipped"]]  # the first slot no tick has run yet: the third
    assert "skipped" in _tick(third.isoformat())
    assert len(_outbox(cfg)) == 2


def test_schedule_commands_on_the_cli(cfg: Settings, db: Engine) -> None:
    runner = CliRunner()
    paused = runner.invoke(cli, ["schedule", "pause", "--reason", "Pâques — 復活祭"])
    assert paused.exit_code == 0 and "paused: Pâques — 復活祭" in paused.output
    shown = runner.invoke(cli, ["schedule", "show"])
    assert "PAUSED" in shown.output and "Pâques — 復活祭" in shown.output
    skipped = runner.invoke(cli, ["schedule", "skip"])
    assert skipped.exit_code == 0 and "skipped slot" in skipped.output
    assert "skipped" in runner.invoke(cli, ["schedule", "show"]).output
    resumed = runner.invoke(cli, ["schedule", "resume"])
    assert resumed.exit_code == 0 and "running" in resumed.output
    assert "PAUSED" not in runner.invoke(cli, ["schedule", "show"]).output


def test_issue_edit_on_the_cli(cfg: Settings, db: Engine, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["comparisons", "import", str(SAMPLES)]).exit_code == 0
    build = runner.invoke(cli, ["issue", "build"])
    issue_id = build.output.strip().splitlines()[-1]
    note = tmp_path / "note.md"
    note.write_text("Bonjour — *l’équipe* 🎉", encoding="utf-8")
    edited = runner.invoke(
        cli, ["issue", "edit", issue_id, "--subject", "Spécial ☕", "--note-file", str(note)]
    )
    assert edited.exit_code == 0, edited.output
    assert "edited draft" in edited.output and "Spécial ☕" in edited.output
    from newsletter.issues.archive import load_issue

    archived = load_issue(cfg, issue_id)
    assert "<em>l’équipe</em> 🎉" in archived.html and "Bonjour — *l’équipe* 🎉" in archived.text
    missing = runner.invoke(cli, ["issue", "edit", issue_id, "--note-file", str(tmp_path / "nope.md")])
    assert missing.exit_code == 1 and "cannot read the note file" in missing.output
    assert "Traceback" not in missing.output
    nothing = runner.invoke(cli, ["issue", "edit", issue_id])
    assert nothing.exit_code == 1 and "nothing to change" in nothing.output
    bad = runner.invoke(cli, ["issue", "edit", issue_id, "--subject", "a\nb"])
    assert bad.exit_code == 1 and "subject: must be one line" in bad.output
