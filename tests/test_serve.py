"""`newsletter serve` as a user runs it: a real process, a real port, SIGTERM to stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from newsletter.cli import app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_health(url: str, process: subprocess.Popen[str], timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"serve exited early with {process.returncode}: {output}")
        try:
            return httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {timeout}s")


def test_serve_answers_health_and_stops_on_sigterm(sqlite_env: dict[str, str]) -> None:
    port = _free_port()
    environment = {**os.environ, **sqlite_env, "NEWSLETTER_TIMEZONE": "Europe/Berlin"}
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        response = _wait_for_health(f"http://127.0.0.1:{port}/healthz", process)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
        assert time.monotonic() - started < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert process.returncode == 0, output
    assert "scheduler on: next weekly run" in output
    assert "stopped" in output
    assert "Traceback" not in output


def test_schedule_show_prints_next_runs_in_zone_and_utc(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_TIMEZONE", "America/New_York")
    result = CliRunner().invoke(app, ["schedule", "show", "--count", "2"])
    assert result.exit_code == 0, result.output
    assert "0 9 * * MON in America/New_York" in result.output
    assert result.output.count(" 09:00 E") == 2  # EST/EDT local times
    assert "UTC" in result.output
    assert "no slot has run yet" in result.output


def test_serve_rejects_a_bad_time_zone_with_one_line(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_TIMEZONE", "Europe/Atlantis")
    result = CliRunner().invoke(app, ["serve", "--port", "1"])
    assert result.exit_code == 1
    assert "NEWSLETTER_TIMEZONE" in result.output and "Europe/Atlantis" in result.output
    assert "Traceback" not in result.output
