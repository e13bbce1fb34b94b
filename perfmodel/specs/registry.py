"""The one door to files: every spec file the package reads comes in here.

* ``read_yaml`` / ``read_mapping`` / ``load_file``: a YAML or JSON file into a mapping or a
  validated model, with errors that name file and field. YAML is parsed with PyYAML's C
  loader (libyaml) where it is installed, else its pure-Python SafeLoader: same data, ~10x
  faster on the shipped specs.
* The shipped data by id: devices, interconnects, nodes (hardware_specs/), model presets
  (models/) and calibration profiles (calibration/). Ids are file stems; each
  file is read once, on first use, and cached, so a lookup of one device reads one file.

The schema modules (``specs.common``, ``specs.hardware``, ``specs.model``, ``specs.system``,
``profile``) are pure pydantic / dataclasses; ``specs.assemble`` composes these lookups into a
system and reads scenario files.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from ..errors import SpecError, unknown_id
from ..paths import data_dir
from .common import validate
from .hardware import DeviceSpec, InterconnectSpec, NodeSpec
from .model import ModelSpec

if TYPE_CHECKING:
    from ..profile import CalibrationProfile

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "default_profile", "devices", "get_device", "get_interconnect", "get_model", "get_node",
    "ids", "interconnects", "load_file", "load_profile", "models", "nodes", "profile_for",
    "read_mapping", "read_yaml", "reference_profile", "yaml_loader",
]


# -- reading files ----------------------------------------------------------------------------

def yaml_loader() -> type:
    """PyYAML's C-accelerated safe loader when libyaml is present, else the Python one."""
    import yaml

    return yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file (any top-level value); the single YAML reader of the package."""
    import yaml

    return yaml.load(Path(path).read_text(), Loader=yaml_loader())


def read_mapping(path: str | Path) -> dict:
    """Read a YAML or JSON file that must contain a mapping."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"file not found: {path}")
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else read_yaml(path)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise SpecError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                        f"{str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_file(model: type[M], path: str | Path) -> M:
    """A file validated as ``model``; errors name the file."""
    return validate(model, read_mapping(path), what=str(path))


# -- shipped data by id -----------------------------------------------------------------------

_KINDS: dict[str, tuple[type[BaseModel], Any]] = {
    "device": (DeviceSpec, lambda: data_dir("hardware_specs") / "devices"),
    "interconnect": (InterconnectSpec, lambda: data_dir("hardware_specs") / "interconnects"),
    "node": (NodeSpec, lambda: data_dir("hardware_specs") / "nodes"),
    "model": (ModelSpec, lambda: data_dir("models")),
}


@cache
def ids(kind: str) -> tuple[str, ...]:
    """The ids of one kind of shipped spec (file stems, in file-name order), without reading
    the files."""
    return tuple(p.stem for p in sorted(_KINDS[kind][1]().glob("*.yaml")))


@cache
def _load(kind: str, item_id: str) -> Any:
    model, folder = _KINDS[kind]
    path = folder() / f"{item_id}.yaml"
    item = load_file(model, path)
    if item.id != path.stem:
        raise SpecError(f"{path}: id {item.id!r} must equal the file name {path.stem!r}")
    return item


def _table(kind: str) -> dict:
    return {item_id: _load(kind, item_id) for item_id in ids(kind)}


def _get(kind: str, key: str) -> Any:
    if key not in ids(kind):
        raise unknown_id(kind, key, ids(kind))
    return _load(kind, key)


@cache
def devices() -> dict[str, DeviceSpec]:
    return _table("device")


@cache
def interconnects() -> dict[str, InterconnectSpec]:
    return _table("interconnect")


@cache
def nodes() -> dict[str, NodeSpec]:
    return _table("node")


@cache
def models() -> dict[str, ModelSpec]:
    return _table("model")


def get_device(device_id: str) -> DeviceSpec:
    return _get("device", device_id)


def get_interconnect(interconnect_id: str) -> InterconnectSpec:
    return _get("interconnect", interconnect_id)


def get_node(node_id: str) -> NodeSpec:
    return _get("node", node_id)


def get_model(model_id: str) -> ModelSpec:
    return _get("model", model_id)


# -- calibration profiles ---------------------------------------------------------------------

def load_profile(path: str | Path) -> CalibrationProfile:
    """Read a profile JSON, checking the schema version first for a clear message."""
    from ..profile import SCHEMA_VERSION, CalibrationProfile

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"calibration profile not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}: not valid JSON: {err}") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise SpecError(
            f"{path}: calibration schema_version {version!r} is not supported "
            f"(this perfmodel reads version {SCHEMA_VERSION}); re-run `perfmodel calibrate`"
        )
    profile = validate(CalibrationProfile, data, what=f"calibration profile {path}")
    return _complete(profile).model_copy(update={"path": str(path)})


def _complete(profile: CalibrationProfile) -> CalibrationProfile:
    """Fill the optional default constants a profile leaves unset (older files) from the
    documented defaults, so that the core never has to look them up itself."""
    missing = {k for k, v in profile.defaults.model_dump().items() if v is None}
    if not missing or profile.id == "default":
        return profile
    base = default_profile().defaults
    defaults = profile.defaults.model_copy(update={k: getattr(base, k) for k in missing})
    return profile.model_copy(update={"defaults": defaults})


def default_profile() -> CalibrationProfile:
    """The documented uncalibrated profile (calibration/default.json)."""
    return _load_named("default.json")


def reference_profile(device_id: str) -> CalibrationProfile | None:
    """The shipped reference profile of a device, if any (calibration/<id>.reference.json)."""
    try:
        return _load_named(f"{device_id}.reference.json")
    except SpecError:
        return None


@cache
def _load_named(name: str) -> CalibrationProfile:
    return load_profile(data_dir("calibration") / name)


def profile_for(device_id: str, path: str | Path | None = None) -> CalibrationProfile:
    """The profile a prediction uses: an explicit file, else the device's reference profile,
    else the default (uncalibrated) one."""
    if path is not None:
        return load_profile(path)
    return reference_profile(device_id) or default_profile()
