"""Structured comparison files: JSON and YAML in the schema of ``models.Comparison``.

A file (or a feed body) holds one comparison object, a list of them, or an
object ``{"comparisons": [...]}``. ``newsletter comparisons schema`` prints the
JSON Schema. Problems become SourceError with the file and, where it can be
found, the line of the offending value.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import ValidationError

from newsletter.errors import SourceError
from newsletter.models import Comparison

MAX_DEPTH_MESSAGE = "nested too deeply"


def parse_json(text: str, *, source: str) -> list[Comparison]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"invalid JSON: {exc.msg}", source=source, line=exc.lineno) from None
    except RecursionError:
        raise SourceError(f"invalid JSON: {MAX_DEPTH_MESSAGE}", source=source) from None
    return comparisons_from_data(data, text=text, source=source)


def parse_yaml(text: str, *, source: str) -> list[Comparison]:
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise SourceError(f"invalid YAML: {exc.problem or exc}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise SourceError(f"invalid YAML: {exc}", source=source) from None
    except RecursionError:
        raise SourceError(f"invalid YAML: {MAX_DEPTH_MESSAGE}", source=source) from None
    return comparisons_from_data(data, text=text, source=source)


def comparisons_from_data(data: Any, *, text: str | None = None, source: str) -> list[Comparison]:
    """Validate decoded JSON/YAML data: one object, a list, or {"comparisons": [...]}."""
    prefix: list[str | int] = []
    if isinstance(data, dict) and "comparisons" in data and "title" not in data:
        items, prefix = data["comparisons"], ["comparisons"]
        if not isinstance(items, list):
            raise SourceError(
                "'comparisons' must be a list of comparison objects",
                source=source,
                line=_line_of(text, ["comparisons"]),
            )
        extra = sorted(str(key) for key in data if key != "comparisons")
        if extra:
            raise SourceError(f"unexpected top-level keys: {', '.join(extra)}", source=source, line=1)
    elif isinstance(data, list):
        items = data
    elif isinstance(data, dict):
        return [_validate(data, text=text, source=source, path=[])]
    else:
        raise SourceError(
            'expected a comparison object, a list of them, or {"comparisons": [...]}',
            source=source,
            line=1,
        )
    if not items:
        raise SourceError("no comparisons in this file", source=source, line=1)
    return [
        _validate(item, text=text, source=source, path=[*prefix, index]) for index, item in enumerate(items)
    ]


def _validate(item: Any, *, text: str | None, source: str, path: list[str | int]) -> Comparison:
    try:
        return Comparison.model_validate(item)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [*path, *error["loc"]]
        where = ".".join(str(part) for part in loc)
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        message = f"{where}: {error['msg']}{more}" if where else f"{error['msg']}{more}"
        raise SourceError(message, source=source, line=_line_of(text, loc)) from None
    except RecursionError:
        raise SourceError(MAX_DEPTH_MESSAGE, source=source) from None


def _line_of(text: str | None, loc: list[str | int]) -> int | None:
    """Best effort: the 1-based line of the value at ``loc`` (JSON is read as YAML here)."""
    if text is None:
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except Exception:  # best effort only: the data itself was already decoded
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    child = value
                    line = key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
