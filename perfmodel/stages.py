"""What one GPU holds: layers and parameters per pipeline stage under TP / PP / EP.

Megatron-LM layout (Narayanan et al. 2021 Sec. 2): layers split evenly over ``pp`` stages
(``vp`` chunks each when interleaved); the first stage also holds the (vocab-parallel) word
embedding, the last the final norm and LM head, which with tied embeddings and pp > 1 is a
second copy of the embedding. TP shards attention and MLP weights (Shoeybi et al. 2019
arXiv 1909.08053 Sec. 3); norms, MLA down-projections and routers are replicated; routed
experts are split over ``ep`` ranks and each expert over ``etp`` ranks. MoE layers are
assumed spread evenly over stages (leading dense layers are averaged in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .parameters import ParamCounts

Array = Any


@dataclass(frozen=True, repr=False, eq=False)  # holds arrays: no generated ==, repr
class StageParams:
    """Parameters on one GPU of the first and of the last pipeline stage."""

    first: Array
    last: Array
    dense_first: Array  # of which replicated over all data-parallel ranks (non-expert)
    dense_last: Array
    expert: Array  # routed-expert parameters on one GPU (same on every stage)

    @property
    def max(self) -> Array:
        import numpy as np

        return np.maximum(self.first, self.last)


def stage_params(pc: ParamCounts, tp: Array, pp: Array, ep: Array = 1, etp: Array = 1,
                 tied: bool = False, layers: Array | None = None) -> StageParams:
    """Parameters held by one GPU of the first and the last stage (``layers`` per stage:
    L/pp unless an uneven split puts more on the largest stage)."""
    layers = pc.num_layers / pp if layers is None else layers
    dense_frac = pc.num_dense_layers / pc.num_layers
    moe_frac = pc.num_moe_layers / pc.num_layers
    shared = pc.attention / tp + pc.attention_replicated + pc.layer_norms
    per_layer_dense = shared + dense_frac * pc.dense_mlp / tp + moe_frac * (
        pc.shared_experts / tp + pc.router + pc.moe_latent_proj)
    expert = layers * moe_frac * pc.num_experts / ep * pc.expert / etp
    # linear-attention / Mamba / mixer-less / MLP-less layers' difference, spread evenly
    # (layers reusing another's indexer: minus its replicated weights, not TP-split)
    sharded_adj = pc.linear_attention_adjustment - pc.indexer_adjustment
    body = layers * (per_layer_dense + sharded_adj / pc.num_layers / tp
                     + pc.indexer_adjustment / pc.num_layers)
    embed = pc.word_embedding / tp + pc.position_embedding + pc.embedding_norm
    head = pc.final_norm + (pc.word_embedding / tp if tied else pc.lm_head / tp)
    single = pp == 1
    # one stage holds both ends when pp == 1 (and a tied head then adds nothing)
    head_on_last = head - (pc.word_embedding / tp if tied else 0.0) * single
    dense_first = body + embed + single * head_on_last
    dense_last = body + head_on_last + single * embed
    return StageParams(first=dense_first + expert, last=dense_last + expert,
                       dense_first=dense_first, dense_last=dense_last, expert=expert)
