"""Activation recomputation policies: which forward work is re-run in backward.

* ``none``: nothing.
* ``selective``: the attention core (QK^T, softmax, dropout, PV; Korthikanti et al. 2022
  Sec. 5). FlashAttention already recomputes it inside its backward kernel, so with it this
  policy re-runs nothing extra.
* ``full``: the whole layer forward (Chen et al. 2016; Korthikanti Sec. 4.3).
* ``op``: per-operator selective checkpointing as torchtitan applies it by default
  (torchtitan ``apply_ac`` with mode "selective", "op" granularity: the outputs of matmuls and
  attention are saved except every second matmul; everything else, norms, rotary,
  activations and adds, is recomputed).

Fused operators stand for several logical matmuls (QKV projection = q, k, v; gated MLP up =
gate and up), so a policy can recompute a fraction of one ``Op``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import ops as O
from .specs.model import ModelSpec


@dataclass(frozen=True)
class Matmul:
    """One logical matmul of a layer, in execution order."""

    op: str  # name of the Op that computes it
    share: float  # its share of that Op's FLOPs and output
    width: float  # output elements per token (before TP sharding)
    column_parallel: bool  # output sharded by TP (else a full-width partial sum)


def layer_matmuls(model: ModelSpec, moe_layer: bool) -> list[Matmul]:
    """The matmuls of one layer in the order a forward pass issues them."""
    h = model.hidden_size
    out: list[Matmul] = []
    if model.mla:
        m = model.mla
        if m.q_lora_rank:
            out.append(Matmul("attn.q_down", 1.0, m.q_lora_rank, False))
            out.append(Matmul("attn.q_up", 1.0, model.num_heads * m.qk_head_dim, True))
        else:
            out.append(Matmul("attn.q", 1.0, model.num_heads * m.qk_head_dim, True))
        out.append(Matmul("attn.kv_down", 1.0, m.kv_lora_rank + m.qk_rope_head_dim, False))
        out.append(Matmul("attn.kv_up", 1.0,
                          model.num_heads * (m.qk_nope_head_dim + m.v_head_dim), True))
    else:
        q, kv = model.num_heads * model.hd, model.kv_heads * model.hd
        total = q + 2 * kv
        out += [Matmul("attn.qkv", q / total, q, True), Matmul("attn.qkv", kv / total, kv, True),
                Matmul("attn.qkv", kv / total, kv, True)]
    out.append(Matmul("attn.out", 1.0, h, False))
    if moe_layer and model.moe:
        out.append(Matmul("moe.router", 1.0, model.moe.num_experts, False))
        out += _mlp_matmuls(model, "moe.expert", model.moe.expert_ffn_hidden_size
                            * model.moe.top_k)
        if model.moe.num_shared_experts:
            out += _mlp_matmuls(model, "moe.shared",
                                model.moe.num_shared_experts * model.moe.shared_ffn)
    else:
        out += _mlp_matmuls(model, "mlp", model.ffn_hidden_size)
    return out


def _mlp_matmuls(model: ModelSpec, prefix: str, ffn: float) -> list[Matmul]:
    h = model.hidden_size
    ups = [Matmul(f"{prefix}.up", 0.5, ffn, True), Matmul(f"{prefix}.up", 0.5, ffn, True)] \
        if model.gated_mlp else [Matmul(f"{prefix}.up", 1.0, ffn, True)]
    return [*ups, Matmul(f"{prefix}.down", 1.0, h, False)]


def op_policy_split(model: ModelSpec, moe_layer: bool) -> tuple[list[Matmul], list[Matmul]]:
    """(saved, recomputed) matmuls under the ``op`` policy: every second one is recomputed."""
    mms = layer_matmuls(model, moe_layer)
    return mms[0::2], mms[1::2]


def recomputed_ops(policy: str, fwd: list[O.Op], model: ModelSpec, moe_layer: bool,
                   flash: bool) -> list[O.Op]:
    """Forward operators re-run in backward under ``policy`` (model FLOPs excluded)."""
    if policy == "full":
        chosen = [(op, 1.0) for op in fwd]
    elif policy == "selective" and not flash:
        chosen = [(op, 1.0) for op in fwd if "attention" in op.tags]
    elif policy == "op":
        _, again = op_policy_split(model, moe_layer)
        share: dict[str, float] = {}
        for mm in again:
            share[mm.op] = share.get(mm.op, 0.0) + mm.share
        chosen = [(op, share.get(op.name, 0.0)) if op.cls == O.GEMM else (op, 1.0)
                  for op in fwd if op.cls != O.ATTENTION]
        chosen = [(op, f) for op, f in chosen if f > 0]
    else:
        return []
    return [replace(op, phase="recompute", name=op.name + ".recompute", model_flops=0.0,
                    flops=op.flops * f, bytes=op.bytes * f, vector_flops=op.vector_flops * f)
            for op, f in chosen]
