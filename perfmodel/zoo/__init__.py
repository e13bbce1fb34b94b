"""The model zoo: shipped presets (presets/<id>.yaml) and HuggingFace config.json import.

``resolve_model`` is the one entry point for anything a user may write where a model is
expected: a preset id, a path to a HF ``config.json`` (or a folder holding one) or to a
preset-format YAML/JSON file, an inline mapping, or an already built ModelSpec.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import SpecError, unknown_id
from ..specs import registry
from ..specs.common import validate
from ..specs.model import ModelSpec
from ..specs.registry import read_mapping

# The HF importer (.hf, .hf_quant) is loaded on first use, not at import: resolving a preset
# id -- every planner run -- never reads a config.json. Its public names are still this
# package's (``__getattr__`` below).
_HF_NAMES = ("SUPPORTED_MODEL_TYPES", "load_hf_config", "model_from_hf_config")


def __getattr__(name: str) -> Any:
    if name in _HF_NAMES:
        from . import hf

        return getattr(hf, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "get_model",
    "list_models",
    "load_hf_config",
    "model_from_hf_config",
    "resolve_model",
]

_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def list_models() -> list[ModelSpec]:
    """All shipped presets, sorted by id."""
    return [spec for _, spec in sorted(registry.models().items())]


def get_model(model_id: str | Path) -> ModelSpec:
    """A shipped preset by id, or a model file as a scenario's ``model`` field reads it (a
    HF config.json or its folder, a preset-format YAML/JSON; ``resolve_model``); SpecError
    naming the closest ids otherwise."""
    return resolve_model(str(model_id))


def _from_mapping(data: Mapping[str, Any], what: str) -> ModelSpec:
    """HF format when the mapping has a ``model_type`` (no preset field has that name); a
    ModelOpt hf_quant_config.json (a ``quantization`` block, no architecture) is refused in
    one line naming what is missing."""
    if "model_type" in data:
        from .hf import model_from_hf_config

        return model_from_hf_config(data)
    if "quantization" in data:  # no ModelSpec field has that name either
        from .hf import DESCRIPTOR_ALONE

        raise SpecError(f"{what}: {DESCRIPTOR_ALONE}")
    return validate(ModelSpec, dict(data), what=what)


#: what a scenario file given where a model is expected gets (a command may add its own hint)
SCENARIO_NOT_MODEL = ("a scenario file (kind: {kind}), not a model: give a model preset id "
                      "(perfmodel models list), a model YAML (preset format) or a HF "
                      "config.json (as the scenario's own model: field names one)")
# keys of a scenario file (specs/scenario.py Scenario); no ModelSpec field has these names
_SCENARIO_KEYS = frozenset({"kind", "model", "system"})


def _is_scenario(data: Any) -> bool:
    """A scenario file (``kind`` / ``model`` / ``system`` keys), not a model: at least two of
    them (ModelSpec has none of these fields, so even one would fail; two say which file it
    is)."""
    return isinstance(data, Mapping) and len(_SCENARIO_KEYS & set(data)) >= 2


#: the command that takes a scenario file of each kind as a whole (perfmodel/cli.py)
_SCENARIO_COMMANDS = {"training": ("search", "searches its parallel plans"),
                      "inference": ("predict", "predicts it"),
                      "serving": ("plan-serving", "plans its deployment")}


def _scenario_command(kind: Any, value: str) -> str:
    """"; `perfmodel search FILE` searches its parallel plans" for the scenario's kind (every
    kind: ``perfmodel predict FILE`` predicts it)."""
    command, does = _SCENARIO_COMMANDS.get(kind if isinstance(kind, str) else "",
                                           ("predict", "predicts it"))
    return f"; `perfmodel {command} {value}` {does}"


def _named_after(data: Any, path: Path) -> Any:
    """A preset-format model file without ``id`` / ``name`` named after its file, as a HF
    config.json without ``_name_or_path`` is (hf.name_from_path): ``my-model.yaml`` -> id
    ``my-model`` (hf.model_slug, as a config's id), name the file's stem."""
    if not isinstance(data, Mapping) or ("id" in data and "name" in data):
        return data
    from .hf import model_slug  # hf is imported where a file needs it (start-up cost)

    stem = path.stem if path.suffix.lower() in _FILE_SUFFIXES else path.name
    slug = model_slug(stem) or "model"
    return {"id": slug, "name": data.get("id") or stem, **data}


def _looks_like_path(value: str) -> bool:
    return value.endswith(_FILE_SUFFIXES) or "/" in value or "\\" in value


def resolve_model(
    value: str | Mapping[str, Any] | ModelSpec, base_dir: Path | None = None
) -> ModelSpec:
    """A ModelSpec from a preset id, a file path, an inline mapping or a ModelSpec.

    Relative paths are resolved against ``base_dir`` (e.g. the folder of the scenario file
    that names the model), else the working directory.
    """
    if isinstance(value, ModelSpec):
        return value
    if isinstance(value, Mapping):
        return _from_mapping(value, what="inline model")
    if not isinstance(value, str) or not value.strip():
        raise SpecError(
            "a model must be a preset id, a path to a config.json / preset YAML, or a mapping; "
            f"got {value!r}"
        )
    value = value.strip()
    presets = registry.ids("model")
    if value in presets:
        return registry.get_model(value)
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError:  # not a usable path (e.g. a name longer than the OS allows): an id
        is_dir = is_file = False
    if is_dir:
        if not (path / "config.json").is_file():
            raise SpecError(f"model folder {path} has no config.json")
        from .hf import load_hf_config

        return load_hf_config(path)
    if is_file:
        data = read_mapping(path)
        if "model_type" in data:  # a HF config.json: with the hf_quant_config.json beside it
            from .hf import model_from_hf_file

            return model_from_hf_file(path, data)
        if _is_scenario(data):
            raise SpecError(f"{path}: {SCENARIO_NOT_MODEL.format(kind=data.get('kind'))}"
                            + _scenario_command(data.get("kind"), value))
        return _from_mapping(_named_after(data, path), what=str(path))
    if _looks_like_path(value):
        raise SpecError(f"model file not found: {path}")
    raise unknown_id("model", value, presets)
