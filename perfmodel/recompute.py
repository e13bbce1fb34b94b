"""Activation recomputation policies: which forward work is re-run in backward.

* ``none``: nothing.
* ``selective``: the attention core (QK^T, softmax, dropout, PV; Korthikanti et al. 2022
  Sec. 5). FlashAttention already recomputes it inside its backward kernel, so with it this
  policy re-runs nothing extra.
* ``full``: the whole layer forward (Chen et al. 2016; Korthikanti Sec. 4.3).
* ``selective`` with ``recompute_modules`` (Megatron-Core ``recompute_granularity:
  selective`` + ``recompute_modules``, transformer_config.py; default ``[core_attn]``): the
  listed submodules, ``MODULES`` (layernorm: the input and pre-MLP norms; moe_act: the routed
  experts' activation; mla_up_proj: MLA's q / kv up projections and rope; mlp: a dense
  layer's MLP; shared_experts: the shared experts' MLP; core_attn: the attention core).
* ``op``: per-operator selective checkpointing as torchtitan applies it by default
  (torchtitan ``apply_ac`` with mode "selective", "op" granularity: the outputs of matmuls and
  attention are saved except every second matmul; everything else, norms, rotary,
  activations and adds, is recomputed).

Fused operators stand for several logical matmuls (QKV projection = q, k, v; gated MLP up =
gate and up), so a policy can recompute a fraction of one ``Op``.
"""

from __future__ import annotations

from dataclasses import replace

from . import ops as O
from .frameworks_costs import MOE_ACT_CLAMP
from .specs.model import ModelSpec


def op_policy_split(model: ModelSpec, moe_layer: bool
                    ) -> tuple[list[tuple[str, O.Matmul]], list[tuple[str, O.Matmul]]]:
    """(saved, recomputed) (GEMM name, matmul) pairs under the ``op`` policy: every second
    logical matmul of the layer (``ops.layer_matmuls``) is recomputed."""
    mms = O.layer_matmuls(model, moe_layer)
    return mms[0::2], mms[1::2]


# Megatron-Core recompute_modules (transformer_config.py) -> the forward operators they re-run
MODULES = {
    "core_attn": lambda op: op.attention_core,
    "layernorm": lambda op: op.name in ("attn.norm", "mlp.norm"),
    # the expert activation, with the framework's eager clamp ahead of it where it runs one
    # (Megatron-Core TEGroupedMLP checkpoints bias_act_func, clamp included)
    "moe_act": lambda op: op.name in ("moe.expert.act", MOE_ACT_CLAMP),
    "mla_up_proj": lambda op: op.name in ("attn.q_up", "attn.kv_up", "attn.rope"),
    "mlp": lambda op: op.name.startswith("mlp.") and op.name not in ("mlp.norm",
                                                                       "mlp.residual"),
    "shared_experts": lambda op: op.name.startswith("moe.shared."),
}


def recomputed_ops(policy: str, fwd: list[O.Op], model: ModelSpec, moe_layer: bool,
                   flash: bool, modules: tuple[str, ...] | None = None) -> list[O.Op]:
    """Forward operators re-run in backward under ``policy`` (model FLOPs excluded);
    ``modules``: the selective policy's Megatron-Core recompute_modules (None: core_attn)."""
    if policy == "full":
        chosen = [(op, 1.0) for op in fwd]
    elif policy == "selective" and modules:
        chosen = [(op, 1.0) for op in fwd
                  if any(MODULES[m](op) for m in modules
                         if not (m == "core_attn" and flash))]
    elif policy == "selective" and not flash:
        chosen = [(op, 1.0) for op in fwd if op.attention_core]
    elif policy == "op":
        _, again = op_policy_split(model, moe_layer)
        share: dict[str, float] = {}
        for name, mm in again:
            share[name] = share.get(name, 0.0) + mm.share
        chosen = [(op, share.get(op.name, 0.0)) if op.cls == O.GEMM else (op, 1.0)
                  for op in fwd if op.cls != O.ATTENTION]
        chosen = [(op, f) for op, f in chosen if f > 0]
    else:
        return []
    return [replace(op, phase="recompute", name=op.name + ".recompute", model_flops=0.0,
                    flops=op.flops * f, bytes=op.bytes * f, vector_flops=op.vector_flops * f)
            for op, f in chosen]
