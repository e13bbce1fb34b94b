"""Shared schema pieces: strict models, cited sources, and validation with readable errors.

Pure: no file is read here (files come in through ``specs.registry``, the one door to files).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import SpecError, shorten

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base for every spec: unknown fields are errors (a typo must not be silently ignored),
    and no float is NaN or infinite."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False, defer_build=True)


class Source(Strict):
    """Where a number comes from: a title and a URL, optionally how it was read."""

    id: str | None = None
    title: str = Field(min_length=3)
    url: str = Field(min_length=8)
    read_via: str | None = None
    location: str | None = None  # table / figure / line inside the source


#: Problems listed in one message (unknown fields first: a typo also makes a field
#: "missing"); the rest are counted ("(and 12 more)").
MAX_PROBLEMS = 5


def describe_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``field.path: message`` (pydantic's text, minus its boilerplate);
    at most MAX_PROBLEMS of them, and each key of the path shortened (a key comes from the
    user's file and may be of any length)."""
    lines = []
    errors = sorted(err.errors(include_input=False, include_url=False),
                    key=lambda e: e["type"] != "extra_forbidden")
    for e in errors[:MAX_PROBLEMS]:
        loc = ".".join(shorten(p) for p in e["loc"] if not str(p).startswith("function-"))
        loc = ".".join(x for x in [prefix, loc] if x)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling)"
        elif e["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be one of:")
        elif e["type"] in _BOUNDS:  # ge/gt/le/lt: upper bounds are documented in specs/types.py
            op, key = _BOUNDS[e["type"]]
            msg = f"must be {op} {(e.get('ctx') or {}).get(key)}"
        elif e["type"] == "finite_number":
            msg = "must be a finite number (not NaN or infinity)"
        lines.append(f"{loc}: {msg}" if loc else msg)
    if len(errors) > MAX_PROBLEMS:
        lines[-1] += f" (and {len(errors) - MAX_PROBLEMS} more)"
    return "; ".join(lines)


_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
           "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}


def validate(model: type[M], data: Any, what: str = "") -> M:
    """``model.model_validate(data)`` raising SpecError with a readable message."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SpecError(
            f"invalid {what or model.__name__}: {describe_validation_error(err)}"
        ) from None
