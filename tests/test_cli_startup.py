"""The CLI loads a command's heavy dependencies only when that command runs."""

from __future__ import annotations

import subprocess
import sys

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
