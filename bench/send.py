"""Delivery benchmark: the sendgrid path against the bare sendgrid client, and SMTP.

    .venv/bin/python bench/send.py                       # 100,000 subscribers on SQLite
    .venv/bin/python bench/send.py --subscribers 20000 --db postgres
    .venv/bin/python bench/send.py --db both --smtp-messages 2000

Prints, for each database: recipients/s of ``send_issue`` through the
``sendgrid`` messenger into a local SendGrid look-alike (no delay), the peak RSS
of the child process that ran the send (``os.wait4``), recipients/s of the bare
``sendgrid`` client posting the same number of prebuilt 1,000-recipient
requests, and the ratio (target ≥ 0.5, RSS ≤ 150 MB). Then SMTP messages/s with
1 and 4 connections into aiosmtpd. Every stage runs in its own child process;
the servers run in this one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

API_KEY = "SG.bench-key"


def _env(tmp: Path, database_url: str, **extra: str) -> dict[str, str]:
    values = {
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_DATA_DIR": str(tmp / "data"),
        "NEWSLETTER_ISSUES_DIR": str(tmp / "issues"),
        "NEWSLETTER_OUTBOX_DIR": str(tmp / "outbox"),
        "NEWSLETTER_SECRET_KEY": "bench-secret-key",
        "NEWSLETTER_ADMIN_TOKEN": "bench-admin",
        "NEWSLETTER_FROM_EMAIL": "Weekly AI Tool Verdicts <verdicts@example.com>",
        "NEWSLETTER_BASE_URL": "https://verdicts.example.com",
        "NEWSLETTER_PROVIDER": "outbox",
        **extra,
    }
    return values


def _apply_env(values: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith("NEWSLETTER_")]:
        del os.environ[key]
    os.environ.update(values)


def _prepare(values: dict[str, str], subscribers: int) -> str:
    """Schema, one archived issue, ``subscribers`` confirmed subscribers. Returns the issue id."""
    _apply_env(values)
    from newsletter.config import get_settings
    from newsletter.db import dispose_engines, open_database
    from tests.support.delivery_fixtures import add_subscribers, make_issue

    get_settings.cache_clear()
    settings = get_settings()
    engine = open_database(settings.database_url)
    issue = make_issue(settings, engine)
    add_subscribers(engine, subscribers, chunk=10000)
    dispose_engines()
    return issue


def _run_child(args: list[str], env: dict[str, str], timeout: float) -> tuple[dict[str, Any], float]:
    """Run a stage of this script in a child; its JSON result and its own peak RSS (MB)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--stage", *args]
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")} | env
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=child_env, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            os.wait4(process.pid, 0)
            raise TimeoutError(f"stage {args} took more than {timeout:.0f}s")
        time.sleep(0.02)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    process.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"stage {args} failed (exit {os.waitstatus_to_exitcode(status)}):\n{out}")
    line = [line for line in out.splitlines() if line.startswith("{")][-1]
    result = json.loads(line)
    # The child's own high-water mark (VmHWM, from /proc/self/status at its end), not
    # ru_maxrss: on Linux a child's ru_maxrss includes its parent's peak at fork time, and
    # this parent has just written a million subscribers.
    return result, float(result.pop("peak_rss_mb", usage.ru_maxrss / 1024))


# --- stages (run in the child) -------------------------------------------------------------------


def own_peak_rss_mb() -> float:
    """This process's peak resident memory since it started (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_send(issue: str) -> dict[str, Any]:
    import gc

    from newsletter.config import get_settings
    from newsletter.db import open_database
    from newsletter.delivery import send_issue

    gc.freeze()  # what start-up loaded is frozen out of the collector's walks, as the CLI does
    settings = get_settings()
    engine = open_database(settings.database_url)
    started = time.perf_counter()
    report = send_issue(settings, engine, issue)
    seconds = time.perf_counter() - started
    return {
        "sent": report.sent,
        "seconds": seconds,
        "status": report.issue_status,
        "peak_rss_mb": own_peak_rss_mb(),
    }


def stage_raw(url: str, recipients: int, issue: str) -> dict[str, Any]:
    """The bare sendgrid client posting prebuilt 1,000-personalization requests of the same issue."""
    import sendgrid

    from newsletter.config import get_settings
    from newsletter.db import open_database
    from newsletter.delivery.content import load_content
    from newsletter.issues.placeholders import PLACEHOLDERS, TEXT_PLACEHOLDERS

    settings = get_settings()
    content = load_content(settings, open_database(settings.database_url), issue)
    html, text = content.html, content.text
    client = sendgrid.SendGridAPIClient(api_key=API_KEY, host=url)
    bodies = []
    for variant in range(10):
        personalizations = [
            {
                "to": [{"email": f"reader{variant:02d}{i:05d}@example.com"}],
                "custom_args": {"issue_id": "2026-W48", "subscriber_id": str(i)},
                "headers": {
                    "List-Unsubscribe": f"<https://verdicts.example.com/unsubscribe/{'t' * 60}{i}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
                "substitutions": {
                    PLACEHOLDERS[
                        "unsubscribe_url"
                    ]: f"https://verdicts.example.com/unsubscribe/{'t' * 60}{i}",
                    TEXT_PLACEHOLDERS[
                        "unsubscribe_url"
                    ]: f"https://verdicts.example.com/unsubscribe/{'t' * 60}{i}",
                    PLACEHOLDERS["first_name"]: "there",
                    TEXT_PLACEHOLDERS["first_name"]: "there",
                },
            }
            for i in range(1000)
        ]
        bodies.append(
            {
                "personalizations": personalizations,
                "from": {"email": "verdicts@example.com", "name": "Weekly AI Tool Verdicts"},
                "subject": "Weekly AI Tool Verdicts",
                "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
                "categories": ["newsletter", "issue-2026-W48"],
            }
        )
    requests = (recipients + 999) // 1000
    started = time.perf_counter()
    for index in range(requests):
        client.client.mail.send.post(request_body=bodies[index % len(bodies)], timeout=30)
    seconds = time.perf_counter() - started
    return {"sent": requests * 1000, "seconds": seconds, "peak_rss_mb": own_peak_rss_mb()}


def stage_smtp_raw(url: str, messages: int, issue: str) -> dict[str, Any]:
    """The bare smtplib loop: one connection, prebuilt messages of the same issue, sendmail each."""
    import smtplib
    from urllib.parse import urlsplit

    from newsletter.config import get_settings
    from newsletter.db import open_database
    from newsletter.delivery.content import load_content
    from newsletter.delivery.messengers import Recipient
    from newsletter.delivery.mime import MessageTemplate

    settings = get_settings()
    content = load_content(settings, open_database(settings.database_url), issue)
    template = MessageTemplate(content)
    prebuilt = [
        (address, template.render(Recipient(email=address)).data)
        for address in (f"raw{n:07d}@example.com" for n in range(messages))
    ]
    parts = urlsplit(url)
    started = time.perf_counter()
    with smtplib.SMTP(parts.hostname or "127.0.0.1", parts.port or 25, timeout=30) as client:
        for address, data in prebuilt:
            client.sendmail(settings.from_email, [address], data)
    return {"sent": messages, "seconds": time.perf_counter() - started, "peak_rss_mb": own_peak_rss_mb()}


# --- the orchestrator ---------------------------------------------------------------------------------


@contextmanager
def sendgrid_install(
    kind: str, dbname: str, *, delay: float = 0.0
) -> Iterator[tuple[dict[str, str], Any] | None]:
    """A throwaway install (SQLite file or PostgreSQL database) pointed at a tallying SendGrid
    look-alike: (NEWSLETTER_* values, the look-alike), or None when PostgreSQL is absent."""
    from bench._harness import pg_throwaway_database
    from tests.support.fake_sendgrid import FakeSendGrid

    with (
        tempfile.TemporaryDirectory(prefix="nl-bench-") as folder,
        FakeSendGrid(api_key=API_KEY, record=False, tally=True, delay=delay) as server,
    ):
        tmp = Path(folder)
        context = (
            pg_throwaway_database(dbname)
            if kind == "postgres"
            else nullcontext(f"sqlite:///{tmp / 'data' / 'bench.db'}")
        )
        with context as url:
            if url is None:
                print("postgres: no server at 127.0.0.1:5432, skipped")
                yield None
                return
            values = _env(
                tmp,
                url,
                NEWSLETTER_PROVIDER="sendgrid",
                NEWSLETTER_SENDGRID_API_KEY=API_KEY,
                NEWSLETTER_SENDGRID_API_URL=server.url,
            )
            yield values, server


def bench_sendgrid(kind: str, subscribers: int) -> dict[str, Any] | None:
    with sendgrid_install(kind, "nl_bench_send") as install:
        if install is None:
            return None
        values, server = install
        started = time.perf_counter()
        issue = _prepare(values, subscribers)
        print(f"[{kind}] prepared {subscribers:,} subscribers in {time.perf_counter() - started:.1f}s")
        result, rss = _run_child(["send", issue], values, timeout=3600)
        assert result["sent"] == subscribers, result
        assert server.accepted_recipients == subscribers
        check_exactly_once(server.tally, subscribers, f"{kind} steady state")
        raw, raw_rss = _run_child(["raw", server.url, str(subscribers), issue], values, timeout=3600)
    rate = result["sent"] / result["seconds"]
    raw_rate = raw["sent"] / raw["seconds"]
    figures = {
        "db": kind,
        "subscribers": subscribers,
        "send_seconds": round(result["seconds"], 2),
        "recipients_per_s": round(rate),
        "peak_rss_mb": round(rss, 1),
        "raw_recipients_per_s": round(raw_rate),
        "raw_peak_rss_mb": round(raw_rss, 1),
        "ratio": round(rate / raw_rate, 3),
    }
    print(
        f"[{kind}] sendgrid path: {rate:,.0f} recipients/s ({result['seconds']:.1f}s), "
        f"peak RSS {rss:.0f} MB; bare client: {raw_rate:,.0f} recipients/s; "
        f"ratio {rate / raw_rate:.2f} (target >= 0.50, RSS <= 150 MB)"
    )
    return figures


def check_exactly_once(tally: Counter[str] | None, subscribers: int, where: str) -> None:
    """Every bench run: every subscriber's address exactly once at the look-alike, none missing."""
    from tests.support.delivery_fixtures import address

    assert tally is not None
    twice = sum(1 for count in tally.values() if count > 1)
    missing = subscribers - sum(1 for i in range(subscribers) if tally.get(address(i)))
    extra = len(tally) - (subscribers - missing)
    if twice or missing or extra:
        raise AssertionError(f"{where}: {twice} addresses twice, {missing} missing, {extra} unexpected")


def bench_whole_process(
    kind: str, subscribers: int, delay: float, *, concurrency: int | None = None
) -> dict[str, Any] | None:
    """`newsletter send` as a subprocess (start-up included) against the look-alike answering
    each request after ``delay`` seconds, beside the bare client posting the same number of
    prebuilt requests one after another to the same look-alike."""
    with sendgrid_install(kind, "nl_bench_whole", delay=delay) as install:
        if install is None:
            return None
        values, server = install
        issue = _prepare(values, subscribers)
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")} | values
        if concurrency is not None:
            child_env["NEWSLETTER_SEND_CONCURRENCY"] = str(concurrency)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "newsletter", "send", issue, "--yes"],
            env=child_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"newsletter send failed ({done.returncode}):\n{done.stderr}")
        check_exactly_once(server.tally, subscribers, f"{kind} whole process, {delay * 1000:.0f} ms")
        raw, _rss = _run_child(["raw", server.url, str(subscribers), issue], values, timeout=3600)
    raw_seconds = float(raw["seconds"])
    lanes = f", SEND_CONCURRENCY={concurrency}" if concurrency is not None else ""
    print(
        f"[{kind}] whole process, {delay * 1000:.0f} ms per request{lanes}: "
        f"{subscribers:,} in {seconds:.2f}s; bare sequential client {raw_seconds:.2f}s; "
        f"ratio {raw_seconds / seconds:.2f}"
    )
    return {
        "db": kind,
        "delay_ms": round(delay * 1000),
        "send_concurrency": concurrency,
        "subscribers": subscribers,
        "seconds": round(seconds, 3),
        "raw_seconds": round(raw_seconds, 3),
        "recipients_per_s": round(subscribers / seconds),
        "raw_recipients_per_s": round(subscribers / raw_seconds),
        "ratio": round(raw_seconds / seconds, 3),
    }


def bench_smtp(messages: int, connections: int) -> dict[str, Any]:
    from tests.support.smtp_server import SmtpServer

    with tempfile.TemporaryDirectory(prefix="nl-bench-smtp-") as folder, SmtpServer() as server:
        tmp = Path(folder)
        values = _env(
            tmp,
            f"sqlite:///{tmp / 'data' / 'bench.db'}",
            NEWSLETTER_PROVIDER="smtp",
            NEWSLETTER_SMTP_URL=server.url,
            NEWSLETTER_SMTP_CONNECTIONS=str(connections),
        )
        issue = _prepare(values, messages)
        result, rss = _run_child(["send", issue], values, timeout=3600)
        assert result["sent"] == messages and len(server.messages) == messages, result
        opened = server.connections
        raw, _raw_rss = _run_child(["smtp-raw", server.url, str(messages), issue], values, timeout=3600)
    rate = messages / result["seconds"]
    raw_rate = raw["sent"] / raw["seconds"]
    print(
        f"[smtp] {connections} connection(s): {rate:,.0f} messages/s "
        f"({messages} messages, {opened} connections opened, peak RSS {rss:.0f} MB); "
        f"bare smtplib loop: {raw_rate:,.0f} messages/s; ratio {rate / raw_rate:.2f} (target >= 0.70)"
    )
    return {
        "connections": connections,
        "messages_per_s": round(rate),
        "peak_rss_mb": round(rss, 1),
        "raw_messages_per_s": round(raw_rate),
        "ratio": round(rate / raw_rate, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--smtp-messages", type=int, default=2000, help="0 skips the SMTP figures")
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.stage:
        name, *rest = args.stage
        if name == "send":
            print(json.dumps(stage_send(rest[0])))
        elif name == "raw":
            print(json.dumps(stage_raw(rest[0], int(rest[1]), rest[2])))
        elif name == "smtp-raw":
            print(json.dumps(stage_smtp_raw(rest[0], int(rest[1]), rest[2])))
        return

    results: dict[str, Any] = {"sendgrid": [], "smtp": []}
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    for kind in kinds:
        figures = bench_sendgrid(kind, args.subscribers)
        if figures:
            results["sendgrid"].append(figures)
    if args.smtp_messages:
        for connections in (1, 4):
            results["smtp"].append(bench_smtp(args.smtp_messages, connections))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
