"""Render bench: ms per issue for each stage, µs per recipient for personalisation.

    .venv/bin/python bench/render.py [--runs 50] [--recipients 20000] [--json]

A 5-comparison issue (the seeds plus two variants) is rendered ``--runs`` times;
the median of each stage is printed (Jinja -> MJML, MJML -> HTML, CSS inlining,
text part, total). Then the rendered issue is personalised for ``--recipients``
recipients (HTML + text by ``Personalizer.fill``, and the ``substitutions`` map a
server-side provider gets). Targets: total <= 50 ms, substitution <= 20 µs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_TOTAL_MS = 50.0
TARGET_SUBSTITUTION_US = 20.0
TARGET_5_KB = 60.0
TARGET_10_KB = 100.0


def measure(runs: int, recipients: int) -> dict[str, float]:
    """Median ms per stage of a 5-comparison issue, the bare ``mjml2html`` on the same MJML,
    and µs per recipient of personalisation."""
    # Settings from defaults only (no .env, no developer environment).
    here = os.getcwd()
    os.chdir(tempfile.mkdtemp(prefix="nl-bench-"))
    try:
        return _measure(runs, recipients)
    finally:
        os.chdir(here)


def ten_comparisons() -> list[Any]:
    """The five sample comparisons and five renamed copies: a 10-comparison issue."""
    from newsletter.models import Comparison
    from tests.support.sample_comparisons import five_comparisons

    items = five_comparisons()
    for n, base in enumerate(five_comparisons()):
        data = base.model_dump()
        data["title"], data["slug"] = f"{base.title} (week {n})", f"{base.stable_slug}-week-{n}"
        items.append(Comparison.model_validate(data))
    return items


def measure_issue(comparisons: list[Any], runs: int) -> dict[str, float]:
    """Median ms of render_within_budget (the build's render, budget included) and its size."""
    from newsletter.config import load_settings
    from newsletter.issues.render import render_within_budget
    from tests.support.sample_comparisons import issue_content_for

    settings = load_settings()
    content = issue_content_for(settings, comparisons)
    fitted = render_within_budget(settings, content)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fitted = render_within_budget(settings, content)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "ms": statistics.median(times),
        "kb": fitted.html_bytes / 1024,
        "compact": len(fitted.compact),
        "listed": len(fitted.listed),
    }


def _measure(runs: int, recipients: int) -> dict[str, float]:
    import mjml

    from newsletter.config import load_settings
    from newsletter.issues.placeholders import substitutions
    from newsletter.issues.render import Renderer
    from tests.support.sample_comparisons import five_comparisons, issue_content_for

    settings = load_settings()
    content = issue_content_for(settings, five_comparisons())
    renderer = Renderer()

    started = time.perf_counter()
    rendered = renderer.render(content, settings)
    cold_ms = (time.perf_counter() - started) * 1000

    stages: dict[str, list[float]] = {"jinja": [], "mjml": [], "inline": [], "text": [], "total": []}
    for _ in range(runs):
        rendered = renderer.render(content, settings)
        for stage, seconds in rendered.timings.items():
            stages[stage].append(seconds * 1000)
    medians = {stage: statistics.median(values) for stage, values in stages.items()}

    # The raw limit: the MJML compiler alone, called plainly on the very same source.
    source = renderer.render_mjml(content, settings)
    bare = []
    for _ in range(runs):
        start = time.perf_counter()
        mjml.mjml2html(source)
        bare.append((time.perf_counter() - start) * 1000)

    html_part, text_part = rendered.html_personalizer, rendered.text_personalizer
    values_list = [
        {"unsubscribe_url": f"{settings.base_url}/unsubscribe/token-{n:08d}", "first_name": f"Reader{n}"}
        for n in range(recipients)
    ]
    fill_runs = []
    for values in values_list:
        start = time.perf_counter()
        html_part.fill(values)
        text_part.fill(values)
        fill_runs.append(time.perf_counter() - start)
    start = time.perf_counter()
    for values in values_list:
        substitutions(values)
    subs_us = (time.perf_counter() - start) / len(values_list) * 1e6
    from tests.support.sample_comparisons import five_comparisons as five

    sized = {n: measure_issue(items, runs) for n, items in ((5, five()), (10, ten_comparisons()))}
    return {
        **{f"issue{n}_{key}": value for n, figures in sized.items() for key, value in figures.items()},
        "comparisons": len(content.comparisons),
        "html_kb": len(rendered.html.encode()) / 1024,
        "cold_ms": cold_ms,
        **{f"{stage}_ms": value for stage, value in medians.items()},
        "bare_mjml_ms": statistics.median(bare),
        "substitution_us": statistics.median(fill_runs) * 1e6,
        "substitution_p99_us": sorted(fill_runs)[int(len(fill_runs) * 0.99)] * 1e6,
        "substitutions_map_us": subs_us,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line too")
    args = parser.parse_args()
    figures = measure(args.runs, args.recipients)
    total, fill_us = figures["total_ms"], figures["substitution_us"]
    print(f"render bench: {figures['comparisons']:.0f}-comparison issue, median of {args.runs} runs")
    print(f"  email.html       {figures['html_kb']:8.1f} KB   (Gmail clips at 102 KB)")
    print(f"  first render     {figures['cold_ms']:8.2f} ms   (cold: imports, template compile, CSS parse)")
    print(f"  jinja -> mjml    {figures['jinja_ms']:8.2f} ms")
    bare = figures["bare_mjml_ms"]
    print(f"  mjml -> html     {figures['mjml_ms']:8.2f} ms   (bare mjml2html: {bare:.2f} ms)")
    print(f"  css inlining     {figures['inline_ms']:8.2f} ms")
    print(f"  text part        {figures['text_ms']:8.2f} ms")
    ok_total = "ok" if total <= TARGET_TOTAL_MS else "OVER TARGET"
    print(f"  total            {total:8.2f} ms   (target <= {TARGET_TOTAL_MS:.0f} ms: {ok_total})")
    ok_fill = "ok" if fill_us <= TARGET_SUBSTITUTION_US else "OVER TARGET"
    print(
        f"  substitution     {fill_us:8.2f} µs   per recipient, html+text, median of {args.recipients}"
        f" (p99 {figures['substitution_p99_us']:.2f} µs;"
        f" target <= {TARGET_SUBSTITUTION_US:.0f} µs: {ok_fill})"
    )
    print(f"  substitutions()  {figures['substitutions_map_us']:8.2f} µs   per recipient (server-side map)")
    ok_size = True
    for n, kb_target in ((5, TARGET_5_KB), (10, TARGET_10_KB)):
        ms, kb = figures[f"issue{n}_ms"], figures[f"issue{n}_kb"]
        cut = f"{figures[f'issue{n}_compact']:.0f} compact, {figures[f'issue{n}_listed']:.0f} listed"
        ok = ms <= TARGET_TOTAL_MS and kb <= kb_target
        ok_size &= ok
        print(
            f"  {n:2d} comparisons   {ms:8.2f} ms   {kb:6.1f} KB ({cut}; targets <= {TARGET_TOTAL_MS:.0f} ms,"
            f" <= {kb_target:.0f} KB: {'ok' if ok else 'OVER TARGET'})"
        )
    if args.json:
        print(json.dumps({key: round(value, 3) for key, value in figures.items()}))
    return 0 if total <= TARGET_TOTAL_MS and fill_us <= TARGET_SUBSTITUTION_US and ok_size else 1


if __name__ == "__main__":
    raise SystemExit(main())
