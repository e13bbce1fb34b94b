"""Shared schema pieces: strict models and cited sources."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Base for every spec: unknown fields are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Source(Strict):
    """Where a number comes from: a title and a URL, optionally how it was read."""

    id: str | None = None
    title: str = Field(min_length=3)
    url: str = Field(min_length=8)
    read_via: str | None = None
    location: str | None = None  # table / figure / line inside the source
