"""Registries of the shipped data: devices, interconnects, nodes (hardware_specs/) and model
presets (perfmodel/zoo/presets/). Each is read once and cached; ids are file stems."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from ..errors import SpecError, unknown_id
from ..paths import PACKAGE_DIR, data_dir
from .hardware import DeviceSpec, InterconnectSpec, NodeSpec
from .loading import load_file
from .model import ModelSpec

M = TypeVar("M", bound=BaseModel)


def _load_dir(model: type[M], folder: Path) -> dict[str, M]:
    items: dict[str, M] = {}
    for path in sorted(folder.glob("*.yaml")):
        item = load_file(model, path)
        if item.id != path.stem:
            raise SpecError(f"{path}: id {item.id!r} must equal the file name {path.stem!r}")
        items[item.id] = item
    return items


@cache
def devices() -> dict[str, DeviceSpec]:
    return _load_dir(DeviceSpec, data_dir("hardware_specs") / "devices")


@cache
def interconnects() -> dict[str, InterconnectSpec]:
    return _load_dir(InterconnectSpec, data_dir("hardware_specs") / "interconnects")


@cache
def nodes() -> dict[str, NodeSpec]:
    return _load_dir(NodeSpec, data_dir("hardware_specs") / "nodes")


@cache
def models() -> dict[str, ModelSpec]:
    return _load_dir(ModelSpec, PACKAGE_DIR / "zoo" / "presets")


def _get(kind: str, table: dict[str, M], key: str) -> M:
    try:
        return table[key]
    except KeyError:
        raise unknown_id(kind, key, table) from None


def get_device(device_id: str) -> DeviceSpec:
    return _get("device", devices(), device_id)


def get_interconnect(interconnect_id: str) -> InterconnectSpec:
    return _get("interconnect", interconnects(), interconnect_id)


def get_node(node_id: str) -> NodeSpec:
    return _get("node", nodes(), node_id)


def get_model(model_id: str) -> ModelSpec:
    return _get("model", models(), model_id)
