"""The result of a prediction: totals, a breakdown that explains them, and provenance.

JSON keys are stable (DESIGN.md): training step_time_s, tokens_per_s, tflops_per_gpu, mfu,
memory_per_gpu_bytes, fits, breakdown; inference ttft_s, tpot_s, e2e_latency_s, tokens_per_s,
memory_per_gpu_bytes, fits, breakdown; serving adds ``serving`` (docs/serving.md). Other keys
may be added, never renamed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class OpReport(BaseModel):
    """One operator on the critical GPU: per-call costs and the step's total time in it."""

    model_config = ConfigDict(frozen=True)

    name: str
    cls: str
    phase: str
    calls: float  # per step (training) or per pass (inference)
    flops: float  # per call, executed
    bytes: float  # per call, HBM
    intensity: float  # FLOP / byte
    compute_s: float  # per call, before efficiency
    memory_s: float  # per call, before efficiency
    time_s: float  # per call, modelled
    total_s: float  # calls x time
    bound: Literal["compute", "memory"]


class Prediction(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["training", "inference", "serving"]
    name: str | None = None
    model: str
    device: str
    num_gpus: int
    calibration: dict[str, Any]
    # training
    step_time_s: float | None = None
    tflops_per_gpu: float | None = None  # Megatron model-FLOP convention
    hardware_tflops_per_gpu: float | None = None  # executed FLOPs incl. recompute (HFU's)
    mfu: float | None = None  # tflops_per_gpu / dense peak of the training dtype
    mfu_6nd: float | None = None  # 6 * active params * tokens convention
    hfu: float | None = None  # incl. recompute FLOPs (Korthikanti eq. 8)
    num_microbatches: float | None = None
    # inference
    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_latency_s: float | None = None
    prefill_time_s: float | None = None
    max_concurrent_sequences: float | None = None
    kv_cache_bytes_per_sequence: float | None = None
    # serving (discrete-event simulation): percentiles, throughput, goodput, SLO attainment,
    # KV utilisation and queue length over time; ttft_s / tpot_s / e2e_latency_s are the p50s
    serving: dict[str, Any] | None = None
    # both
    tokens_per_s: float
    memory_per_gpu_bytes: float
    memory_capacity_bytes: float
    fits: bool
    breakdown: dict[str, Any]
    ops: list[OpReport] = []
    warnings: list[str] = []

    def to_json_dict(self, include_ops: bool = False) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True, exclude={"ops"})
        if include_ops:
            data["ops"] = [op.model_dump() for op in self.ops]
        return data

    @property
    def bound_summary(self) -> dict[str, float]:
        """Share of operator time that is compute- vs memory-bound."""
        out = {"compute": 0.0, "memory": 0.0}
        for op in self.ops:
            out[op.bound] += op.total_s
        return out
