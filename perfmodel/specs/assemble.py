"""From a scenario's ids to resolved specs: read a scenario file, and fill a system config
into a :class:`~perfmodel.specs.system.System` from the registry's device, node and fabric
files. Files come in through :mod:`perfmodel.specs.registry` only."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import SpecError
from ..power import check_power_limit
from . import registry
from .common import validate
from .scenario import Scenario, SystemConfig
from .system import System

_NIC_COUNT = re.compile(r"^(?P<id>.+?)x(?P<n>\d+)$")


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario YAML; relative ``model:`` / ``calibration:`` paths resolve against it."""
    path = Path(path)
    data = registry.read_mapping(path)
    data.setdefault("base_dir", str(path.resolve().parent))
    return validate(Scenario, data, what=f"scenario {path}")


def _parse_network(value: str) -> tuple[str, int | None]:
    """'ib-ndr-400x8' -> ('ib-ndr-400', 8); a plain id has no count."""
    known = registry.ids("interconnect")
    if value in known:
        return value, None
    match = _NIC_COUNT.match(value)
    if match and match["id"] in known:
        return match["id"], int(match["n"])
    registry.get_interconnect(value)  # raises with suggestions
    raise AssertionError  # pragma: no cover


def resolve_system(cfg: SystemConfig) -> System:
    """Fill unset fields from the node preset (given, or the device's default)."""
    device = registry.get_device(cfg.device)
    node_id = cfg.node or device.default_node
    node = registry.get_node(node_id) if node_id else None
    per_node = cfg.gpus_per_node or (node.gpus_per_node if node else 1)
    per_node = min(per_node, cfg.num_gpus)
    intra_id = cfg.intra_node or (node.intra_node if node else None) or device.host_link
    if intra_id is None:
        raise SpecError(f"system.intra_node: device {device.id!r} names no fabric; give one "
                        "(`perfmodel hardware list --interconnects`)")
    intra = registry.get_interconnect(intra_id)
    inter, nics = None, 0
    inter_value = cfg.inter_node or (node.inter_node if node else None)
    if inter_value:
        inter_id, parsed = _parse_network(inter_value)
        inter = registry.get_interconnect(inter_id)
        nics = cfg.nics_per_node or parsed or (node.nics_per_node if node else 0) or 1
    if cfg.num_gpus > per_node and inter is None:
        raise SpecError(
            f"system.inter_node: {cfg.num_gpus} GPUs need {-(-cfg.num_gpus // per_node)} nodes "
            f"of {per_node}, but no inter-node network is set; give e.g. inter_node: ib-ndr-400x8"
        )
    host = registry.get_interconnect(device.host_link) if device.host_link else None
    check_power_limit(device, cfg.power_limit_w)
    return System(device=device, num_gpus=cfg.num_gpus, gpus_per_node=per_node, intra=intra,
                  inter=inter, nics_per_node=nics, host_link=host, node=node,
                  rail_optimized=cfg.rail_optimized, power_limit_w=cfg.power_limit_w)
