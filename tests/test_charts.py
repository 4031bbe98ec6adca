"""The stats page's SVG bar charts: bar heights follow the data, labels are escaped, no script or style."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from newsletter.charts import Series, _nice_max, bar_chart

SVG = "{http://www.w3.org/2000/svg}"


def bars(markup: str) -> list[ET.Element]:
    root = ET.fromstring(str(markup))  # noqa: S314 - our own chart, not untrusted input
    # Legend swatches are 12×12 at y=8; the data bars are the other rects.
    return [rect for rect in root.iter(f"{SVG}rect") if rect.get("y") != "8"]


def test_bar_heights_are_proportional_and_the_axis_is_rounded_up() -> None:
    chart = bar_chart("Opens", ["2026-W47", "2026-W48"], [Series("opened", [5, 10])], height=244)
    heights = [float(rect.get("height", "0")) for rect in bars(chart)]
    assert heights[1] == pytest.approx(2 * heights[0])
    assert heights[1] == pytest.approx(244 - 34 - 44)  # 10 is the axis top: the full plot height
    assert [_nice_max(v) for v in (0, 1, 3, 7, 10, 11, 4_900, 120_001)] == [
        1,
        1,
        5,
        10,
        10,
        20,
        5_000,
        200_000,
    ]


def test_labels_are_escaped_and_there_is_no_script_or_style() -> None:
    hostile = "<script>alert('x')</script> & Zoë’s “pick” 漢字 ☕"
    chart = bar_chart(hostile, [hostile], [Series(hostile, [3])])
    text = str(chart)
    assert "<script" not in text and "style" not in text
    root = ET.fromstring(text)  # noqa: S314 - well-formed XML: every label escaped
    assert root.get("aria-label") == hostile
    titles = [element.text for element in root.iter(f"{SVG}title")]
    assert titles[0] == hostile and f"{hostile} — {hostile}: 3" in titles
    assert hostile in [element.text for element in root.iter(f"{SVG}text")]


def test_empty_data_draws_an_empty_axis_and_mismatched_series_are_refused() -> None:
    chart = bar_chart("Nothing yet", [], [Series("sent", [])])
    assert bars(chart) == [] and re.search(r"<svg[^>]+viewBox", str(chart))
    with pytest.raises(ValueError, match="has 1 values for 2 categories"):
        bar_chart("x", ["a", "b"], [Series("sent", [1])])
