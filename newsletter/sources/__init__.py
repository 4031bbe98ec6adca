"""Comparison sources: site pages (both layouts), JSON/YAML files, HTTP feeds, directories.

Every source returns ``models.Comparison``. ``read_locations`` reads a mix of
paths, directories and feed URLs; a source that cannot be read is reported
(``SourceReport.errors``) and never stops the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from newsletter.config import Settings
from newsletter.errors import SourceError
from newsletter.models import Comparison
from newsletter.sources.feed import fetch_feed, is_url
from newsletter.sources.page import parse_page
from newsletter.sources.structured import comparisons_from_data, parse_json, parse_yaml

__all__ = [
    "PAGE_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "SourceReport",
    "SourcedComparison",
    "comparisons_from_data",
    "fetch_feed",
    "is_url",
    "iter_source_files",
    "parse_file",
    "parse_json",
    "parse_page",
    "parse_text",
    "parse_yaml",
    "read_location",
    "read_locations",
]

PAGE_SUFFIXES = (".txt", ".md")
JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")
SUPPORTED_SUFFIXES = PAGE_SUFFIXES + JSON_SUFFIXES + YAML_SUFFIXES
MAX_SOURCE_BYTES = Settings.model_fields["max_source_bytes"].default


@dataclass(frozen=True)
class SourcedComparison:
    comparison: Comparison
    origin: str  # the file path or feed URL it came from


@dataclass
class SourceReport:
    items: list[SourcedComparison] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)


def parse_text(text: str, *, source: str, suffix: str = "") -> list[Comparison]:
    """Parse text by its file suffix, or by sniffing when the suffix says nothing."""
    kind = _kind(suffix.lower(), text)
    if kind == "json":
        return parse_json(text, source=source)
    if kind == "yaml":
        return parse_yaml(text, source=source)
    return [parse_page(text, source=source)]


def parse_file(path: Path, *, max_bytes: int = MAX_SOURCE_BYTES) -> list[Comparison]:
    """Every comparison in one file (a page gives one; JSON/YAML may hold several)."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            # One byte past the limit tells "too large" without reading a huge file.
            data = handle.read(max_bytes + 1)
    except IsADirectoryError:
        raise SourceError("is a directory (use read_locations for folders)", source=source) from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", source=source) from None
    if len(data) > max_bytes:
        raise SourceError(
            f"larger than {max_bytes:,} bytes (NEWSLETTER_MAX_SOURCE_BYTES): not read", source=source
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceError(f"not UTF-8 text (byte {exc.start})", source=source, line=line) from None
    return parse_text(text, source=source, suffix=path.suffix)


def iter_source_files(directory: Path) -> Iterator[Path]:
    """Supported files under ``directory``, recursively, sorted, skipping hidden names."""
    found = []
    for path in directory.rglob("*"):
        relative = path.relative_to(directory)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES:
            found.append(path)
    yield from sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def read_location(
    location: str, settings: Settings, *, transport: httpx.BaseTransport | None = None
) -> SourceReport:
    """One path, directory or feed URL."""
    report = SourceReport()
    if is_url(location):
        try:
            comparisons = fetch_feed(location, settings, transport=transport)
        except SourceError as error:
            report.errors.append(error)
        else:
            report.items.extend(SourcedComparison(c, location) for c in comparisons)
        return report
    path = Path(location).expanduser()
    if path.is_dir():
        files = list(iter_source_files(path))
        if not files:
            report.errors.append(SourceError("no comparison files in this directory", source=location))
    elif path.exists():
        files = [path]
    else:
        report.errors.append(SourceError("no such file, directory or URL", source=location))
        files = []
    for file in files:
        try:
            comparisons = parse_file(file, max_bytes=settings.max_source_bytes)
        except SourceError as error:
            report.errors.append(error)
        else:
            report.items.extend(SourcedComparison(c, str(file)) for c in comparisons)
    return report


def read_locations(
    locations: list[str], settings: Settings, *, transport: httpx.BaseTransport | None = None
) -> SourceReport:
    """Read every location; bad ones land in ``errors``, the rest in ``items`` (in order)."""
    report = SourceReport()
    for location in locations:
        part = read_location(location, settings, transport=transport)
        report.items.extend(part.items)
        report.errors.extend(part.errors)
    return report


def _kind(suffix: str, text: str) -> str:
    if suffix in JSON_SUFFIXES:
        return "json"
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix in PAGE_SUFFIXES:
        return "page"
    start = text.lstrip("\ufeff \t\r\n")[:1]
    if start in ("{", "["):
        return "json"
    if text.lstrip().startswith(("---", "title:", "comparisons:", "- title:")):
        return "yaml"
    return "page"
