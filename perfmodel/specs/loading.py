"""Reading spec files: YAML/JSON into validated models, with errors that name file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import SpecError

M = TypeVar("M", bound=BaseModel)


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


def read_mapping(path: str | Path) -> dict:
    """Read a YAML or JSON file that must contain a mapping."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"file not found: {path}")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise SpecError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                        f"{str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_file(model: type[M], path: str | Path) -> M:
    return validate(model, read_mapping(path), what=str(path))
