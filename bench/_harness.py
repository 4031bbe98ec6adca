"""Shared bench plumbing: the Figure every stage reports, ports, timing, a throwaway PostgreSQL."""

from __future__ import annotations

import socket
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
