"""The in-process web client of the web tests: starlette's TestClient, imported once here."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # starlette 1.x nags (at import only) that it prefers httpx2 over httpx; httpx is what we have.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

__all__ = ["TestClient"]
