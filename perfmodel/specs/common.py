"""Shared schema pieces: strict models, cited sources, and validation with readable errors.

Pure: no file is read here (files come in through ``specs.registry``, the one door to files).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import SpecError

M = TypeVar("M", bound=BaseModel)


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


def describe_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``field.path: message`` (pydantic's text, minus its boilerplate)."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        loc = ".".join(x for x in [prefix, loc] if x)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        elif e["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be one of:")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


def validate(model: type[M], data: Any, what: str = "") -> M:
    """``model.model_validate(data)`` raising SpecError with a readable message."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SpecError(
            f"invalid {what or model.__name__}: {describe_validation_error(err)}"
        ) from None
