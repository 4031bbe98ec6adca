"""Server-side SVG bar charts for the admin's stats page: no script, no style element.

pygal was considered and left out: its SVG carries a ``<style>`` element and loads its
tooltip script from elsewhere, which the admin's CSP (``style-src 'self'``, no remote
scripts) blocks, leaving black unlabelled bars. These charts use SVG presentation
attributes only (``fill=…``), which no CSP restricts, and every label is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#3b5bdb", "#2b8a3e", "#e67700", "#c92a2a", "#7048e8", "#0b7285")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int]
    color: str | None = None


def _nice_max(value: int) -> int:
    """The axis top: the data's maximum rounded up to 1, 2 or 5 × a power of ten."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    width: int = 640,
    height: int = 260,
) -> Markup:
    """Grouped vertical bars, one group per category, one bar per series, with a legend.

    Returns markup ready for an autoescaped template: the title, category names, series
    names and numbers are escaped here, so a subject with ``<`` or ``&`` is shown as text.
    """
    for one in series:
        if len(one.values) != len(categories):
            raise ValueError(
                f"series {one.name!r} has {len(one.values)} values for {len(categories)} categories"
            )
    left, right, top, bottom = 40, 10, 34, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max((v for one in series for v in one.values), default=0))
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    # Horizontal grid lines with their values: 0, half, top.
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot_h - fraction * plot_h
        label = top_value * fraction
        text = f"{label:g}" if label != int(label) else str(int(label))
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ea"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#5b6470">{text}</text>'
        )
    groups = max(1, len(categories))
    group_w = plot_w / groups
    bar_w = max(1.0, (group_w * 0.8) / max(1, len(series)))
    for index, category in enumerate(categories):
        x0 = left + index * group_w + group_w * 0.1
        for position, one in enumerate(series):
            value = one.values[index]
            bar_h = plot_h * value / top_value
            color = one.color or PALETTE[position % len(PALETTE)]
            parts.append(
                f'<rect x="{x0 + position * bar_w:.1f}" y="{top + plot_h - bar_h:.1f}" '
                f'width="{max(bar_w - 1, 1):.1f}" height="{bar_h:.1f}" fill="{escape(color)}">'
                f"<title>{escape(category)} — {escape(one.name)}: {value}</title></rect>"
            )
        parts.append(
            f'<text x="{left + index * group_w + group_w / 2:.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle" font-size="11" fill="#1b1f24">{escape(category)}</text>'
        )
    x = left
    for position, one in enumerate(series):
        color = one.color or PALETTE[position % len(PALETTE)]
        parts.append(
            f'<rect x="{x}" y="8" width="12" height="12" fill="{escape(color)}"/>'
            f'<text x="{x + 16}" y="18" font-size="12" fill="#1b1f24">{escape(one.name)}</text>'
        )
        x += 28 + 7 * len(one.name)
    parts.append("</svg>")
    # Every piece of text above went through escape(); the rest is our own fixed markup.
    return Markup("".join(parts))  # noqa: S704
