"""A resolved system: device x GPU count x fabrics, with every default filled in.

Pure: ``specs.assemble.resolve_system`` builds one from a scenario's ids."""

from __future__ import annotations

from dataclasses import dataclass

from .hardware import DeviceSpec, InterconnectSpec, NodeSpec


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
    power_limit_w: float | None = None  # None: the device's default limit (TDP)

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
