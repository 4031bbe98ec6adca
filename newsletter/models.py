"""Pydantic models: the shapes data takes between the pipeline's stages.

``Comparison`` is what every source returns and what the catalog stores; its
JSON form is the documented schema for structured input files
(``newsletter comparisons schema`` prints it).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Verdict = Literal["ship", "skip"]


class Review(BaseModel):
    """One panelist's take on one tool."""

    model_config = ConfigDict(extra="forbid")

    persona: str | None = Field(default=None, description="Builder, Skeptic, ... or null")
    score: int | None = Field(default=None, ge=0, le=100)
    verdict: Verdict | None = None
    quote: str = Field(min_length=1)


class Abstention(BaseModel):
    """A panelist who gave no take on this tool (the page's "No panel take").

    Kept apart from ``reviews`` so that every review still has a quote; ``persona`` is
    null when the page does not name reviewers (the compact layout)."""

    model_config = ConfigDict(extra="forbid")

    persona: str | None = None


class ToolEntry(BaseModel):
    """One side of a comparison: a tool as this page describes it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    tagline: str | None = None
    category: str | None = None
    ship_pct: int | None = Field(default=None, ge=0, le=100)
    community: str | None = Field(default=None, description="null when there are no votes")
    pricing: str | None = Field(default=None, description="entry price label, e.g. Free, Paid")
    pricing_detail: str | None = None
    description: str | None = None
    best_for: str | None = None
    panel_verdict: Verdict | None = None
    panel_ship: int | None = Field(default=None, ge=0)
    panel_skip: int | None = Field(default=None, ge=0)
    reviews: list[Review] = Field(default_factory=list)
    abstentions: list[Abstention] = Field(
        default_factory=list, description="panelists who gave no take on this tool, in page order"
    )

    @property
    def key(self) -> str:
        return tool_key(self.name)


class Comparison(BaseModel):
    """A side-by-side comparison of two tools, as published on the site."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    category: str | None = None
    slug: str | None = Field(default=None, description="stable id; derived from the title if absent")
    url: str | None = None
    published_at: datetime | None = None
    tools: list[ToolEntry] = Field(min_length=2, max_length=2)

    @field_validator("url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        # The URL becomes a link in every email: javascript:, data: and friends never do.
        if value is not None and not re.match(r"(?i)^https?://[^\s/?#]+", value.strip()):
            raise ValueError("must be an http:// or https:// URL")
        return value.strip() if value is not None else None

    @field_validator("slug")
    @classmethod
    def _clean_slug(cls, value: str | None) -> str | None:
        return slugify(value) if value else None

    @property
    def stable_slug(self) -> str:
        return self.slug or slugify(self.title)

    def content_hash(self) -> str:
        """Hash of what the page says (not when we saw it): equal hash, unchanged page."""
        data = self.model_dump(mode="json", exclude={"published_at"})
        for tool in data["tools"]:
            # Added later: leaving the empty list out keeps the hashes stored before it.
            if not tool["abstentions"]:
                del tool["abstentions"]
        blob = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()


def slugify(text: str) -> str:
    normal = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", normal.lower()).strip("-")
    return slug[:120] or hashlib.sha256(text.encode()).hexdigest()[:16]


def tool_key(name: str) -> str:
    """A tool's identity: case, spacing and punctuation do not make a new tool."""
    normal = unicodedata.normalize("NFKC", name).casefold()
    return re.sub(r"[\W_]+", " ", normal).strip()
