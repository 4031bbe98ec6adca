"""Rendering: Jinja2 -> MJML -> inlined HTML, the text part, placeholders and personalisation."""

from __future__ import annotations

import html
import re
import shutil
import statistics
import time
from pathlib import Path

import pytest

from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.issues.placeholders import (
    DEFAULT_VALUES,
    PLACEHOLDERS,
    TEXT_PLACEHOLDERS,
    Personalizer,
    leftover_placeholders,
    substitutions,
)
from newsletter.issues.render import EMAIL_TEMPLATES, RenderedEmail, Renderer, render_issue
from tests.support.sample_comparisons import (
    five_comparisons,
    hostile_comparison,
    issue_content_for,
    seed_like,
)

RECIPIENT = {"unsubscribe_url": "https://example.com/unsubscribe/tok?a=1&b=2", "first_name": "Zoë <Ada> & Co"}


@pytest.fixture
def seeds_email(cfg: Settings) -> RenderedEmail:
    return render_issue(cfg, issue_content_for(cfg, seed_like()))


def test_seed_issue_has_every_fact_and_fits_gmail(cfg: Settings, seeds_email: RenderedEmail) -> None:
    size = len(seeds_email.html.encode("utf-8"))
    assert size < 102 * 1024, f"email.html is {size} bytes: Gmail clips above 102 KB"
    assert size < 60 * 1024, f"email.html is {size} bytes (aim: < 60 KB)"
    content = issue_content_for(cfg, seed_like())
    for summary in content.comparisons:
        assert html.escape(summary.verdict, quote=False) in seeds_email.html
        assert summary.verdict in seeds_email.text.replace("\n", " ")
        assert summary.url in seeds_email.html and summary.url in seeds_email.text
        for tool in summary.tools:
            assert html.escape(tool.name, quote=False) in seeds_email.html
            assert tool.name in seeds_email.text
    assert "3 ship / 1 skip" in seeds_email.html and "3 ship / 1 skip" in seeds_email.text
    assert "4 ship / 0 skip" in seeds_email.html and "4 ship / 0 skip" in seeds_email.text
    assert "a tie, no winner" in seeds_email.html and "a tie, no winner" in seeds_email.text
    assert (
        "Dissent: the Creator skips" in seeds_email.html and "Dissent: the Creator skips" in seeds_email.text
    )
    assert "— Builder, 88/100 · ship" in seeds_email.html
    assert "— Builder, 88/100 · ship" in seeds_email.text
    for part in (seeds_email.html, seeds_email.text):
        assert cfg.newsletter_name in part or cfg.newsletter_name.upper() in part
        assert cfg.postal_address in part
        assert f"{cfg.base_url}/issues/2026-W48" in part
    assert seeds_email.subject == content.subject


def test_html_document_is_email_ready(seeds_email: RenderedEmail) -> None:
    out = seeds_email.html
    assert out.startswith("<!doctype html>")
    assert re.search(r"<html\b[^>]*\blang=\"en\"", out)
    assert '<meta name="color-scheme" content="light dark"' in out
    assert '<meta name="supported-color-schemes" content="light dark"' in out
    assert "prefers-color-scheme: dark" in out
    assert "fonts.googleapis" not in out and "@import" not in out and "@font-face" not in out
    for img in re.findall(r"<img\b[^>]*>", out):
        assert re.search(r'\balt="[^"]*"', img), img
    # CSS was inlined: the verdict box carries its style on the element itself.
    verdict = re.search(r'<td class="verdict[^"]*"[^>]*>', out)
    assert verdict is not None and "background-color:#eef2ff" in verdict.group().replace(" ", "")
    # The hidden preheader comes first in <body>.
    body = out[out.index("<body") :]
    assert body.index(html.escape(seeds_email.preheader, quote=False)) < body.index("Weekly AI Tool Verdicts")
    assert "data-premailer" not in out


def test_placeholders_survive_inlining_and_are_all_filled(cfg: Settings, seeds_email: RenderedEmail) -> None:
    assert f'href="{PLACEHOLDERS["unsubscribe_url"]}"' in seeds_email.html
    assert PLACEHOLDERS["first_name"] in seeds_email.html
    for token in TEXT_PLACEHOLDERS.values():
        assert token in seeds_email.text
    assert not any(token in seeds_email.html for token in TEXT_PLACEHOLDERS.values())
    out_html, out_text = seeds_email.personalize(RECIPIENT)
    assert leftover_placeholders(out_html) == [] and "%%" not in out_html
    assert leftover_placeholders(out_text) == [] and "%%" not in out_text
    # Escaped in HTML (inside href too), raw in text.
    assert 'href="https://example.com/unsubscribe/tok?a=1&amp;b=2"' in out_html
    assert "Hi Zoë &lt;Ada&gt; &amp; Co," in out_html
    assert "Zoë <Ada>" not in out_html
    assert "Unsubscribe: https://example.com/unsubscribe/tok?a=1&b=2" in out_text
    assert "Hi Zoë <Ada> & Co," in out_text


def test_first_name_defaults_and_unsubscribe_is_required(seeds_email: RenderedEmail) -> None:
    out_html, out_text = seeds_email.personalize({"unsubscribe_url": "https://x.test/u"})
    assert f"Hi {DEFAULT_VALUES['first_name']}," in out_html and "Hi there," in out_text
    with pytest.raises(RenderError, match="unsubscribe_url"):
        seeds_email.personalize({"first_name": "Ada"})
    with pytest.raises(RenderError, match="unsubscribe_url"):
        substitutions({"first_name": "Ada"})


def test_server_side_substitutions_give_the_same_message(seeds_email: RenderedEmail) -> None:
    mapping = substitutions(RECIPIENT)
    assert set(mapping) == set(PLACEHOLDERS.values()) | set(TEXT_PLACEHOLDERS.values())
    by_provider_html, by_provider_text = seeds_email.html, seeds_email.text
    for token, value in mapping.items():
        by_provider_html = by_provider_html.replace(token, value)
        by_provider_text = by_provider_text.replace(token, value)
    assert (by_provider_html, by_provider_text) == seeds_email.personalize(RECIPIENT)


def test_web_version_has_no_recipient_placeholders(cfg: Settings, seeds_email: RenderedEmail) -> None:
    web = seeds_email.web_html(cfg)
    assert leftover_placeholders(web) == []
    assert f'<a class="link" href="{cfg.base_url}/"' in web
    assert "Hi there," in web


def test_markup_in_the_data_renders_as_text(cfg: Settings) -> None:
    content = issue_content_for(cfg, [hostile_comparison(), *seed_like()[:1]])
    email = render_issue(cfg, content)
    out = email.html
    assert "<script>" not in out and "alert(1)</script>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "Tom &amp; Jerry &lt;AI&gt;" in out
    assert "<AI>" not in out and "<code>" not in out and "<b>bold</b>" not in out
    assert "&lt;/mj-text&gt;&lt;/mjml&gt; &amp; &lt;!-- x" in out
    assert "R&amp;D teams who write &lt;code&gt;" in out
    # MJML survived it: the second card (after the hostile one) is intact.
    assert "Axolotl v0.16 vs Mistral 8x24B Mixture-of-Experts" in out
    assert out.count("Read the full comparison") == 2
    # The subject and the text part are plain text: no escaping there.
    assert email.subject.startswith("Ship Tom & Jerry <AI>")
    assert "<script>alert(1)</script>" in email.text
    assert "&amp;" not in email.text


def test_rendering_is_deterministic(cfg: Settings) -> None:
    content = issue_content_for(cfg, five_comparisons())
    first, second = render_issue(cfg, content), render_issue(cfg, content)
    assert (first.html, first.text) == (second.html, second.text)
    assert len(first.html.encode()) < 102 * 1024


def test_text_part_reads_on_its_own(seeds_email: RenderedEmail) -> None:
    lines = seeds_email.text.splitlines()
    long_lines = [line for line in lines if len(line) > 78 and "://" not in line]
    assert long_lines == []
    assert "<" not in seeds_email.text.replace("<Ada>", "")
    assert "Read the full comparison:" in seeds_email.text


def test_edited_templates_are_picked_up(cfg: Settings, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(EMAIL_TEMPLATES, templates)
    renderer = Renderer(templates)
    content = issue_content_for(cfg, seed_like()[:1])
    before = renderer.render(content, cfg)
    signature = renderer.signature()
    header = templates / "_header.mjml.j2"
    header.write_text(header.read_text().replace("View this issue in your browser", "Open it on the web"))
    stat = header.stat()
    import os

    os.utime(header, (stat.st_atime, stat.st_mtime + 5))
    after = renderer.render(content, cfg)
    assert "View this issue in your browser" in before.html
    assert "Open it on the web" in after.html
    assert renderer.signature() != signature


def test_broken_template_is_a_render_error(cfg: Settings, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(EMAIL_TEMPLATES, templates)
    (templates / "_footer.mjml.j2").write_text("{% if %}")
    with pytest.raises(RenderError, match="email template"):
        Renderer(templates).render(issue_content_for(cfg, seed_like()[:1]), cfg)
    with pytest.raises(RenderError, match="not found"):
        Renderer(tmp_path / "nowhere")


def test_personalisation_is_microseconds(cfg: Settings) -> None:
    email = render_issue(cfg, issue_content_for(cfg, five_comparisons()))
    html_part, text_part = email.html_personalizer, email.text_personalizer
    assert html_part.names == {"unsubscribe_url", "first_name"}
    runs = []
    for n in range(2000):
        values = {"unsubscribe_url": f"https://example.com/u/{n}", "first_name": f"Reader{n}"}
        start = time.perf_counter()
        html_part.fill(values)
        text_part.fill(values)
        runs.append(time.perf_counter() - start)
    median_us = statistics.median(runs) * 1e6
    # Target is 20 µs (bench/render.py reports it); the test allows for a loaded CI machine.
    assert median_us < 100, f"{median_us:.1f} µs per recipient"


def test_personalizer_ignores_unknown_tokens() -> None:
    filler = Personalizer("a %%NOT_OURS%% b %%UNSUBSCRIBE_URL%%", html=True)
    assert filler.fill({"unsubscribe_url": "u&v"}) == "a %%NOT_OURS%% b u&amp;v"
