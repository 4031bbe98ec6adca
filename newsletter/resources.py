"""Where the package's own files are: templates (email, web, mail) travel inside it.

``templates/`` stays at the top of the repository, as the design lays it out;
``newsletter/templates`` links to it, so an editable install and an installed
wheel (which copies the files in) find them at the same place.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
EMAIL_TEMPLATES = TEMPLATES_DIR / "email"
WEB_TEMPLATES = TEMPLATES_DIR / "web"
MAIL_TEMPLATES = WEB_TEMPLATES / "mail"


def package_version() -> str:
    """The installed distribution's version (0.0.0 when run from a bare source tree)."""
    try:
        return metadata.version("newsletter")
    except metadata.PackageNotFoundError:
        return "0.0.0"
