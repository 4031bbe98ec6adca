"""The CLI's promise for user errors and user data: one line on stderr, exit 1, never a traceback.

Text that came from users (a subscriber's name, a page title, an argument) is
printed as it is: Rich markup is off, so ``[/x]`` neither crashes nor vanishes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app

runner = CliRunner()


def _one_line_error(result: object) -> str:
    output = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 1, output  # type: ignore[attr-defined]
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # type: ignore[attr-defined]
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.usefixtures("sqlite_env")
def test_markup_in_subscriber_data_is_printed_verbatim() -> None:
    arguments = ["subscribers", "add", "--confirmed", "--name", "[/evil] [bold]", "m@example.com"]
    added = runner.invoke(app, arguments)
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["subscribers", "list"])
    assert listed.exit_code == 0, listed.output
    assert "[/evil]" in listed.output


@pytest.mark.usefixtures("sqlite_env")
def test_markup_in_arguments_stays_one_line_error() -> None:
    line = _one_line_error(runner.invoke(app, ["issue", "show", "[/]"]))
    assert "[/]" in line
    line = _one_line_error(runner.invoke(app, ["subscribers", "remove", "a[bold]b@example.com"]))
    assert "a[bold]b@example.com" in line


@pytest.mark.usefixtures("sqlite_env")
def test_markup_in_a_comparison_title_survives_listing(tmp_path: Path) -> None:
    page = {
        "title": "GPT-4o [preview] vs Claude [/beta]",
        "tools": [
            {"name": "GPT-4o [preview]", "reviews": [{"quote": "Fast."}]},
            {"name": "Claude [/beta]", "reviews": [{"quote": "Careful."}]},
        ],
    }
    source = tmp_path / "markup.json"
    source.write_text(json.dumps(page), encoding="utf-8")
    imported = runner.invoke(app, ["comparisons", "import", str(source)])
    assert imported.exit_code == 0, imported.output
    listed = runner.invoke(app, ["comparisons", "list"])
    assert listed.exit_code == 0, listed.output
    assert "[preview]" in listed.output


@pytest.mark.usefixtures("sqlite_env")
def test_import_of_a_directory_or_missing_file_is_a_user_error(tmp_path: Path) -> None:
    line = _one_line_error(runner.invoke(app, ["subscribers", "import", str(tmp_path)]))
    assert "is a directory" in line
    line = _one_line_error(runner.invoke(app, ["subscribers", "import", str(tmp_path / "nope.csv")]))
    assert "no such file" in line


def test_an_unreachable_database_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv(
        "NEWSLETTER_DATABASE_URL", f"postgresql+psycopg://postgres:pw@127.0.0.1:{closed_port}/x"
    )
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(tmp_path))
    from newsletter.config import get_settings
    from newsletter.db import dispose_engines

    get_settings.cache_clear()
    dispose_engines()
    line = _one_line_error(runner.invoke(app, ["comparisons", "list"]))
    assert "cannot reach the database" in line and "pw" not in line


@pytest.mark.usefixtures("sqlite_env")
def test_preview_on_a_busy_port_is_a_user_error() -> None:
    import socket

    samples = Path(__file__).resolve().parent.parent / "samples" / "comparisons"
    imported = runner.invoke(app, ["comparisons", "import", str(samples)])
    assert imported.exit_code == 0, imported.output
    built = runner.invoke(app, ["issue", "build", "--date", "2026-11-23"])
    assert built.exit_code == 0, built.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _one_line_error(runner.invoke(app, ["preview", "--serve", "--port", str(port)]))
    assert f"127.0.0.1:{port}" in line


def test_issue_build_fits_a_big_issue_under_the_clip_and_says_so(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from newsletter.config import get_settings

    monkeypatch.setenv("NEWSLETTER_ISSUE_SIZE", "14")
    get_settings.cache_clear()
    quote = "A long, specific panel quote about latency, pricing and the deployment story. " * 3
    pages = [
        {
            "title": f"Tool {n}A vs Tool {n}B",
            "slug": f"tool-{n}",
            "published_at": f"2026-11-{n + 1:02d}T09:00:00Z",
            "tools": [
                {
                    "name": f"Tool {n}{side}",
                    "tagline": "x" * 60,
                    "ship_pct": 50 + n,
                    "description": quote,
                    "reviews": [
                        {"persona": p, "score": 70, "verdict": "ship", "quote": quote}
                        for p in ("Builder", "Skeptic", "Futurist")
                    ],
                }
                for side in "AB"
            ],
        }
        for n in range(14)
    ]
    source = tmp_path / "many.json"
    source.write_text(json.dumps(pages), encoding="utf-8")
    assert runner.invoke(app, ["comparisons", "import", str(source)]).exit_code == 0
    built = runner.invoke(app, ["issue", "build", "--date", "2026-11-23"])
    assert built.exit_code == 0, built.output
    # Past the byte budget the least decisive comparisons are compact (or only listed): the
    # email stays under Gmail's clip, and the build says what it cut.
    assert "shown compact" in built.stderr and "NEWSLETTER_ISSUE_SIZE" in built.stderr
    assert "Gmail clips" not in built.stderr
    assert built.stdout.strip().splitlines()[-1] == "2026-W48"  # the id alone on the last line
    folder = Path(get_settings().issues_dir) / "2026-W48"
    assert (folder / "email.html").stat().st_size <= 100 * 1024
    fit = json.loads((folder / "issue.json").read_text(encoding="utf-8"))["fit"]
    assert fit["compact"] and fit["warning"] and fit["html_bytes"] <= 100 * 1024
