"""Which attention cores read a kind's own curve (roofline.attention_kind, Op.attention_kind):
MLA's decompressed inference prefill core reads prefill_mla; DSA's MQA mode past its top-k
(FlashMLA's sparse kernel) and training's forward cores (FlashAttention-3 / cuDNN, phase "fwd")
do not, as the context-MLA tables time TensorRT-LLM's inference kernel only."""
from pathlib import Path

import perfmodel as pm
from perfmodel import ops as O
from perfmodel.roofline import MLA, attention_kind
from perfmodel.zoo.hf import load_hf_config

V32 = Path(__file__).parent / "data/hf_configs/aiconfigurator-0.12.0/deepseek-ai--DeepSeek-V3.2_config.json"


def _core(q: float, kv: float, phase: str = "prefill") -> O.Op:
    model = load_hf_config(V32)
    prec = O.Precision(weight=1.0, act=2.0, kv=2.0, compute="bf16")
    ops = O.mixer_ops(model, True, 1.0, q, kv, O.attention_pairs(q, kv), O.Shard(tp=1), prec,
                      True, phase)
    return next(op for op in ops if op.name == "attn.core")


def test_dsa_within_its_top_k_is_mla_prefill_and_past_it_is_not():
    # index_topk 2048: a 2048-token prompt attends every key (dense MHA, MLA's prefill kernel);
    # 1024 queries after a 16384-token prefix run the MQA-mode sparse kernel
    assert attention_kind(_core(2048.0, 2048.0)) == MLA
    assert attention_kind(_core(1024.0, 17408.0)) == ""


def test_a_training_forward_core_keeps_the_prefill_curve():
    sc = {"kind": "training", "model": "deepseek-v3",
          "system": {"device": "h100-sxm5-80gb", "num_gpus": 256},
          "parallelism": {"tp": 2, "pp": 8, "ep": 32, "etp": 1, "uneven_pipeline": True},
          "training": {"global_batch": 512, "micro_batch": 1, "seq_len": 4096,
                       "recompute": "full"}}
    cores = {op.name: op for op in pm.predict(sc).ops if op.name.startswith("attn.core")}
    assert cores["attn.core"].phase == "fwd"
    assert cores["attn.core"].timed_by == ("attention.prefill", "curve")
    assert cores["attn.core.recompute"].timed_by == ("attention.prefill", "curve")


def test_an_inference_prefill_core_of_deepseek_reads_its_mla_curve():
    sc = {"kind": "inference", "model": "deepseek-v3", "engine": "sglang",
          "system": {"device": "h200-sxm-141gb", "num_gpus": 8}, "parallelism": {"tp": 8},
          "inference": {"batch": 1, "prompt_len": 4096, "output_len": 2}}
    core = next(op for op in pm.predict(sc).ops if op.name == "attn.core"
                and op.phase == "prefill")
    assert core.timed_by[0] in ("attention.prefill_mla", "attention.prefill_mla_fp8")
