"""The CLI's promise for user errors and user data: one line on stderr, exit 1, never a traceback.

Text that came from users (a subscriber's name, a page title, an argument) is
printed as it is: Rich markup is off, so ``[/x]`` neither crashes nor vanishes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from tests.conftest import SEEDS
from tests.support.delivery_fixtures import run_cli

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


# --- issue 11: one validation everywhere, and no traceback for anything ----------------------


def _issue_with_subscribers(env: dict[str, str], tmp_path: Path) -> str:
    for args in (
        ["db", "upgrade"],
        ["comparisons", "import", str(SEEDS)],
        ["subscribers", "add", "--confirmed", "zoe@example.com"],
    ):
        done = run_cli(env, *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    built = run_cli(env, "issue", "build", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    return built.stdout.strip().splitlines()[-1]


def _one_stderr_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_test_send_validates_addresses_as_subscribe_does(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    issue_id = _issue_with_subscribers(sqlite_env, tmp_path)
    line = _one_stderr_line(run_cli(sqlite_env, "send", issue_id, "--test-to", "ok@example.com,bad@"))
    assert "'bad@' is not a valid email address" in line
    assert not list((tmp_path / "outbox").glob("*.eml")), "nothing is sent when one address is bad"


@pytest.mark.usefixtures("sqlite_env")
def test_a_name_for_several_addresses_is_refused() -> None:
    result = runner.invoke(app, ["subscribers", "add", "a@example.com", "b@example.com", "--name", "Zoë"])
    assert "--name is for one address" in _one_line_error(result)
    listed = runner.invoke(app, ["subscribers", "list"])
    assert "a@example.com" not in listed.output


@pytest.mark.usefixtures("sqlite_env")
def test_subscribers_import_reports_bad_rows_imports_the_rest_and_exits_1(tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("email,name\nzoe@example.com,Zoë Ünal\nbad@,x\nsean@example.com,Seán O'Brien\n", "utf-8")
    result = runner.invoke(app, ["subscribers", "import", str(csv), "--confirmed"])
    assert result.exit_code == 1, result.output
    assert f"{csv}:3: 'bad@' is not a valid email address" in result.output
    listed = runner.invoke(app, ["subscribers", "list"])
    assert "zoe@example.com" in listed.output and "sean@example.com" in listed.output


def test_preview_without_out_writes_into_the_archive_not_the_current_folder(
    sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    issue_id = _issue_with_subscribers(sqlite_env, tmp_path)
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    done = run_cli(sqlite_env, "preview", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert list(elsewhere.iterdir()) == []
    folder = tmp_path / "issues" / issue_id
    assert "— +" in (folder / "preview.html").read_text("utf-8")
    assert (folder / "preview.txt").read_text("utf-8").strip()


@pytest.mark.usefixtures("sqlite_env")
def test_an_unexpected_error_is_one_line_naming_a_log_with_the_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk on fire — 火")

    monkeypatch.setattr("newsletter.commands.issues.list_issues", broken)
    result = runner.invoke(app, ["issue", "list"])
    line = _one_line_error(result)
    assert "unexpected RuntimeError: disk on fire — 火" in line
    log = Path(line.rsplit("traceback in ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text("utf-8") and "disk on fire" in log.read_text("utf-8")
    log.unlink()
    verbose = runner.invoke(app, ["--verbose", "issue", "list"])
    assert verbose.exit_code == 1
    assert "Traceback" in verbose.output and "traceback above" in verbose.output
