"""The catalog: comparisons and tools in the database.

* A tool is one row per ``models.tool_key(name)`` however many comparisons name it;
  a later import that describes it differently updates the row (never a new one).
* A comparison is identified by ``Comparison.stable_slug``. The same content (equal
  ``content_hash``) is "unchanged" and writes nothing; an edited page updates the
  row and its ``updated_at``.
* ``published_at`` comes from the source when it gives one, else it is the first
  import time, and re-imports keep it.

Each comparison is imported in its own transaction. Two processes importing at
once may both try to insert the same slug or tool key: the loser gets an
IntegrityError, rolls back and retries, and then finds the winner's row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.errors import NotFoundError
from newsletter.models import Comparison, ToolEntry, slugify, tool_key
from newsletter.sources import SourcedComparison, read_locations
from newsletter.tables import ComparisonRow, ComparisonToolRow, ToolRow

log = logging.getLogger(__name__)

ATTEMPTS = 5  # per comparison, against unique-key races and lock conflicts


@dataclass(frozen=True)
class ImportFailure:
    origin: str
    message: str
    line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.origin}:{self.line}" if self.line is not None else self.origin

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class ImportReport:
    new: list[str] = field(default_factory=list)  # slugs
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[ImportFailure] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "new": len(self.new),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "failed": len(self.failed),
        }

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class CatalogComparison:
    """A stored comparison, as listed and shown."""

    id: int
    slug: str
    title: str
    category: str | None
    source: str | None
    published_at: datetime
    created_at: datetime
    updated_at: datetime
    comparison: Comparison

    @property
    def tool_names(self) -> list[str]:
        return [tool.name for tool in self.comparison.tools]


# --- import -------------------------------------------------------------------------------


def import_comparisons(
    engine: Engine, items: list[SourcedComparison], *, now: datetime | None = None
) -> ImportReport:
    """Store each comparison (new / updated / unchanged); a failure never stops the rest."""
    now = _aware(now or datetime.now(UTC))
    report = ImportReport()
    for item in items:
        try:
            outcome = _import_one(engine, item, now)
        except SQLAlchemyError as exc:
            log.warning("cannot import %s from %s: %s", item.comparison.stable_slug, item.origin, exc)
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            report.failed.append(ImportFailure(item.origin, f"database error: {reason}"))
            continue
        getattr(report, outcome).append(item.comparison.stable_slug)
    return report


def import_locations(
    settings: Settings, engine: Engine, locations: list[str], *, now: datetime | None = None
) -> ImportReport:
    """Read paths / directories / feed URLs and import what could be read."""
    sources = read_locations(list(locations), settings)
    report = import_comparisons(engine, sources.items, now=now)
    report.failed[:0] = [ImportFailure(error.source, error.reason, error.line) for error in sources.errors]
    return report


def _import_one(engine: Engine, item: SourcedComparison, now: datetime) -> str:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with session_scope(engine) as session:
                return _upsert(session, item, now)
        except (IntegrityError, OperationalError) as exc:
            # Another process inserted the same slug/tool key (or held a lock): retry, then merge.
            if attempt == ATTEMPTS or (isinstance(exc, OperationalError) and not _is_conflict(exc)):
                raise
            log.info("import of %s raced another writer, retrying", item.comparison.stable_slug)
    raise AssertionError("unreachable")


def _is_conflict(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return any(word in text for word in ("locked", "deadlock", "could not serialize", "busy"))


def _upsert(session: Session, item: SourcedComparison, now: datetime) -> str:
    comparison = item.comparison
    slug = comparison.stable_slug
    digest = comparison.content_hash()
    row = session.scalars(select(ComparisonRow).where(ComparisonRow.slug == slug)).one_or_none()
    if row is not None and row.content_hash == digest and _same_publication(row, comparison):
        return "unchanged"

    tool_ids = [_upsert_tool(session, tool, comparison, now) for tool in comparison.tools]
    if row is None:
        published = _aware(comparison.published_at) if comparison.published_at else now
        row = ComparisonRow(
            slug=slug,
            created_at=now,
            published_at=published,
            content_hash=digest,
            title=comparison.title,
            data={},
        )
        session.add(row)
        outcome = "new"
    else:
        if comparison.published_at is not None:
            row.published_at = _aware(comparison.published_at)
        session.execute(delete(ComparisonToolRow).where(ComparisonToolRow.comparison_id == row.id))
        outcome = "updated"
    row.title = comparison.title
    row.category = comparison.category
    row.url = comparison.url
    row.source = item.origin[:1000]
    row.content_hash = digest
    row.data = _stored_data(comparison, row.published_at)
    row.updated_at = now
    session.flush()  # IntegrityError here on a concurrent insert of the same slug
    for position, tool_id in enumerate(tool_ids):
        session.add(ComparisonToolRow(comparison_id=row.id, position=position, tool_id=tool_id))
    session.flush()
    return outcome


def _same_publication(row: ComparisonRow, comparison: Comparison) -> bool:
    return comparison.published_at is None or _aware(comparison.published_at) == row.published_at


def _upsert_tool(session: Session, tool: ToolEntry, comparison: Comparison, now: datetime) -> int:
    key = tool_key(tool.name)
    values: dict[str, Any] = {
        "name": tool.name,
        "tagline": tool.tagline,
        "category": tool.category or comparison.category,
        "pricing": tool.pricing_detail or tool.pricing,
        "description": tool.description,
    }
    row = session.scalars(select(ToolRow).where(ToolRow.key == key)).one_or_none()
    if row is None:
        row = ToolRow(key=key, created_at=now, updated_at=now, **values)
        session.add(row)
        session.flush()  # IntegrityError here on a concurrent insert of the same tool
        return row.id
    changed = False
    for name, value in values.items():
        # A page that leaves a field out does not erase what another page said.
        if value is not None and getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if changed:
        row.updated_at = now
    return row.id


def _stored_data(comparison: Comparison, published_at: datetime) -> dict[str, Any]:
    data = comparison.model_dump(mode="json")
    data["slug"] = comparison.stable_slug
    data["published_at"] = _aware(published_at).isoformat()
    return data


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- reading -----------------------------------------------------------------------------


def list_comparisons(engine: Engine, *, limit: int | None = None) -> list[CatalogComparison]:
    """Stored comparisons, newest published first."""
    query = select(ComparisonRow).order_by(ComparisonRow.published_at.desc(), ComparisonRow.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with session_scope(engine) as session:
        return [_entry(row) for row in session.scalars(query)]


def get_comparison(engine: Engine, slug: str) -> CatalogComparison:
    """One stored comparison by slug; NotFoundError when there is none."""
    with session_scope(engine) as session:
        row = session.scalars(select(ComparisonRow).where(ComparisonRow.slug == slug)).one_or_none()
        if row is None and slugify(slug) != slug:
            row = session.scalars(
                select(ComparisonRow).where(ComparisonRow.slug == slugify(slug))
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"no comparison {slug!r} in the catalog")
        return _entry(row)


@dataclass(frozen=True)
class StoredComparison:
    """A comparison as stored, its data unchecked: the site's page shows what it can of it."""

    slug: str
    title: str
    category: str | None
    url: str | None
    published_at: datetime
    data: dict[str, Any]


def find_stored_comparison(engine: Engine, slug: str) -> StoredComparison | None:
    """The comparison stored under exactly this slug, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(ComparisonRow).where(ComparisonRow.slug == slug)).first()
    if row is None:
        return None
    return StoredComparison(
        slug=row.slug,
        title=row.title,
        category=row.category,
        url=row.url,
        published_at=row.published_at,
        data=dict(row.data or {}),
    )


def list_tools(engine: Engine) -> list[ToolRow]:
    """Every tool row, by name."""
    with session_scope(engine) as session:
        return list(session.scalars(select(ToolRow).order_by(ToolRow.key)))


def _entry(row: ComparisonRow) -> CatalogComparison:
    return CatalogComparison(
        id=row.id,
        slug=row.slug,
        title=row.title,
        category=row.category,
        source=row.source,
        published_at=row.published_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        comparison=Comparison.model_validate(row.data),
    )
