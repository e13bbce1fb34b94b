"""A resolved system: device x GPU count x fabrics, with every default filled in."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import SpecError
from . import registry
from .hardware import DeviceSpec, InterconnectSpec, NodeSpec
from .scenario import SystemConfig

_NIC_COUNT = re.compile(r"^(?P<id>.+?)x(?P<n>\d+)$")


@dataclass(frozen=True)
class System:
    device: DeviceSpec
    num_gpus: int
    gpus_per_node: int
    intra: InterconnectSpec  # fabric between GPUs of one node
    inter: InterconnectSpec | None  # one NIC port of the scale-out network
    nics_per_node: int
    host_link: InterconnectSpec | None
    node: NodeSpec | None
    rail_optimized: bool = True

    @property
    def network_hops(self) -> int:
        """Switch hops between same-index GPUs of two nodes: one leaf on a rail-optimised
        fabric, leaf-spine-leaf otherwise (NVIDIA DGX SuperPOD reference designs)."""
        return 1 if self.rail_optimized else 3

    @property
    def num_nodes(self) -> int:
        return -(-self.num_gpus // self.gpus_per_node)

    @property
    def intra_bandwidth(self) -> float:
        """Per-GPU per-direction bandwidth inside the node's fabric (B/s)."""
        return self.intra.bandwidth

    @property
    def inter_bandwidth_per_gpu(self) -> float:
        """Per-GPU per-direction share of the node's scale-out NICs (B/s); 0 without a network."""
        if self.inter is None or self.nics_per_node == 0:
            return 0.0
        return self.inter.bandwidth * self.nics_per_node / self.gpus_per_node


def _parse_network(value: str) -> tuple[str, int | None]:
    """'ib-ndr-400x8' -> ('ib-ndr-400', 8); a plain id has no count."""
    if value in registry.interconnects():
        return value, None
    match = _NIC_COUNT.match(value)
    if match and match["id"] in registry.interconnects():
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
    return System(device=device, num_gpus=cfg.num_gpus, gpus_per_node=per_node, intra=intra,
                  inter=inter, nics_per_node=nics, host_link=host, node=node,
                  rail_optimized=cfg.rail_optimized)
