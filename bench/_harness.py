"""Shared bench plumbing: run a stage in a child process and read its peak RSS.

Each stage runs as ``python bench/run.py --stage NAME ...`` in its own process so
``os.wait4`` reports that child's own peak RSS (``ru_maxrss``), not the sum of
everything the orchestrator ran before.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    stage: str
    unit: str
    project: float
    baseline: float | None = None
    baseline_name: str = ""
    higher_is_better: bool = True
    peak_rss_mb: float | None = None
    target: str = ""
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        if self.higher_is_better:
            return self.project / self.baseline
        return self.baseline / self.project if self.project else None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


def run_child(
    args: list[str], *, timeout: float, env: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], float]:
    """Run ``bench/run.py --stage …`` in a child; return its JSON figures and its peak RSS in MB."""
    command = [sys.executable, str(ROOT / "bench" / "run.py"), *args, "--emit-json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env={**os.environ, **(env or {})}, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            _pid, status, usage = os.wait4(process.pid, 0)
            raise TimeoutError(f"stage {' '.join(args)} took more than {timeout:.0f}s")
        time.sleep(0.05)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    process.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"stage {' '.join(args)} failed (exit {os.waitstatus_to_exitcode(status)})")
    line = [line for line in out.splitlines() if line.startswith("{")][-1]
    return json.loads(line)["figures"], usage.ru_maxrss / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(func: Callable[[], Any], repeat: int) -> list[float]:
    """Seconds per call, ``repeat`` times."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return times


@contextmanager
def pg_throwaway_database(prefix: str = "nl_bench") -> Iterator[str | None]:
    """A fresh PostgreSQL database at 127.0.0.1:5432 (None when no server answers); dropped after."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    except psycopg.OperationalError:
        yield None
        return
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        from newsletter.db import dispose_engines

        dispose_engines()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
