"""The CLI loads a command's heavy dependencies only when that command runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("premailer", "sendgrid", "sqlalchemy", "fastapi", "mjml", "alembic", "jinja2")


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sys.modules))"
    command = [sys.executable, "-c", probe]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return {name.split(".")[0] for name in done.stdout.split()}


def test_help_imports_no_heavy_dependency() -> None:
    code = "from newsletter.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    loaded = loaded_after(code)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_a_command_loads_what_it_needs_only() -> None:
    code = (
        "from newsletter.cli import app\ntry:\n    app(['comparisons', 'parse', '/nonexistent.txt'])\n"
        "except SystemExit:\n    pass"
    )
    loaded = loaded_after(code)
    assert "premailer" not in loaded and "fastapi" not in loaded and "sendgrid" not in loaded


def test_the_send_path_loads_no_renderer_nor_alembic(tmp_path: Path) -> None:
    """`newsletter send` of an issue that is already rendered: no MJML, premailer, Jinja or alembic."""
    env_code = (
        "import os\n"
        f"os.environ.update(NEWSLETTER_DATABASE_URL='sqlite:///{tmp_path / 'nl.db'}',"
        f" NEWSLETTER_DATA_DIR='{tmp_path}', NEWSLETTER_SECRET_KEY='k' * 32)\n"
        "from newsletter.config import get_settings\nfrom newsletter.db import open_database\n"
    )
    # a first process creates the schema (alembic runs there, as `make run`'s `db upgrade` does)
    subprocess.run(
        [sys.executable, "-c", env_code + "open_database(get_settings().database_url)"],
        check=True,
        timeout=60,
    )
    code = env_code + (
        "open_database(get_settings().database_url)\n"
        "import newsletter.commands.delivery\n"
        "import newsletter.delivery.messengers.sendgrid, newsletter.delivery.messengers.smtp"
    )
    loaded = loaded_after(code)
    assert "sqlalchemy" in loaded and "sendgrid" in loaded  # the probe did load the send path
    assert not loaded & {"premailer", "mjml", "jinja2", "alembic", "fastapi", "lxml", "cssutils"}, sorted(
        loaded & {"premailer", "mjml", "jinja2", "alembic", "fastapi", "lxml", "cssutils"}
    )


def test_the_command_runs_with_the_collector_on_and_start_up_frozen() -> None:
    """`python -m newsletter` switches the garbage collector off while it imports, and back on,
    with what start-up allocated frozen, once the command is loaded: a command never runs
    with the collector off."""
    probe = (
        "import gc, sys\n"
        "import newsletter.__main__\n"
        "assert not gc.isenabled(), 'start-up runs with the collector off'\n"
        "from newsletter import cli\n"
        "cli._load('status')\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 10000)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["True", "True"]
    # a process that imports the CLI itself (a test, an embedding) keeps its collector as it was
    plain = (
        "import gc\nfrom newsletter import cli\n"
        "cli._load('status')\nprint(gc.isenabled(), gc.get_freeze_count())"
    )
    done = subprocess.run(
        [sys.executable, "-c", plain], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["True", "0"]
