"""The email in headless Chromium: no horizontal scroll at phone and desktop widths.

Screenshots go to test-artifacts/ (email-375.png, email-600.png, email-600-dark.png)
so a human can look at them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Settings, get_settings
from newsletter.issues.placeholders import sample_values
from newsletter.issues.render import render_issue
from tests.support.browser import chromium_browser
from tests.support.sample_comparisons import hostile_comparison, issue_content_for, seed_like

pytestmark = pytest.mark.chromium


@pytest.fixture
def email_file(sqlite_env: dict[str, str], tmp_path: Path) -> tuple[Path, Settings]:
    settings = get_settings()
    rendered = render_issue(settings, issue_content_for(settings, seed_like()))
    html, _text = rendered.personalize(sample_values(settings))
    path = tmp_path / "email.html"
    path.write_text(html, encoding="utf-8")
    return path, settings


@pytest.mark.parametrize("width", [375, 600])
def test_no_horizontal_scroll(email_file: tuple[Path, Settings], artifacts_dir: Path, width: int) -> None:
    path, _settings = email_file
    with chromium_browser() as browser:
        page = browser.new_page()
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(path.as_uri())
        scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        page.screenshot(path=str(artifacts_dir / f"email-{width}.png"), full_page=True)
        visible = page.inner_text("body")
        if width == 600:
            page.emulate_media(color_scheme="dark")
            page.screenshot(path=str(artifacts_dir / "email-600-dark.png"), full_page=True)
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(24, 24, 27)"  # the dark palette applies
        page.close()
    assert scroll_width <= inner_width, f"{scroll_width}px wide content in a {inner_width}px viewport"
    assert (artifacts_dir / f"email-{width}.png").stat().st_size > 10_000
    for name in ("Axolotl v0.16", "Mistral 8x24B Mixture-of-Experts", "Mistral 3 Small (24B)"):
        assert name in visible
    assert "3 ship / 1 skip" in visible
    assert "Hi Ada," in visible


def test_hostile_content_stays_text_in_a_browser(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    settings = get_settings()
    rendered = render_issue(settings, issue_content_for(settings, [hostile_comparison()]))
    html, _text = rendered.personalize(sample_values(settings))
    path = tmp_path / "hostile.html"
    path.write_text(html, encoding="utf-8")
    with chromium_browser() as browser:
        page = browser.new_page()
        page.set_viewport_size({"width": 375, "height": 900})
        dialogs: list[str] = []

        def on_dialog(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(path.as_uri())
        visible = page.inner_text("body")
        scripts = page.evaluate("document.scripts.length")
        scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        page.close()
    assert dialogs == [] and scripts == 0
    assert "<script>alert(1)</script>" in visible
    assert "Tom & Jerry <AI>" in visible
    assert scroll_width <= inner_width
