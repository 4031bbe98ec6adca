# ruff: noqa: E501
"""Golden files: the text part of the sample-page issue and of hand-made variants.

Each was read by eye before it was committed. A change to the verdicts or the templates
that changes what a reader gets fails here until the new text is reviewed and rewritten:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py   # then read `git diff tests/golden`
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.config import Settings
from newsletter.issues.render import render_issue
from newsletter.models import Comparison, Review, ToolEntry
from newsletter.sources import parse_file
from tests.conftest import SEEDS
from tests.support.sample_comparisons import BASE_DATE, comparison_000, five_comparisons, issue_content_for

GOLDEN = Path(__file__).parent / "golden"


def _review(persona: str, score: int, verdict: str, quote: str) -> Review:
    return Review(persona=persona, score=score, verdict=verdict, quote=quote)  # type: ignore[arg-type]


def true_split() -> list[Comparison]:
    """One tool ships, the other is skipped: a real winner, with a dissent on each side."""
    return [
        Comparison(
            title="Cursor 2.0 vs Zed AI — l'éditeur",
            category="Code editors",
            published_at=BASE_DATE,
            tools=[
                ToolEntry(
                    name="Cursor 2.0",
                    tagline="The AI-first editor, now with background agents",
                    ship_pct=75,
                    pricing="Paid",
                    pricing_detail="Paid / $20 per month (Pro)",
                    reviews=[
                        _review(
                            "Builder",
                            86,
                            "ship",
                            "Background agents are the real deal. They ran a 40-file refactor while I reviewed PRs — e.g. the auth module — and it beat doing it by hand.",
                        ),
                        _review(
                            "Skeptic",
                            71,
                            "ship",
                            "The pricing is steep. Still, it earns a ship because the agent loop is better than anything else I tried this month.",
                        ),
                        _review("Founder", 78, "ship", "Teams pay for time saved, and this saves hours."),
                        _review(
                            "Creator",
                            38,
                            "skip",
                            "It's a developer tool through and through. For writers it's a skip: the chat panel is fine, but nothing here is built for prose.",
                        ),
                    ],
                ),
                ToolEntry(
                    name="Zed AI",
                    tagline="Fast native editor with an assistant panel",
                    ship_pct=25,
                    pricing="Free",
                    reviews=[
                        _review(
                            "Builder",
                            64,
                            "ship",
                            "Zed is the fastest editor I've used. The AI is an add-on, not the point, but it ships for speed alone.",
                        ),
                        _review(
                            "Skeptic",
                            35,
                            "skip",
                            "The assistant lags Cursor by a generation. It's a skip until agents land.",
                        ),
                        _review(
                            "Founder",
                            30,
                            "skip",
                            "No team features worth paying for yet, so there is no business case to skip Cursor for it.",
                        ),
                        _review("Creator", 41, "skip", "Pretty, quick, and not for me."),
                    ],
                ),
            ],
        )
    ]


def unanimous_tie() -> list[Comparison]:
    """100 % vs 100 %: the panel ships both; nobody wins."""
    base = comparison_000().model_dump()
    base["title"] = "Ollama 0.5 vs LM Studio 0.3 — 本地模型"
    base["slug"] = "ollama-vs-lm-studio"
    for tool, name in zip(base["tools"], ("Ollama 0.5", "LM Studio 0.3"), strict=True):
        tool["name"] = name
        tool["ship_pct"] = 100
        tool["panel_ship"], tool["panel_skip"] = 4, 0
        tool["pricing"], tool["pricing_detail"] = "Free", None
        tool["reviews"] = [
            r | {"verdict": "ship", "score": max(r["score"] or 0, 60)} for r in tool["reviews"]
        ]
    return [Comparison.model_validate(base)]


def both_skip() -> list[Comparison]:
    return [
        Comparison(
            title="Devin Lite vs AutoGPT Classic",
            category="Agents",
            published_at=BASE_DATE,
            tools=[
                ToolEntry(
                    name="Devin Lite",
                    ship_pct=25,
                    pricing="Paid",
                    reviews=[
                        _review(
                            "Builder",
                            55,
                            "ship",
                            "It finished 2 of 5 tickets unattended, which is more than I expected.",
                        ),
                        _review(
                            "Skeptic",
                            20,
                            "skip",
                            "Two of five is not a product. Skip until it can be trusted with a repo.",
                        ),
                        _review("Founder", 30, "skip", "At $500 a seat the maths does not work."),
                        _review("Futurist", 40, "skip", "Right idea, wrong year."),
                    ],
                ),
                ToolEntry(
                    name="AutoGPT Classic",
                    ship_pct=0,
                    pricing="Free",
                    reviews=[
                        _review("Builder", 15, "skip", "It loops. It loops again. Skip."),
                        _review("Skeptic", 10, "skip", "A demo from 2023 that never grew up."),
                        Review(persona="Founder", quote="No panel take"),
                    ],
                ),
            ],
        )
    ]


def one_scored() -> list[Comparison]:
    return [
        Comparison(
            title="Whisper v4 vs Parakeet-TDT (Café edition)",
            published_at=BASE_DATE,
            tools=[
                ToolEntry(
                    name="Whisper v4",
                    tagline="Speech-to-text, 99 languages",
                    ship_pct=100,
                    pricing="Free",
                    reviews=[
                        Review(quote="Transcribes a 1-hour podcast in 3 minutes on a laptop. Easy ship."),
                        Review(quote="Accents are handled better than v3."),
                    ],
                ),
                ToolEntry(
                    name="Parakeet-TDT (Café edition)",
                    tagline="NVIDIA's streaming ASR",
                    pricing="Free",
                    reviews=[Review(quote="Too new to score: the weights landed yesterday.")],
                ),
            ],
        )
    ]


def three_repeats() -> list[Comparison]:
    """Axolotl v0.16 in three comparisons: introduced once, then referred to by name."""
    return five_comparisons()[:3]


VARIANTS: dict[str, Callable[[], list[Comparison]]] = {
    "sample_pages": five_comparisons,
    "true_split": true_split,
    "unanimous_tie": unanimous_tie,
    "both_skip": both_skip,
    "one_scored": one_scored,
    "three_repeats": three_repeats,
    "seed_pages_parsed": lambda: seed_pages_parsed(),
}


def seed_pages_parsed() -> list[Comparison]:
    """The real pages of samples/comparisons through the real parser (abstentions included)."""
    return [comparison for path in sorted(SEEDS.glob("*.txt")) for comparison in parse_file(path)]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_email_txt_matches_its_reviewed_golden_file(cfg: Settings, name: str) -> None:
    content = issue_content_for(cfg, VARIANTS[name]())
    # The archive's base URL differs per test run (a temporary port-free default is used here).
    text = render_issue(cfg, content).text.replace(cfg.base_url, "https://verdicts.example")
    golden = GOLDEN / f"{name}.email.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
        return
    expected = golden.read_text(encoding="utf-8") if golden.is_file() else ""
    if text != expected:
        diff = "".join(
            difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "now")
        )
        pytest.fail(f"{golden.name} changed; review and rerun with UPDATE_GOLDEN=1:\n{diff}")
