"""One benchmark suite: every stage's figure beside the raw limit measured in the same run.

    make bench          # .venv/bin/python bench/run.py          (full sizes, under 20 minutes)
    make bench-quick    # .venv/bin/python bench/run.py --quick  (small sizes, under 3 minutes)
    .venv/bin/python bench/run.py --only send smtp --subscribers 200000

Prints one table (stage, the project's figure, the baseline, their ratio, peak RSS,
target) and writes bench/results.json. Baselines:

* render: bare ``mjml2html`` on the very same MJML (the compiler alone);
* sendgrid: the bare ``sendgrid`` client posting prebuilt 1,000-recipient requests
  of the same issue to the same local SendGrid look-alike;
* smtp: a bare ``smtplib`` loop sending prebuilt messages of the same issue over
  one connection to the same aiosmtpd;
* subscribe and webhooks: the same uvicorn server's ``/healthz`` (requests/s);
* CSV import: ``csv.reader`` alone reading the same file (rows/s).

Sends run in a child process each, and the peak RSS is that process's own (``VmHWM``;
``ru_maxrss`` would include the parent's). Only 127.0.0.1 is used; PostgreSQL stages get a
throwaway database at 127.0.0.1:5432 and are skipped (said so) when none answers.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import Figure, pg_throwaway_database  # noqa: E402

STAGES = ("render", "send", "smtp", "subscribe", "import", "webhooks")


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str | None]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
    else:
        with pg_throwaway_database("nl_bench") as url:
            yield url


def stage_render(quick: bool) -> list[Figure]:
    from bench import render

    figures = render.measure(runs=20 if quick else 100, recipients=5_000 if quick else 50_000)
    return [
        Figure(
            "render 5-comparison issue",
            "ms",
            figures["total_ms"],
            baseline=figures["bare_mjml_ms"],
            baseline_name="bare mjml2html",
            higher_is_better=False,
            target="<= 50 ms",
            notes=f"email.html {figures['html_kb']:.1f} KB; inlining {figures['inline_ms']:.1f} ms",
        ),
        Figure(
            "personalise one recipient",
            "µs",
            figures["substitution_us"],
            higher_is_better=False,
            target="<= 20 µs",
            notes=f"html+text; p99 {figures['substitution_p99_us']:.1f} µs",
        ),
    ]


def stage_send(quick: bool, sizes: list[int] | None) -> list[Figure]:
    from bench import send

    counts = sizes or ([20_000] if quick else [100_000, 1_000_000])
    result = []
    for kind in ("sqlite", "postgres"):
        for count in counts:
            figures = send.bench_sendgrid(kind, count)
            if figures is None:
                result.append(
                    Figure(f"sendgrid {kind} {count:,}", "recipients/s", 0, notes="skipped: no server")
                )
                continue
            result.append(
                Figure(
                    f"sendgrid {kind} {count:,}",
                    "recipients/s",
                    figures["recipients_per_s"],
                    baseline=figures["raw_recipients_per_s"],
                    baseline_name="bare sendgrid client",
                    peak_rss_mb=figures["peak_rss_mb"],
                    target=f">= {0.6 if kind == 'sqlite' else 0.5:.2f} of raw, <= 100 MB",
                    notes="steady state (in-process); exactly once checked",
                )
            )
    result += stage_whole_process()
    return result


def stage_whole_process() -> list[Figure]:
    """`newsletter send` as a subprocess, start-up included, 20,000 recipients, SQLite."""
    from bench import send

    result = []
    cases = (
        (0.150, None, ">= 2.5x the bare sequential client"),
        (0.150, 8, "the knob: twice the default lanes"),
        (0.0, None, ">= 0.50 of raw"),
    )
    for delay, concurrency, target in cases:
        figures = send.bench_whole_process("sqlite", 20_000, delay, concurrency=concurrency)
        if figures is None:
            continue
        lanes = f", {concurrency} lanes" if concurrency else ""
        result.append(
            Figure(
                f"send process {delay * 1000:.0f} ms/request{lanes}",
                "recipients/s",
                figures["recipients_per_s"],
                baseline=figures["raw_recipients_per_s"],
                baseline_name="bare sendgrid client, sequential",
                target=target,
                notes=f"20,000 recipients in {figures['seconds']:.2f}s vs {figures['raw_seconds']:.2f}s; "
                "start-up included; exactly once checked",
            )
        )
    return result


def stage_smtp(quick: bool) -> list[Figure]:
    from bench import send

    messages = 1_000 if quick else 5_000
    result = []
    for connections in (1, 4):
        figures = send.bench_smtp(messages, connections)
        result.append(
            Figure(
                f"smtp {connections} connection(s)",
                "messages/s",
                figures["messages_per_s"],
                baseline=figures["raw_messages_per_s"],
                baseline_name="bare smtplib loop",
                peak_rss_mb=figures["peak_rss_mb"],
                target=">= 0.70 of raw",
                notes=f"{messages:,} messages into aiosmtpd",
            )
        )
    return result


def per_database(stage: str, unit: str, measure: Callable[[str], Figure]) -> list[Figure]:
    """``measure(database_url)`` on a fresh SQLite file, then on a throwaway PostgreSQL database."""
    result = []
    for kind in ("sqlite", "postgres"):
        with tempfile.TemporaryDirectory(prefix="nl-bench-") as folder, database(kind, Path(folder)) as url:
            if url is None:
                note = "skipped: no PostgreSQL at 127.0.0.1:5432"
                result.append(Figure(f"{stage} {kind}", unit, 0, notes=note))
                continue
            figure = measure(url)
        figure.stage = f"{stage} {kind}"
        result.append(figure)
    return result


def stage_subscribe(quick: bool) -> list[Figure]:
    from bench import subscribe

    requests = 600 if quick else 3_000

    def measure(url: str) -> Figure:
        figures = subscribe.bench_subscribes(url, requests, 16, 1, False)
        return Figure(
            "",
            "requests/s",
            figures["rate"],
            baseline=figures["healthz_rate"],
            baseline_name="same server's /healthz",
            target=">= 300 req/s",
            notes=(
                f"until the last mail is written (answers {figures['answered_rate']:,.0f}/s); "
                + (
                    f"server CPU {figures['server_cpu_ms']:.2f} ms each; "
                    if figures["server_cpu_ms"] is not None
                    else ""
                )
                + f"{requests:,} requests, 16 connections, statuses {figures['statuses']}"
            ),
        )

    return per_database("POST /subscribe", "requests/s", measure)


def stage_import(quick: bool) -> list[Figure]:
    from bench import subscribe

    rows = 20_000 if quick else 100_000

    def measure(url: str) -> Figure:
        figures = subscribe.bench_import(url, rows)
        return Figure(
            "",
            "rows/s",
            figures["rate"],
            baseline=_csv_read_rate(rows),
            baseline_name="csv.reader alone",
            target=">= 20,000 rows/s",
            notes=f"{rows:,} rows ({figures['errors']} bad, {figures['duplicates']} duplicates)",
        )

    return per_database("CSV import", "rows/s", measure)


def _csv_read_rate(rows: int) -> float:
    from bench import subscribe

    with tempfile.TemporaryDirectory(prefix="nl-bench-") as folder:
        path = Path(folder) / "rows.csv"
        subscribe.write_csv(path, rows)
        started = time.perf_counter()
        with open(path, encoding="utf-8", newline="") as handle:
            count = sum(1 for _ in csv.reader(handle))
        return count / (time.perf_counter() - started)


def stage_webhooks(quick: bool) -> list[Figure]:
    from bench import subscribe

    events = 10_000 if quick else 100_000

    def measure(url: str) -> Figure:
        figures = subscribe.bench_webhooks(url, events)
        return Figure(
            "",
            "events/s",
            figures["rate"],
            notes=f"{events:,} signed events, 1,000 per request, statuses {figures['statuses']}",
        )

    return per_database("webhook events", "events/s", measure)


def print_table(figures: list[Figure]) -> None:
    columns = f"{'stage':<30} {'project':>14} {'baseline':>14} {'ratio':>6} {'RSS MB':>7}"
    header = f"{columns}  target / baseline / notes"
    print(header)
    print("-" * len(header))
    for figure in figures:
        baseline = f"{figure.baseline:,.1f}" if figure.baseline else "—"
        ratio = f"{figure.ratio:.2f}" if figure.ratio else "—"
        rss = f"{figure.peak_rss_mb:.0f}" if figure.peak_rss_mb else "—"
        project = f"{figure.project:,.1f} {figure.unit}"
        detail = "; ".join(part for part in (figure.target, figure.baseline_name, figure.notes) if part)
        print(f"{figure.stage:<30} {project:>14} {baseline:>14} {ratio:>6} {rss:>7}  {detail}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: under 3 minutes")
    parser.add_argument("--only", nargs="+", choices=STAGES, help="run only these stages")
    parser.add_argument("--subscribers", type=int, nargs="+", help="sendgrid sizes (default 100k and 1M)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()

    runners: dict[str, Callable[[], list[Figure]]] = {
        "render": lambda: stage_render(args.quick),
        "send": lambda: stage_send(args.quick, args.subscribers),
        "smtp": lambda: stage_smtp(args.quick),
        "subscribe": lambda: stage_subscribe(args.quick),
        "import": lambda: stage_import(args.quick),
        "webhooks": lambda: stage_webhooks(args.quick),
    }
    figures: list[Figure] = []
    started = time.monotonic()
    for name in args.only or STAGES:
        began = time.monotonic()
        print(f"== {name}", flush=True)
        figures += runners[name]()
        print(f"== {name}: {time.monotonic() - began:.0f}s", flush=True)
    print()
    print_table(figures)
    print(f"\n{len(figures)} figures in {time.monotonic() - started:.0f}s ({platform.python_version()})")
    results: dict[str, Any] = {
        "quick": args.quick,
        "seconds": round(time.monotonic() - started, 1),
        "python": platform.python_version(),
        "figures": [figure.as_json() for figure in figures],
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
