"""The archive (issues/<id>/) and the preview command (files and --serve)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import Settings
from newsletter.db import open_database
from newsletter.errors import NotFoundError
from newsletter.issues import mark_sending
from newsletter.issues.archive import (
    archived_ids,
    issue_dir,
    load_issue,
    write_atomic,
    write_issue,
)
from newsletter.issues.build import build_issue
from newsletter.issues.content import IssueContent
from newsletter.issues.placeholders import leftover_placeholders, sample_values
from newsletter.issues.preview import make_preview_server, render_preview, write_preview
from newsletter.resources import EMAIL_TEMPLATES
from tests.support.sample_comparisons import insert_comparisons, seed_like

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
runner = CliRunner()


@pytest.fixture
def built(cfg: Settings) -> tuple[Settings, Engine]:
    engine = open_database(cfg.database_url)
    insert_comparisons(engine, seed_like())
    assert build_issue(cfg, engine, date=MONDAY).issue_id == "2026-W48"
    return cfg, engine


def test_write_and_load_round_trip(cfg: Settings) -> None:
    folder = write_issue(
        cfg,
        "2026-W01",
        html="<p>h</p>",
        text="t",
        web_html="<p>w</p>",
        data={"subject": "S", "preheader": "P"},
    )
    assert folder == Path(cfg.issues_dir) / "2026-W01"
    loaded = load_issue(cfg, "2026-W01")
    assert (loaded.html, loaded.text, loaded.web_html) == ("<p>h</p>", "t", "<p>w</p>")
    assert (loaded.subject, loaded.preheader) == ("S", "P")
    assert sorted(p.name for p in folder.iterdir()) == ["email.html", "email.txt", "issue.json", "web.html"]
    assert archived_ids(cfg) == ["2026-W01"]
    assert oct((folder / "email.html").stat().st_mode & 0o777) == oct(0o644)


def test_missing_or_hostile_ids_are_not_found(cfg: Settings) -> None:
    with pytest.raises(NotFoundError):
        load_issue(cfg, "2026-W02")
    for bad in ("../etc", "a/b", "", ".hidden", "x" * 80):
        with pytest.raises(NotFoundError):
            issue_dir(cfg, bad)


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "deep" / "file.txt"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]

    def crash(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("newsletter.files.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "three")  # fails before the swap: the old file stays whole
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_built_issue_archive(built: tuple[Settings, Engine]) -> None:
    cfg, _engine = built
    archived = load_issue(cfg, "2026-W48")
    data = json.loads((archived.path / "issue.json").read_text())
    assert data["id"] == "2026-W48" and data["subject"] == archived.subject
    assert IssueContent.model_validate(data["content"]) == archived.content
    assert len(data["comparisons"]) == 3
    assert leftover_placeholders(archived.web_html) == []
    assert f'href="{cfg.base_url}/"' in archived.web_html
    assert leftover_placeholders(archived.html) != []


def test_preview_file_has_a_sample_recipient(built: tuple[Settings, Engine], tmp_path: Path) -> None:
    cfg, engine = built
    html_path, text_path = write_preview(cfg, engine, None, tmp_path / "out" / "preview.html")
    assert text_path == tmp_path / "out" / "preview.txt"
    html, text = html_path.read_text(), text_path.read_text()
    assert leftover_placeholders(html) == [] and leftover_placeholders(text) == []
    assert "Hi Ada," in html and "Hi Ada," in text
    assert sample_values(cfg)["unsubscribe_url"] in html
    assert "3 ship / 1 skip" in html


def test_preview_of_a_frozen_issue_is_what_was_sent(built: tuple[Settings, Engine], tmp_path: Path) -> None:
    cfg, engine = built
    mark_sending(engine, "2026-W48")
    templates = tmp_path / "templates"
    shutil.copytree(EMAIL_TEMPLATES, templates)
    header = templates / "_header.mjml.j2"
    header.write_text(header.read_text().replace("View this issue in your browser", "CHANGED"))
    preview = render_preview(cfg, engine, "2026-W48", templates_dir=templates)
    assert "CHANGED" not in preview.html and "View this issue in your browser" in preview.html


def test_preview_cli(built: tuple[Settings, Engine], tmp_path: Path) -> None:
    out = tmp_path / "p.html"
    result = runner.invoke(app, ["preview", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and out.with_suffix(".txt").exists()
    unknown = runner.invoke(app, ["preview", "1999-W01", "--out", str(out)])
    assert unknown.exit_code == 1


def test_preview_without_any_issue(cfg: Settings, tmp_path: Path) -> None:
    result = runner.invoke(app, ["preview", "--out", str(tmp_path / "p.html")])
    assert result.exit_code == 1
    assert "no issue built yet" in result.output


@pytest.fixture
def preview_server(built: tuple[Settings, Engine], tmp_path: Path) -> Iterator[tuple[str, Path, object]]:
    cfg, engine = built
    templates = tmp_path / "templates"
    shutil.copytree(EMAIL_TEMPLATES, templates)
    server = make_preview_server(cfg, engine, None, port=0, templates_dir=templates)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host!s}:{port}", templates, server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http://127.0.0.1 only
        return response.status, response.headers["Content-Type"], response.read().decode()


def test_preview_server_reloads_on_template_change(preview_server: tuple[str, Path, object]) -> None:
    base, templates, server = preview_server
    assert base.startswith("http://127.0.0.1:")
    status, kind, body = _get(base + "/")
    assert status == 200 and kind.startswith("text/html")
    assert "Hi Ada," in body and "View this issue in your browser" in body
    status, kind, text = _get(base + "/email.txt")
    assert kind.startswith("text/plain") and "Hi Ada," in text
    renders = server.preview_cache.renders  # type: ignore[attr-defined]
    _get(base + "/")
    assert server.preview_cache.renders == renders  # type: ignore[attr-defined]  # cached: nothing changed

    header = templates / "_header.mjml.j2"
    header.write_text(header.read_text().replace("View this issue in your browser", "Read it on the web"))
    stat = header.stat()
    os.utime(header, (stat.st_atime, stat.st_mtime + 5))
    _status, _kind, body = _get(base + "/")
    assert "Read it on the web" in body
    with pytest.raises(urllib.error.HTTPError) as missing:
        _get(base + "/nope")
    missing.value.close()
    assert missing.value.code == 404
