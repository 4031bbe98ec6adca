"""The end-to-end acceptance suite on every supported Python other than the default one.

``make test`` runs the whole suite on the default interpreter (the one of .venv)
and then ``nox -s acceptance``: the acceptance suite (and the header tests) on
every other supported interpreter found on this machine. An interpreter that is
missing is skipped with a line saying so, never silently.

Interpreters are looked up on PATH first, then in pyenv's versions folder (pyenv's
shims answer only for the versions it has made global).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import nox

SUPPORTED = ("3.11", "3.12", "3.13")
DEFAULT = f"{sys.version_info.major}.{sys.version_info.minor}"
OTHERS = [version for version in SUPPORTED if version != DEFAULT]
ACCEPTANCE = ["tests/acceptance", "tests/test_mime.py"]

nox.options.sessions = ["acceptance"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


def find_interpreter(version: str) -> str | None:
    """A working ``pythonX.Y`` for ``version``, or None."""
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True)
    for candidate in candidates:
        if candidate and _runs(candidate, version):
            return candidate
    return None


def _runs(path: str, version: str) -> bool:
    try:
        done = subprocess.run(
            [path, "-c", "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == version


@nox.session(python=False)
@nox.parametrize("version", OTHERS)
def acceptance(session: nox.Session, version: str) -> None:
    """Install the package into a venv of ``version`` and run the acceptance suite there."""
    interpreter = find_interpreter(version)
    if interpreter is None:
        session.skip(f"Python {version} is not installed here: its acceptance run is skipped")
    venv = os.path.join(".nox", f"py{version}")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        session.run(interpreter, "-m", "venv", venv, external=True)
    session.run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "-e", ".[acceptance]", external=True)
    session.run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ACCEPTANCE, *session.posargs,
                external=True)
