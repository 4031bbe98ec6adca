"""Subscriber benchmark: POST /subscribe against a real uvicorn, and CSV import.

    .venv/bin/python bench/subscribe.py                      # SQLite and PostgreSQL
    .venv/bin/python bench/subscribe.py --db sqlite --requests 5000 --rows 100000
    .venv/bin/python bench/subscribe.py --workers 2

For each database: requests/s of ``POST /subscribe`` (form, distinct new addresses,
each storing a pending subscriber and writing its confirmation mail to the outbox),
counted until the last mail is written, since both happen after the answer (the rate
of answers alone is printed beside it)
from a raw HTTP/1.1 asyncio client with ``--concurrency`` keep-alive connections against
``uvicorn --factory newsletter.web:create_app`` in its own process (the rate limit is
raised through NEWSLETTER_SUBSCRIBE_RATE_LIMIT), then rows/s of ``import_csv`` on a
generated ``--rows`` file (1 % bad rows, 1 % duplicates). PostgreSQL gets a throwaway
database at 127.0.0.1:5432, dropped afterwards. Targets: ≥ 300 subscribes/s,
≥ 20,000 rows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_SUBSCRIBES = 300.0
TARGET_ROWS = 20_000.0


def _env(tmp: Path, database_url: str) -> dict[str, str]:
    return {
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_DATA_DIR": str(tmp / "data"),
        "NEWSLETTER_ISSUES_DIR": str(tmp / "issues"),
        "NEWSLETTER_OUTBOX_DIR": str(tmp / "outbox"),
        "NEWSLETTER_SECRET_KEY": "bench-secret-key",
        "NEWSLETTER_ADMIN_TOKEN": "bench-admin-token",
        "NEWSLETTER_PROVIDER": "outbox",
        "NEWSLETTER_SCHEDULER": "off",
        "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "100000000",
    }


def subscribe_request(host: str, port: int, address: str) -> bytes:
    body = f"email={quote(address)}&name=Reader".encode()
    head = (
        f"POST /subscribe HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nAccept: text/html\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def get_request(host: str, port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


async def hammer(
    url: str, requests: int, concurrency: int, request_for: Callable[[str, int, int], bytes]
) -> tuple[float, dict[int, int], float]:
    """Keep-alive connections speaking raw HTTP/1.1: a load generator light enough that the
    server, not the client, is what gets measured (httpx costs about as much CPU as uvicorn).

    ``request_for(host, port, n)`` gives the bytes of request ``n`` (negative: warm-ups).
    Returns (answers/s, statuses, the perf_counter the measured requests started at)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    statuses: dict[int, int] = {}
    counter = iter(range(requests))

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(request_for(host, port, number))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        if number >= 0:  # warm-ups are not measured
            statuses[status] = statuses.get(status, 0) + 1

    async def worker(number: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            await one(reader, writer, -1 - number)
            await ready.wait()
            for index in counter:
                await one(reader, writer, index)
        finally:
            writer.close()

    ready = asyncio.Event()
    tasks = [asyncio.create_task(worker(number)) for number in range(concurrency)]
    await asyncio.sleep(0.5)  # connections open and warmed up
    started = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return requests / elapsed, statuses, started


def bench_subscribes(
    database_url: str, requests: int, concurrency: int, workers: int, outbox_tmpfs: bool
) -> dict[str, Any]:
    from tests.support.server import uvicorn_process

    shm = Path("/dev/shm")
    with (
        tempfile.TemporaryDirectory(prefix="nl-bench-sub-") as folder,
        tempfile.TemporaryDirectory(
            prefix="nl-bench-outbox-", dir=shm if outbox_tmpfs and shm.is_dir() else None
        ) as box,
    ):
        tmp = Path(folder)
        env = {**_env(tmp, database_url), "NEWSLETTER_OUTBOX_DIR": box}
        with uvicorn_process(env=env, workers=workers) as server:
            tag = os.urandom(3).hex()
            cpu_before = _cpu_seconds(server.pid) if workers == 1 else None

            def request_for(host: str, port: int, number: int) -> bytes:
                return subscribe_request(host, port, f"bench{number}.{tag}@example.com")

            answered, statuses, started = asyncio.run(hammer(server.url, requests, concurrency, request_for))
            # The answer goes out before the row is stored and the mail written (the rest runs
            # after it, so its timing tells nothing): the sustained rate is the one at which
            # subscriptions are done, i.e. until the last confirmation mail is in the outbox.
            expected = requests + concurrency  # the warm-ups subscribe too
            deadline = time.monotonic() + 60
            while len(list(Path(box).glob("*.eml"))) < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            mails = len(list(Path(box).glob("*.eml")))
            # what was done: if the deadline cut the wait short, the rate says so
            rate = min(requests, mails - concurrency) / (time.perf_counter() - started)
            # The server's own CPU per request: steadier than a rate on a shared machine.
            cpu_ms = (
                (_cpu_seconds(server.pid) - cpu_before) / requests * 1000 if cpu_before is not None else None
            )
            # The raw limit: the same server answering its cheapest route.
            healthz, _, _ = asyncio.run(
                hammer(server.url, requests, concurrency, lambda h, p, _n: get_request(h, p, "/healthz"))
            )
    return {
        "rate": rate,
        "answered_rate": answered,
        "server_cpu_ms": cpu_ms,
        "healthz_rate": healthz,
        "statuses": statuses,
        "mails": mails,
    }


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_webhooks(database_url: str, events: int, per_request: int = 1000) -> dict[str, Any]:
    """Signed SendGrid event batches (ECDSA verified, stored once per sg_event_id) per second."""
    import json

    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.support.server import uvicorn_process
    from tests.support.webhooks import public_key_b64, sign

    key = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    bodies = []
    for start in range(0, events, per_request):
        batch = [
            {
                "email": f"reader{n}@example.com",
                "event": ("delivered", "open", "click")[n % 3],
                "timestamp": now,
                "sg_event_id": f"bench-{now}-{n}",
                "issue_id": "2026-W48",
                "subscriber_id": str(n),
            }
            for n in range(start, min(events, start + per_request))
        ]
        bodies.append(json.dumps(batch).encode())
    signed = [(body, sign(key, body, timestamp=str(now))) for body in bodies]

    def request_for(host: str, port: int, number: int) -> bytes:
        if number < 0:
            return get_request(host, port, "/healthz")
        body, headers = signed[number]
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = (
            f"POST /webhooks/sendgrid HTTP/1.1\r\nHost: {host}:{port}\r\n{lines}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    with tempfile.TemporaryDirectory(prefix="nl-bench-hook-") as folder:
        env = {
            **_env(Path(folder), database_url),
            "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": public_key_b64(key),
        }
        with uvicorn_process(env=env) as server:
            rate, statuses, _ = asyncio.run(hammer(server.url, len(signed), 2, request_for))
    return {"rate": rate * per_request, "requests": len(signed), "statuses": statuses}


def write_csv(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("email,name\n")
        for index in range(rows):
            if index % 100 == 7:
                handle.write(f"broken-{index}-at-nowhere,Bad {index}\n")
            elif index % 100 == 8:
                handle.write(f"Row{index - 2}@Example.com,Duplicate {index}\n")
            else:
                handle.write(f"row{index}@example.com,Reader {index}\n")


def bench_import(database_url: str, rows: int) -> dict[str, Any]:
    from newsletter.config import load_settings
    from newsletter.db import dispose_engines, open_database
    from newsletter.subscribers import import_csv

    with tempfile.TemporaryDirectory(prefix="nl-bench-csv-") as folder:
        tmp = Path(folder)
        settings = load_settings(
            database_url=database_url,
            data_dir=tmp / "data",
            outbox_dir=tmp / "outbox",
            secret_key="bench-secret-key",
        )
        engine = open_database(database_url)
        path = tmp / "subscribers.csv"
        write_csv(path, rows)
        started = time.perf_counter()
        report = import_csv(settings, engine, path, confirmed=True)
        elapsed = time.perf_counter() - started
        dispose_engines()
    return {
        "rate": rows / elapsed,
        "elapsed": elapsed,
        "imported": report.imported,
        "errors": len(report.errors),
        "duplicates": report.duplicates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=3000, help="POST /subscribe requests per database")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--rows", type=int, default=100_000, help="CSV rows to import")
    parser.add_argument(
        "--outbox-tmpfs",
        action="store_true",
        help="write the confirmation mails to /dev/shm (the outbox fsyncs every .eml: takes the disk out)",
    )
    args = parser.parse_args()

    from bench._harness import pg_throwaway_database

    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    lines = []
    for db in databases:
        for stage in ("subscribe", "import"):
            with tempfile.TemporaryDirectory(prefix="nl-bench-db-") as folder:
                if db == "sqlite":
                    context: Any = _nullcontext(f"sqlite:///{Path(folder) / 'bench.db'}")
                else:
                    context = pg_throwaway_database("nl_bench_sub")
                with context as url:
                    if url is None:
                        lines.append(
                            f"{db:<9} {stage:<10} skipped: PostgreSQL not reachable at 127.0.0.1:5432"
                        )
                        continue
                    if stage == "subscribe":
                        result = bench_subscribes(
                            url, args.requests, args.concurrency, args.workers, args.outbox_tmpfs
                        )
                        ok = "ok" if result["rate"] >= TARGET_SUBSCRIBES else "BELOW TARGET"
                        lines.append(
                            f"{db:<9} subscribe  {result['rate']:>9,.0f} requests/s stored and mailed "
                            f"(answered at {result['answered_rate']:,.0f}/s; "
                            + (
                                f"server CPU {result['server_cpu_ms']:.2f} ms each; "
                                if result["server_cpu_ms"] is not None
                                else ""
                            )
                            + f"{args.requests} requests, "
                            f"concurrency {args.concurrency}, "
                            f"{args.workers} worker(s), statuses {result['statuses']}, "
                            f"{result['mails']} mails{' on tmpfs' if args.outbox_tmpfs else ''})  "
                            f"target ≥ {TARGET_SUBSCRIBES:.0f}: {ok}"
                        )
                    else:
                        result = bench_import(url, args.rows)
                        ok = "ok" if result["rate"] >= TARGET_ROWS else "BELOW TARGET"
                        lines.append(
                            f"{db:<9} import     {result['rate']:>9,.0f} rows/s      "
                            f"({args.rows:,} rows in {result['elapsed']:.2f} s: "
                            f"{result['imported']:,} imported, "
                            f"{result['errors']:,} bad, {result['duplicates']:,} duplicates)  "
                            f"target ≥ {TARGET_ROWS:,.0f}: {ok}"
                        )
                print(lines[-1], flush=True)
    print()
    print("\n".join(lines))


class _nullcontext:
    def __init__(self, value: str) -> None:
        self.value = value

    def __enter__(self) -> str:
        return self.value

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
