"""Shared schema pieces: strict models, cited sources, and validation with readable errors.

Pure: no file is read here (files come in through ``specs.registry``, the one door to files).
"""

from __future__ import annotations

import re
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import SpecError, closest, shorten

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base for every spec: unknown fields are errors (a typo must not be silently ignored),
    and no float is NaN or infinite."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False, defer_build=True)


class TopLevel(Strict):
    """A spec users build by keyword (the Python API's ``pm.Scenario(...)``): it fails as the
    CLI and the loaders do, with a SpecError (a PerfModelError) of one line per problem rather
    than pydantic's text. Only for a model no other model nests: pydantic runs a custom
    ``__init__`` for nested sections too, which would nest the messages."""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise SpecError(f"invalid {type(self).__name__}: "
                            f"{describe_validation_error(err, model=type(self))}") from None


class Source(Strict):
    """Where a number comes from: a title and a URL, optionally how it was read."""

    id: str | None = None
    title: str = Field(min_length=3)
    url: str = Field(min_length=8)
    read_via: str | None = None
    location: str | None = None  # table / figure / line inside the source


def check_source_ids(ids, sources, where: str) -> None:
    """Raise a SpecError naming ``where`` unless every id of ``ids`` is the id of one of
    ``sources`` (a data file's cited Source list): no fact cites a source the file lacks."""
    known = {s.id for s in sources}
    missing = [i for i in ids if i not in known]
    if missing:
        raise SpecError(f"{where}: unknown source id(s) {missing}; valid: "
                        f"{sorted(i for i in known if i)}")


#: Problems listed in one message (unknown fields first: a typo also makes a field
#: "missing"); the rest are counted ("(and 12 more)").
MAX_PROBLEMS = 5


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's annotation holds (``X | None``, ``list[X]``, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _section_of(root: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    """The model a location inside ``root`` names (keys that are no field, such as list
    indexes or union tags, are stepped over)."""
    model: type[BaseModel] | None = root
    for key in path:
        field = model.model_fields.get(key) if model else None
        if field is not None:
            models = _models_in(field.annotation)
            model = models[0] if models else None
    return model


#: how deep ``_homes`` looks for the section a misplaced field belongs to
HOME_DEPTH = 3


def _homes(root: type[BaseModel], name: str) -> list[str]:
    """Where field ``name`` is known in ``root``'s sections, shortest paths first ("" is
    the top level)."""
    found, queue, seen = [], [("", root, 0)], set()
    while queue:
        path, model, depth = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        if name in model.model_fields:
            found.append(path)
        if depth < HOME_DEPTH:
            for key, field in model.model_fields.items():
                queue += [(f"{path}.{key}".lstrip("."), sub, depth + 1)
                          for sub in _models_in(field.annotation)]
    return found


def _misplaced(root: type[BaseModel] | None, loc: tuple) -> str:
    """For an unknown field that another section of ``root`` knows: where it goes."""
    if root is None or not loc:
        return ""
    keys = [str(p) for p in loc]
    homes = [h for h in _homes(root, keys[-1]) if _section_of(root, keys[:-1]) is not
             _section_of(root, h.split(".") if h else [])][:3]
    if not homes:
        return ""
    where = " or ".join(f"under {h}: ({h}.{shorten(keys[-1])})" if h else "at the top level"
                        for h in homes)
    return f"; it belongs {where}"


#: Field names a "valid:" list of an unknown-field message shows before "(and N more)".
MAX_VALID_FIELDS = 12


def _spelling_hint(root: type[BaseModel] | None, loc: tuple, listing: bool = True) -> str:
    """For an unknown field: the closest fields of its section and the section's fields
    ("; did you mean rate_per_s? valid: process, rate_per_s, ..."); the one rule for every
    section of every Strict model (scenario, engine and framework overrides, spec files).
    Fields a loader fills in (``exclude=True``: a scenario's base_dir) are not offered;
    without ``listing`` (one of several problems: the line stays short) no "valid:" list."""
    section = _section_of(root, [str(p) for p in loc[:-1]]) if root is not None and loc \
        else None
    if section is None:
        return " (check the spelling)"
    names = [k for k, f in section.model_fields.items() if not f.exclude]
    hints = closest(str(loc[-1]), names)
    shown = ", ".join(names[:MAX_VALID_FIELDS]) + (
        f" (and {len(names) - MAX_VALID_FIELDS} more)" if len(names) > MAX_VALID_FIELDS else "")
    said = " or ".join([", ".join(hints[:-1]), hints[-1]] if len(hints) > 1 else hints)
    if not listing:
        return f"; did you mean {said}?" if hints else " (check the spelling)"
    return (f"; did you mean {said}?" if hints else " (check the spelling);") + f" valid: {shown}"


def _literal_hint(e: dict) -> str:
    """For a value outside a Literal: the closest allowed values (the same rule as ids)."""
    given, expected = e.get("input"), (e.get("ctx") or {}).get("expected", "")
    if not isinstance(given, str):
        return ""
    hints = closest(given, re.findall(r"'([^']*)'", str(expected)))
    return f"; did you mean {', '.join(repr(h) for h in hints)}?" if hints else ""


def _root_model(err: ValidationError) -> type[BaseModel] | None:
    """The Strict model a ValidationError is about, found by its title (None when no model,
    or more than one, has that name)."""
    todo, found = [Strict], []
    while todo:
        cls = todo.pop()
        found += [cls] if cls.__name__ == err.title else []
        todo += cls.__subclasses__()
    return found[0] if len(found) == 1 else None


def describe_validation_error(err: ValidationError, prefix: str = "",
                              model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``field.path: message`` (pydantic's text, minus its boilerplate);
    at most MAX_PROBLEMS of them, and each key of the path shortened (a key comes from the
    user's file and may be of any length). An unknown field that another section of
    ``model`` (default: the Strict model the error is about) knows says where it goes."""
    root = model or _root_model(err)
    lines = []
    errors = sorted(err.errors(include_input=True, include_url=False),
                    key=lambda e: e["type"] != "extra_forbidden")
    for e in errors[:MAX_PROBLEMS]:
        loc = ".".join(shorten(p) for p in e["loc"] if not str(p).startswith("function-"))
        loc = ".".join(x for x in [prefix, loc] if x)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field" + (_misplaced(root, e["loc"])
                                     or _spelling_hint(root, e["loc"], len(errors) == 1))
        elif e["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be one of:") + _literal_hint(e)
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
            f"invalid {what or model.__name__}: {describe_validation_error(err, model=model)}"
        ) from None
