"""Headless Debian Chromium through Playwright, never a downloaded browser.

Tests call ``chromium_browser()``; it skips with a clear reason when
/usr/bin/chromium (Debian's package) or the playwright library is missing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Debian's chromium is not installed (make test installs it with apt-get as root)")
    return path


@contextmanager
def chromium_browser() -> Iterator[Any]:
    """A Playwright Browser on Debian's chromium; closed (and its profile removed) afterwards."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - dev extra always installs it
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with tempfile.TemporaryDirectory(prefix="nl-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        try:
            yield context
        finally:
            context.close()
