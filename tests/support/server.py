"""Run the real web app under uvicorn on 127.0.0.1 and a free port, then stop it.

In a thread of the test process (the app object is yours, e.g. ``create_app(settings)``)::

    from tests.support.server import free_port, running_server

    port = free_port()
    monkeypatch.setenv("NEWSLETTER_BASE_URL", f"http://127.0.0.1:{port}")  # links in mails
    with running_server(create_app(get_settings()), port=port) as server:
        httpx.get(server.url + "/healthz")

Or as a separate process (its own GIL; settings from the environment; for benches)::

    with uvicorn_process(env={"NEWSLETTER_DATABASE_URL": ...}, workers=1) as server:
        ...
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningServer:
    url: str
    port: int
    pid: int | None = None  # the serving process, when it is a child (uvicorn_process)


def _wait_until_up(url: str, alive: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server for {url} stopped before answering")
        try:
            httpx.get(f"{url}/healthz", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@contextmanager
def running_server(app: Any, *, port: int | None = None, timeout: float = 20.0) -> Iterator[RunningServer]:
    """uvicorn serving ``app`` in a daemon thread; stopped (gracefully) on exit."""
    port = port or free_port()
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://{HOST}:{port}"
    try:
        _wait_until_up(url, thread.is_alive, timeout)
        yield RunningServer(url=url, port=port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if thread.is_alive():  # pragma: no cover - a stuck request
            server.force_exit = True
            thread.join(timeout=5)


@contextmanager
def uvicorn_process(
    env: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    workers: int = 1,
    timeout: float = 30.0,
) -> Iterator[RunningServer]:
    """``uvicorn --factory newsletter.web:create_app`` in a child process (settings from ``env``)."""
    port = port or free_port()
    environment = {**os.environ, **(env or {})}
    environment.setdefault("NEWSLETTER_BASE_URL", f"http://{HOST}:{port}")
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "newsletter.web:create_app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
        "--lifespan",
        "off",
    ]
    process = subprocess.Popen(command, env=environment)
    url = f"http://{HOST}:{port}"
    try:
        _wait_until_up(url, lambda: process.poll() is None, timeout)
        yield RunningServer(url=url, port=port, pid=process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait(timeout=5)
