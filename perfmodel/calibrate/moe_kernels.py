"""Kernel labels of the measured MoE and dense GEMM tables (data: calibration/moe_kernels.yaml,
calibration/gemm_kernels.yaml: one schema, one mechanism).

A measured MoE row names the code that ran it (aiconfigurator-core 0.12.0 ``moe_perf``
``kernel_source``: ``vllm_fp8moe_triton_tritonexperts``, ``moe_torch_flow_cutlass``, ...); one
label per kernel family (``vllm_triton``, ``trtllm_cutlass``, ...) groups them, and is the name
the engine files give their MoE kernels (engines/<id>.yaml ``moe.kernels``) and the ``@kernel``
part of a profile's ``moe`` keys (``profile.moe_key``). The file lists, per label, what it ran,
its kernel sources and the sources that say so; it is read once. The dense GEMM tables are
labelled the same way by calibration/gemm_kernels.yaml (``kernel_labels("gemm")``: ``torch_flow`` ->
``trtllm_torch_flow``, ``FlashInferCuteDslNvFp4LinearKernel`` -> ``flashinfer_cutedsl``), the names
engines/<id>.yaml ``gemm.kernels`` gives and the ``@kernel`` part of a profile's ``gemm`` keys
(``profile.gemm_key``).

The MoE file also says what each label's rows timed beside the two grouped GEMMs
(``timed_regions``, ``labels.<label>.timed``: the harness's timed call read from its source),
among the operators the core charges separately (``TIMED_PARTS``); ``timed_parts`` gives a
record's, which the MoE fit takes out of its time (calibrate/fit/moe.py ``net_times``), and how
the harness routed the row's tokens (``timed_regions.<id>.routing``, ``routing``: the experts a row
touched, ``fit/moe.py routed_groups``); ``routing_undetermined`` lists the rows whose touched
experts their source does not determine (``routing`` None: the fit leaves them out).
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import Field, model_validator

from ..errors import SpecError
from ..paths import data_dir
from ..specs.common import Source, Strict, check_source_ids
from ..specs.registry import load_file

#: the label files, by the kind of table they label
FILES = {"moe": "moe_kernels.yaml", "gemm": "gemm_kernels.yaml"}


#: operators the core charges beside a MoE layer's two grouped GEMMs (ops.layer_forward_ops)
#: that a harness can time with them: the top-k / softmax kernel, the expert activation, the
#: combine (the router GEMM too is the core's, but no harness times it: routing logits are given)
TIMED_PARTS = ("topk", "act", "combine")


class TimedRegion(Strict):
    """What a measured MoE row's time holds besides the up and down grouped GEMMs, among the
    operators the core charges separately (``TIMED_PARTS``): ``parts``; ``what`` says what the
    harness timed, ``sources`` (ids of the file's sources) where that is read."""

    what: str = Field(min_length=10)
    sources: list[str] = Field(min_length=1)
    parts: list[Literal[TIMED_PARTS]]
    # how the harness routed the row's tokens (fit/moe.py routed_groups), with its sources
    routing: Literal["balanced_logits", "uniform"] = "uniform"
    routing_sources: list[str] = Field(default_factory=list)


class UndeterminedRouting(Strict):
    """Rows whose touched experts their source does not determine: records whose source path
    holds one of ``tables`` and whose (hidden, inter, experts, topk) is one of ``shapes``."""

    what: str = Field(min_length=10)
    sources: list[str] = Field(min_length=1)
    tables: list[str] = Field(min_length=1)
    shapes: list[tuple[int, int, int, int]] = Field(min_length=1)


class KernelLabel(Strict):
    """One kernel family: what it is, the sources that say so (ids), its ``kernel_source``s and
    (MoE) the timed region of their rows (a ``timed_regions`` id)."""

    what: str = Field(min_length=3)
    sources: list[str] = Field(min_length=1)
    kernel_sources: list[str] = Field(min_length=1)
    timed: str | None = None


class GenericRule(Strict):
    """``generic`` of calibration/moe_kernels.yaml: what the generic engine (it names no MoE kernel)
    runs (``rule``, prose; ``sources``: ids of the file's sources), implemented by
    ``roofline.Roofline.moe_alternatives`` and ``roofline._fastest_moe_kernel``."""

    rule: str = Field(min_length=10)
    sources: list[str] = Field(default_factory=list)


class MoeKernels(Strict):
    """calibration/moe_kernels.yaml (or gemm_kernels.yaml): cited sources and the labels."""

    sources: list[Source] = Field(min_length=1)
    timed_regions: dict[str, TimedRegion] = Field(default_factory=dict)
    labels: dict[str, KernelLabel] = Field(min_length=1)
    routing_undetermined: list[UndeterminedRouting] = Field(default_factory=list)
    generic: GenericRule | None = None

    @model_validator(mode="after")
    def _check(self) -> MoeKernels:
        for region, entry in self.timed_regions.items():
            check_source_ids(entry.sources + entry.routing_sources, self.sources,
                             f"timed_regions.{region}.sources")
        for i, entry in enumerate(self.routing_undetermined):
            check_source_ids(entry.sources, self.sources, f"routing_undetermined[{i}].sources")
        seen: dict[str, str] = {}
        for label, entry in self.labels.items():
            check_source_ids(entry.sources, self.sources, f"labels.{label}.sources")
            if entry.timed is not None and entry.timed not in self.timed_regions:
                raise SpecError(f"labels.{label}.timed: unknown timed region {entry.timed!r}; "
                                f"valid: {sorted(self.timed_regions)}")
            for ks in entry.kernel_sources:
                if ks in seen:
                    raise SpecError(f"labels.{label}.kernel_sources: {ks!r} already labelled "
                                    f"{seen[ks]!r}")
                seen[ks] = label
        if self.generic is not None:
            check_source_ids(self.generic.sources, self.sources, "generic.sources")
        return self

    def table(self) -> dict[str, str]:
        """Upstream ``kernel_source`` -> kernel label."""
        return {ks: label for label, entry in self.labels.items() for ks in entry.kernel_sources}


def timed_parts(record: dict) -> tuple[str, ...]:
    """The operators the core charges separately (``TIMED_PARTS``) that a measured MoE record's
    time also holds: those of its timed region, named by the record (``stats.timed``, set by a
    converter whose rows carry no ``kernel_source``: aiter's tuner) or by its ``kernel_source``'s
    label (calibration/moe_kernels.yaml ``labels.<label>.timed``); none for a record that names
    neither (its time is taken as the two grouped GEMMs alone)."""
    region = _timed_region(record)
    return tuple(kernel_file("moe").timed_regions[region].parts) if region else ()


def _timed_region(record: dict) -> str | None:
    """The id of a measured MoE record's timed region (``stats.timed``, else its
    ``kernel_source``'s label's), or None."""
    stats = record.get("stats") or {}
    f = kernel_file("moe")
    region = stats.get("timed")
    if region is None:
        label = kernel_labels("moe").get(stats.get("kernel_source") or "")
        region = f.labels[label].timed if label else None
    if region is not None and region not in f.timed_regions:
        raise SpecError(f"timed region {region!r} is not in calibration/{FILES['moe']} "
                        f"timed_regions ({sorted(f.timed_regions)})")
    return region


def routing(record: dict) -> str | None:
    """How a measured MoE record's harness routed its tokens: ``balanced_logits``
    (aiconfigurator's balanced rows, a deterministic stride spread), ``uniform`` (i.i.d.
    scores, and a record that names no timed region), or None where the source does not
    determine the experts it touched (calibration/moe_kernels.yaml ``routing_undetermined``)."""
    p = record["params"]
    src = (record.get("stats") or {}).get("source") or ""
    shape = (int(p["hidden"]), int(p["inter"]), int(p["experts"]), int(p["topk"]))
    for entry in kernel_file("moe").routing_undetermined:
        if shape in entry.shapes and any(t in src for t in entry.tables):
            return None
    region = _timed_region(record)
    return kernel_file("moe").timed_regions[region].routing if region else "uniform"


def kernel_file(kind: str = "moe") -> MoeKernels:
    """calibration/moe_kernels.yaml (``kind`` moe: the grouped GEMMs) or gemm_kernels.yaml
    (``kind`` gemm: the dense GEMMs), validated (each read once)."""
    if kind not in FILES:
        raise ValueError(f"kind must be one of {sorted(FILES)}")
    return _kernel_file(kind)


def kernel_labels(kind: str = "moe") -> dict[str, str]:
    """Upstream ``kernel_source`` -> kernel label of ``kind``'s file (``trtllm_cutlass``,
    ``vllm_triton``, ...; gemm: ``flashinfer_cutedsl``, ...). Callers must not mutate the
    result (it is cached)."""
    return _kernel_labels(kind) if kind in FILES else kernel_file(kind).table()


@cache
def _kernel_file(kind: str) -> MoeKernels:
    return load_file(MoeKernels, data_dir("calibration") / FILES[kind])


@cache
def _kernel_labels(kind: str) -> dict[str, str]:
    return _kernel_file(kind).table()


def check_labels(kind: str, named: dict[str, list[str]], where: str) -> None:
    """Every label ``named`` gives (format -> labels, as engines/<id>.yaml ``gemm.kernels`` /
    ``moe.kernels`` list them) is one of ``kind``'s file; else one line naming
    ``<where>.<format>``, the unknown labels and the valid ones."""
    valid = kernel_file(kind).labels
    for fmt, labels in named.items():
        bad = [k for k in labels if k not in valid]
        if bad:
            raise SpecError(f"{where}.{fmt}: unknown {kind} kernel label(s) {bad}; valid: "
                            f"{sorted(valid)} (calibration/{FILES[kind]})")
