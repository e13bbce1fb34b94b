"""The user-facing scenario: model x system x parallel plan x workload (DESIGN.md format).

Scenarios are built in code (``Scenario(kind="training", model="llama-3-8b", ...)``) or read
from YAML (``load_scenario(path)``). Ids are resolved and validated here, at the edge, so the
core only ever sees complete, consistent specs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..dtypes import DType
from ..errors import SpecError
from .common import Strict
from .loading import read_mapping, validate
from .model import ModelSpec

TrainPrecision = Literal["fp32", "tf32", "fp16", "bf16", "fp8"]


class SystemConfig(Strict):
    """Which GPUs and how they are wired. Unset fields come from the device's default node."""

    device: str
    num_gpus: int = Field(default=1, ge=1)
    node: str | None = None  # node preset id (hardware_specs/nodes)
    gpus_per_node: int | None = Field(default=None, ge=1)
    intra_node: str | None = None  # interconnect id
    inter_node: str | None = None  # interconnect id, optionally "xN" for N NICs per node
    nics_per_node: int | None = Field(default=None, ge=0)


class Parallelism(Strict):
    """How work is split (Narayanan et al. 2021 notation: t, p, d; plus CP, EP, VP).

    ``dp`` may be omitted: it is then num_gpus / (tp * pp * cp). Expert parallelism divides the
    data-parallel ranks of MoE layers (Megatron-Core convention: ep divides dp * cp).
    """

    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    dp: int | None = Field(default=None, ge=1)
    cp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)
    etp: int | None = Field(default=None, ge=1)  # expert tensor parallel (default: tp)
    vp: int = Field(default=1, ge=1)  # virtual pipeline stages per rank (interleaved 1F1B)
    sequence_parallel: bool = False
    zero_stage: Literal[0, 1, 2, 3] = 0  # 1 = Megatron's distributed optimizer
    schedule: Literal["1f1b", "gpipe", "interleaved"] | None = None  # default: by vp
    placement: str = "tp-cp-ep-dp-pp"  # rank order, innermost first (Megatron default)
    overlap_grad_reduce: bool = True
    overlap_param_gather: bool = True
    tp_comm_overlap: bool = False

    @field_validator("placement")
    @classmethod
    def _check_placement(cls, value: str) -> str:
        dims = value.split("-")
        if sorted(dims) != sorted(["tp", "cp", "ep", "dp", "pp"]):
            raise SpecError(
                f"placement {value!r} must order all of tp, cp, ep, dp, pp, joined by '-', "
                "innermost first (e.g. 'tp-cp-ep-dp-pp')"
            )
        return value

    @property
    def resolved_schedule(self) -> str:
        return self.schedule or ("interleaved" if self.vp > 1 else "1f1b")


class TrainingConfig(Strict):
    seq_len: int = Field(ge=1)
    global_batch: int = Field(ge=1)  # sequences per optimizer step
    micro_batch: int = Field(default=1, ge=1)
    precision: TrainPrecision = "bf16"
    recompute: Literal["none", "selective", "full"] = "selective"
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    flash_attention: bool = True
    dropout: bool = False  # Megatron-era GPTs used dropout 0.1 (masks cost activation memory)
    grad_reduce_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"  # Megatron default: fp32
    master_weights: bool = True  # fp32 master copy with 16-bit training (mixed precision)
    causal: bool = True


class InferenceConfig(Strict):
    batch: int = Field(default=1, ge=1)
    prompt_len: int = Field(ge=1)
    output_len: int = Field(default=1, ge=1)
    weight_dtype: DType = "bf16"
    activation_dtype: Literal["fp32", "fp16", "bf16", "fp8", "int8"] = "bf16"
    kv_dtype: Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"] = "bf16"
    quant_group_size: int = Field(default=128, ge=1)
    flash_attention: bool = True
    kv_block_size: int = Field(default=16, ge=1)  # paged KV cache block (vLLM default 16)


class Scenario(Strict):
    """One what-if question. ``model`` accepts a preset id, a path or an inline mapping."""

    kind: Literal["training", "inference", "serving"]
    model: ModelSpec
    system: SystemConfig
    parallelism: Parallelism = Parallelism()
    training: TrainingConfig | None = None
    inference: InferenceConfig | None = None
    calibration: str | None = None  # profile path; default: the device's reference profile
    name: str | None = None
    description: str | None = None
    base_dir: str | None = Field(default=None, exclude=True)  # for relative paths

    @model_validator(mode="before")
    @classmethod
    def _resolve_model(cls, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("model"), ModelSpec):
            from ..zoo import resolve_model

            base = Path(data["base_dir"]) if data.get("base_dir") else None
            if "model" in data:
                data = {**data, "model": resolve_model(data["model"], base_dir=base)}
        return data

    @model_validator(mode="after")
    def _check_sections(self) -> Scenario:
        if self.kind == "training" and self.training is None:
            raise SpecError("kind 'training' needs a 'training' section "
                            "(seq_len, global_batch, ...)")
        if self.kind in ("inference", "serving") and self.inference is None:
            raise SpecError(f"kind {self.kind!r} needs an 'inference' section "
                            "(batch, prompt_len, output_len, ...)")
        return self

    def calibration_path(self) -> Path | None:
        if not self.calibration:
            return None
        path = Path(self.calibration)
        if not path.is_absolute() and self.base_dir:
            path = Path(self.base_dir) / path
        return path


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario YAML; relative ``model:`` / ``calibration:`` paths resolve against it."""
    path = Path(path)
    data = read_mapping(path)
    data.setdefault("base_dir", str(path.resolve().parent))
    return validate(Scenario, data, what=f"scenario {path}")
