"""The wheel works on its own: installed without ``-e`` and run from an empty folder.

Templates and migrations travel inside the package; nothing may be looked up next
to a source checkout. Builds the wheel, installs it with its dependencies in a
fresh virtual environment, and builds, archives and previews an issue there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, SEEDS

pytestmark = pytest.mark.slow


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def test_an_installed_wheel_builds_archives_and_previews_an_issue(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, ROOT, cwd=tmp_path)
    (wheel,) = wheels.glob("newsletter-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if n.startswith("newsletter/templates/"))
    expected = sorted(
        "newsletter/templates/" + p.relative_to(ROOT / "templates").as_posix()
        for p in (ROOT / "templates").rglob("*")
        if p.is_file()
    )
    assert shipped == expected
    assert "newsletter/migrations/env.py" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel, cwd=tmp_path)

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{empty / 'n.db'}",
        "NEWSLETTER_ISSUES_DIR": str(empty / "issues"),
        "NEWSLETTER_OUTBOX_DIR": str(empty / "outbox"),
        "NEWSLETTER_SECRET_KEY": "wheel-test-secret",
    }
    newsletter = env_dir / "bin" / "newsletter"
    where = run(python, "-c", "import newsletter; print(newsletter.__file__)", cwd=empty, env=env)
    assert where.startswith(str(env_dir)), where
    run(newsletter, "db", "upgrade", cwd=empty, env=env)
    run(newsletter, "comparisons", "import", SEEDS, cwd=empty, env=env)
    issue_id = run(newsletter, "issue", "build", cwd=empty, env=env).strip().splitlines()[-1]
    folder = empty / "issues" / issue_id
    for name in ("email.html", "email.txt", "web.html", "issue.json"):
        assert (folder / name).stat().st_size > 0, name
    run(newsletter, "preview", issue_id, cwd=empty, env=env)
    assert "Axolotl" in (folder / "preview.html").read_text("utf-8")
