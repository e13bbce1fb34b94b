"""Kernel labels of the measured MoE and dense GEMM tables (data: calibration/moe_kernels.yaml,
calibration/gemm_kernels.yaml: one schema, one mechanism).

A measured MoE row names the code that ran it (aiconfigurator-core 0.12.0 ``moe_perf``
``kernel_source``: ``vllm_fp8moe_triton_tritonexperts``, ``moe_torch_flow_cutlass``, ...); one
label per kernel family (``vllm_triton``, ``trtllm_cutlass``, ...) groups them, and is the name
the engine files give their MoE kernels (engines/<id>.yaml ``moe.kernels``) and the ``@kernel``
part of a profile's ``moe`` keys (``profile.moe_key``). The file lists, per label, what it ran,
its kernel sources and the sources that say so; it is read once. The dense GEMM tables are
labelled the same way by calibration/gemm_kernels.yaml (``gemm_kernel_labels``: ``torch_flow`` ->
``trtllm_torch_flow``, ``FlashInferCuteDslNvFp4LinearKernel`` -> ``flashinfer_cutedsl``), the names
engines/<id>.yaml ``gemm.kernels`` gives and the ``@kernel`` part of a profile's ``gemm`` keys
(``profile.gemm_key``).
"""

from __future__ import annotations

from functools import cache

from pydantic import Field, model_validator

from ..errors import SpecError
from ..paths import data_dir
from ..specs.common import Source, Strict
from ..specs.registry import load_file

FILE = "moe_kernels.yaml"
GEMM_FILE = "gemm_kernels.yaml"


class KernelLabel(Strict):
    """One kernel family: what it is, the sources that say so (ids), its ``kernel_source``s."""

    what: str = Field(min_length=3)
    sources: list[str] = Field(min_length=1)
    kernel_sources: list[str] = Field(min_length=1)


class MoeKernels(Strict):
    """calibration/moe_kernels.yaml (or gemm_kernels.yaml): cited sources and the labels."""

    sources: list[Source] = Field(min_length=1)
    labels: dict[str, KernelLabel] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> MoeKernels:
        ids = {s.id for s in self.sources}
        seen: dict[str, str] = {}
        for label, entry in self.labels.items():
            missing = [s for s in entry.sources if s not in ids]
            if missing:
                raise SpecError(f"labels.{label}.sources: unknown source id(s) {missing}; "
                                f"valid: {sorted(i for i in ids if i)}")
            for ks in entry.kernel_sources:
                if ks in seen:
                    raise SpecError(f"labels.{label}.kernel_sources: {ks!r} already labelled "
                                    f"{seen[ks]!r}")
                seen[ks] = label
        return self

    def table(self) -> dict[str, str]:
        """Upstream ``kernel_source`` -> kernel label."""
        return {ks: label for label, entry in self.labels.items() for ks in entry.kernel_sources}


@cache
def moe_kernel_file() -> MoeKernels:
    """calibration/moe_kernels.yaml, validated (read once)."""
    return load_file(MoeKernels, data_dir("calibration") / FILE)


@cache
def kernel_labels() -> dict[str, str]:
    """Upstream ``kernel_source`` -> kernel label (``trtllm_cutlass``, ``vllm_triton``, ...).
    Callers must not mutate the result (it is cached)."""
    return moe_kernel_file().table()



@cache
def gemm_kernel_file() -> MoeKernels:
    """calibration/gemm_kernels.yaml, validated (read once): the dense GEMM tables' labels."""
    return load_file(MoeKernels, data_dir("calibration") / GEMM_FILE)


@cache
def gemm_kernel_labels() -> dict[str, str]:
    """Upstream GEMM ``kernel_source`` -> kernel label (``flashinfer_cutedsl``, ...).
    Callers must not mutate the result (it is cached)."""
    return gemm_kernel_file().table()
