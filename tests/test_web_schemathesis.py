"""schemathesis (v4) against the app's own OpenAPI schema, in-process: no input makes a 5xx.

Each operation gets generated cases from ``APIOperation.as_strategy()`` driven by
Hypothesis (25 valid-shaped and 15 invalid-shaped examples per operation), so the
whole module stays well under a minute. Admin operations are called with the bearer
token, so generated bodies reach the handlers instead of stopping at 401.

(``schemathesis.pytest.from_fixture`` would read the app from a fixture, but its lazy
loader touches a pytest-internal attribute that pytest 9 removed; the explicit loop
below is equivalent and reports every failing operation.)
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from newsletter.config import get_settings
from newsletter.web import create_app

ADMIN = {"Authorization": "Bearer test-admin-token"}
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}


@pytest.fixture
def web_schema(sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    # thousands of generated subscribes must reach the handler, not the rate limiter
    monkeypatch.setenv("NEWSLETTER_SUBSCRIBE_RATE_LIMIT", "1000000")
    get_settings.cache_clear()
    app = create_app(get_settings())
    app.state.web.login_limiter.limit = 1_000_000
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _check(case: Any) -> None:
    admin = case.path.startswith("/admin") and case.path != "/admin/login"
    response = case.call(headers=ADMIN if admin else None)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
    assert "Traceback" not in response.text
    nosniff = response.headers.get("x-content-type-options")
    assert nosniff in ("nosniff", ["nosniff"]), response.headers


def test_schema_covers_the_public_routes(web_schema: Any) -> None:
    paths = {operation.ok().path for operation in web_schema.get_all_operations()}
    for path in (
        "/",
        "/subscribe",
        "/confirm/{token}",
        "/unsubscribe/{token}",
        "/issues",
        "/issues/{issue_id}",
        "/admin",
        "/healthz",
    ):
        assert path in paths


def test_no_generated_input_makes_a_server_error(web_schema: Any) -> None:
    failures: list[str] = []
    timings: list[str] = []
    operations = [result.ok() for result in web_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode, examples in EXAMPLES.items():
            started = time.monotonic()

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                _check(case)

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (e.g. no parameters, no body)
                assert mode is GenerationMode.NEGATIVE, operation.label
            except Exception as exc:  # collect, so one run names every failing operation
                failures.append(f"{operation.label} ({mode.value}): {exc}")
            timings.append(f"{operation.label} {mode.value}: {time.monotonic() - started:.1f}s")
    assert not failures, "\n".join(failures + timings)
