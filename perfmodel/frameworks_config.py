"""``training.framework`` of a scenario: which training stack runs the step, and the settings
a user may override (``framework: torchtitan`` or ``framework: {name: torchtitan, compile:
true, float8_recipe: rowwise}``). The facts behind each name live in ``frameworks/<id>.yaml``
(perfmodel/frameworks.py reads them); this module is only the schema, so the scenario can
import it without reading a file.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from .specs.common import Strict
from .specs.types import Bool

FRAMEWORK_NAMES = ("megatron-core", "torchtitan", "fsdp", "deepspeed", "nemo",
                   "megatron-deepspeed", "megatron-lm-2019", "fms-fsdp",
                   "megatron-lm-2021")
# other names people use for the same stack's facts
ALIASES = {"composer": "fsdp", "llm-foundry": "fsdp", "megatron": "megatron-core",
           "megatron-lm": "megatron-core"}

FrameworkName = Literal["megatron-core", "torchtitan", "fsdp", "composer", "llm-foundry",
                        "deepspeed", "nemo", "megatron", "megatron-lm", "megatron-deepspeed",
                        "megatron-lm-2019", "fms-fsdp", "megatron-lm-2021"]
AttentionBackend = Literal["te_fused", "fa3", "fa2", "sdpa_flash", "triton_flash",
                           "megatron_fused_softmax"]
Float8Recipe = Literal["tensorwise", "rowwise", "delayed", "blockwise"]
# context parallelism: ring P2P (Megatron / TE --cp-comm-type p2p), all-gather of K/V
# (torchtitan), all-to-all head re-partitioning (DeepSpeed-Ulysses; Megatron --cp-comm-type a2a)
CpImplementation = Literal["p2p_ring", "allgather", "a2a"]
# Megatron-Core's MoE token dispatchers (transformer_config.py moe_token_dispatcher_type
# 'allgather' / 'alltoall' / 'flex', the flex one with moe_flex_dispatcher_backend 'deepep' or
# 'hybridep'; moe/token_dispatcher.py, moe/fused_a2a.py); their facts: frameworks/<id>.yaml moe
MoeDispatcher = Literal["alltoall", "allgather", "flex-deepep", "flex-hybridep"]


class FrameworkConfig(Strict):
    """The framework and per-run overrides of its defaults (None: the framework's default)."""

    name: FrameworkName = "megatron-core"
    compile: Bool | None = None  # torch.compile of the layers (PyTorch-native stacks)
    cuda_graphs: Bool | None = None
    attention_backend: AttentionBackend | None = None
    float8_recipe: Float8Recipe | None = None  # used when training.precision is fp8
    cp_load_balance: Bool | None = None  # causal load balancing of context parallelism
    cp_implementation: CpImplementation | None = None  # how context parallelism communicates
    moe_dispatcher: MoeDispatcher | None = None  # MoE token dispatcher (None: the file's default)
    # a later commit of the framework (a key of the file's ``versions``), e.g. torchtitan 2025-06
    version: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_only(cls, data: Any) -> Any:
        """``framework: torchtitan`` is ``framework: {name: torchtitan}``."""
        if isinstance(data, str):
            return {"name": data}
        return data

    @property
    def canonical(self) -> str:
        """The id of the framework's data file (aliases resolved)."""
        return ALIASES.get(self.name, self.name)
