"""What a command or a request needs: settings and the upgraded database."""

from __future__ import annotations

from sqlalchemy import Engine

from newsletter.config import Settings, get_settings
from newsletter.db import open_database


def settings_and_engine() -> tuple[Settings, Engine]:
    settings = get_settings()
    return settings, open_database(settings.database_url)
