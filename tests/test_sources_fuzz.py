"""Property tests: mutated pages and JSON either parse into a valid model or raise SourceError.

Nothing else may escape (no IndexError, ValueError, KeyError, pydantic ValidationError...).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.errors import SourceError
from newsletter.models import Comparison
from newsletter.sources import parse_page, parse_text
from tests.conftest import SEEDS

SEED_TEXTS = [path.read_text(encoding="utf-8") for path in sorted(SEEDS.glob("*.txt"))]
EXAMPLE_JSON = (SEEDS.parent / "structured" / "example.json").read_text(encoding="utf-8")
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Characters that matter to the parser (markers, quotes, digits, separators) plus anything.
_TRICKY = st.sampled_from(
    [
        "\n",
        "\r",
        "“",
        "”",
        '"',
        "%",
        "/100",
        " · ",
        "—",
        "Panel ship",
        "No panel take",
        "Decision",
        "Community",
        "Entry",
        "Reviewer scorecard",
        "ship",
        "skip",
        " vs ",
        "\u00a0",
        "\u200b",
        "\ufeff",
        "\u2028",
        "\x00",
        "999",
        "0",
        "A",
    ]
)
_UNICODE = st.text(min_size=1, max_size=12) | _TRICKY


@st.composite
def mutated_page(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(SEED_TEXTS)).split("\n")
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        if not lines:
            lines = [""]
        op = draw(st.sampled_from(["drop", "duplicate", "swap", "shuffle", "truncate", "insert", "edit"]))
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        if op == "drop":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "shuffle":
            j = draw(st.integers(min_value=i, max_value=min(len(lines), i + 8)))
            lines[i:j] = draw(st.permutations(lines[i:j]))
        elif op == "truncate":
            lines = lines[:i]
            if lines and draw(st.booleans()):
                lines[-1] = lines[-1][: draw(st.integers(min_value=0, max_value=len(lines[-1])))]
        elif op == "insert":
            lines.insert(i, draw(_UNICODE))
        else:
            position = draw(st.integers(min_value=0, max_value=len(lines[i])))
            lines[i] = lines[i][:position] + draw(_UNICODE) + lines[i][position:]
    return "\n".join(lines)


def _check_page(text: str) -> None:
    try:
        comparison = parse_page(text, source="fuzz.txt")
    except SourceError as error:
        assert error.source == "fuzz.txt"
        assert error.line is None or error.line >= 1
        assert str(error).startswith("fuzz.txt")
        return
    assert isinstance(comparison, Comparison)
    Comparison.model_validate(comparison.model_dump())  # still valid after a round trip
    assert len(comparison.tools) == 2
    for tool in comparison.tools:
        assert tool.ship_pct is None or 0 <= tool.ship_pct <= 100


@FUZZ
@given(mutated_page())
def test_mutated_pages_parse_or_raise_source_error(text: str) -> None:
    _check_page(text)


@FUZZ
@given(st.sampled_from(SEED_TEXTS), st.integers(min_value=0, max_value=9000))
def test_truncated_pages(text: str, cut: int) -> None:
    _check_page(text[:cut])


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    _check_page(text)


def _check_json(text: str) -> None:
    try:
        comparisons = parse_text(text, source="fuzz.json", suffix=".json")
    except SourceError as error:
        assert error.source == "fuzz.json"
        assert error.line is None or error.line >= 1
        return
    assert comparisons and all(isinstance(c, Comparison) for c in comparisons)


@st.composite
def mutated_json(draw: st.DrawFn) -> str:
    text = EXAMPLE_JSON
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        i = draw(st.integers(min_value=0, max_value=len(text)))
        op = draw(st.sampled_from(["delete", "insert", "truncate"]))
        if op == "delete":
            text = text[:i] + text[i + draw(st.integers(min_value=1, max_value=20)) :]
        elif op == "insert":
            text = (
                text[:i]
                + draw(st.text(max_size=5) | st.sampled_from(['"', "{", "]", ",", "null", "-1", "1e400"]))
                + text[i:]
            )
        else:
            text = text[:i]
    return text


_JSON_LEAF = st.none() | st.booleans() | st.integers(-5, 200) | st.text(max_size=8)
_JSON_ANY = st.recursive(
    _JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["title", "tools", "name", "ship_pct", "reviews", "quote", "score", "comparisons", "x"]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@FUZZ
@given(mutated_json())
def test_mutated_json(text: str) -> None:
    _check_json(text)


@FUZZ
@given(_JSON_ANY)
def test_json_of_any_shape(value: object) -> None:
    _check_json(json.dumps(value))


def test_deeply_nested_json_is_a_source_error() -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(SourceError):
        parse_text(text, source="deep.json", suffix=".json")
