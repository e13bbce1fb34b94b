"""TensorRT-LLM's PyTorch backend runs two of perfmodel's per-layer kernels inside others
(engines/trtllm.yaml kernels): with TP > 1 and no attention DP the residual add + RMSNorm run
inside the TP all-reduce kernel (modeling_gpt_oss.py forward_tp, AllReduceFusionOp
RESIDUAL_RMS_NORM) while the message is below the custom all-reduce's workspace (8 MB at
TP > 2; above it the NCCL path runs them after it: allreduceOp.cpp fallbackRunSubsequentOps);
and the attention op applies RoPE itself (modules/attention.py rope_fusion defaults to the
backend's support_fused_rope(), True for TrtllmAttention). Hand counts for gpt-oss-120b (36
layers, hidden 2880)."""

from __future__ import annotations

import perfmodel as pm
from perfmodel.paths import data_dir

GPT_OSS = "tests/data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json"
LAYERS, HIDDEN = 36, 2880


def _calls(tp: int, batch: int, engine: str = "trtllm", prompt: int = 1024,
           system: dict | None = None) -> dict:
    path = str(data_dir("calibration").parent / GPT_OSS)
    sc = pm.Scenario(kind="inference", model=path, engine=engine,
                     system=system or {"device": "b200", "num_gpus": tp},
                     parallelism={"tp": tp},
                     inference=dict(batch=batch, prompt_len=prompt, output_len=128))
    out: dict = {}
    for op in pm.predict(sc).ops:
        out[(op.phase, op.name)] = out.get((op.phase, op.name), 0.0) + op.calls
    return out


def test_tp4_decode_has_no_residual_norm_or_rope_kernels():
    calls = _calls(tp=4, batch=4)
    for name in ("attn.residual_norm", "mlp.residual_norm", "attn.rope"):
        assert calls.get(("decode", name), 0.0) == 0.0
    # the first layer's input norm has no add before it: it stays a kernel of its own
    assert calls[("decode", "embed.input_norm")] == 1.0


def test_tp1_keeps_the_fused_add_norm_kernels_but_not_rope():
    calls = _calls(tp=1, batch=4)
    # no TP all-reduce to fuse into: flashinfer_fused_add_rmsnorm, one per add (2 per layer)
    assert calls[("decode", "attn.residual_norm")] == LAYERS
    assert calls[("decode", "mlp.residual_norm")] == LAYERS
    assert calls.get(("decode", "attn.rope"), 0.0) == 0.0


def test_a_prefill_above_the_workspace_runs_the_norms_after_nccl():
    # 8,192 tokens x 2,880 x 2 B = 47.2 MB > 8 MB at TP 4: NCCL, then the norm kernels;
    # the 4 x 1,024-token prefill (23.6 MB) too; a 1,024-token one (5.9 MB) fuses
    big = _calls(tp=4, batch=1, prompt=8192)
    assert big[("prefill", "attn.residual_norm")] == LAYERS
    small = _calls(tp=4, batch=1, prompt=1024)
    assert small.get(("prefill", "attn.residual_norm"), 0.0) == 0.0


def test_other_engines_keep_both_kernels():
    # SGLang from 0.5.12 fuses the add + norm into its FlashInfer all-reduce for gpt-oss
    # (engines/versions/sglang-0.5.12.yaml; tests/test_engine_versions_sglang_new.py): 0.5.11 here
    for engine in ("vllm", {"name": "sglang", "version": "0.5.11"}):
        calls = _calls(tp=4, batch=4, engine=engine)
        assert calls[("decode", "attn.residual_norm")] == LAYERS
        assert calls[("decode", "attn.rope")] == LAYERS


def test_no_fusion_where_the_all_reduce_is_nccls():
    """The fusion lives in TensorRT-LLM's own all-reduce kernel, which runs only inside one
    node's NVLink domain (engine_comm.custom_eligible: one node, fully NVLinked): on PCIe GPUs
    (4 x L40S) or a TP group split over two nodes NCCL all-reduces and the add + norm run as a
    kernel after it (review 12-05: the first version skipped those two conditions)."""
    pcie = _calls(tp=4, batch=4, system={"device": "l40s", "num_gpus": 4})
    assert pcie[("decode", "attn.residual_norm")] == LAYERS
    split = _calls(tp=16, batch=4, system={"device": "b200", "num_gpus": 16, "gpus_per_node": 8})
    assert split[("decode", "attn.residual_norm")] == LAYERS
