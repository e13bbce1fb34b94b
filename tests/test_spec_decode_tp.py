"""The draft model of speculative decoding runs at the engine's draft TP (QA 2026-12-03 (b)
item 3): the target's TP in vLLM (SpeculativeConfig._verify_and_get_draft_tp; V1's
DraftModelProposer raises on a mismatch), SGLang (the draft TpModelWorker shares server_args)
and TensorRT-LLM (the draft PyTorchModelEngine shares the Mapping): engines/*.yaml
``speculative``. Checked against hand calculations."""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.engines import get_engine
from perfmodel.inference import speculative_tokens_per_iteration
from perfmodel.parameters import param_counts
from perfmodel.zoo import resolve_model


def _scenario(model="llama-3-70b", tp=4, spec=None, engine="generic") -> pm.Scenario:
    inf = {"batch": 1, "prompt_len": 1024, "output_len": 256}
    if spec is not None:
        inf["speculative"] = spec
    return pm.as_scenario({"kind": "inference", "model": model, "engine": engine,
                           "system": {"device": "h100-sxm5-80gb", "num_gpus": 4},
                           "parallelism": {"tp": tp}, "inference": inf})


SPEC = {"draft_model": "llama-3-8b", "num_tokens": 4, "acceptance_rate": 0.7}


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_every_engine_runs_the_draft_at_the_target_tp(engine):
    facts = get_engine(engine).speculative
    assert facts.draft_tp == "target" and facts.draft_tp_for(4, None) == 4


def test_draft_memory_is_split_over_the_target_tp_by_hand():
    mem = pm.predict(_scenario(spec=SPEC)).breakdown["memory"]
    # llama-3-8b bf16 over 4 GPUs: 8.03e9 params x 2 B / 4, the RMSNorm weights (2 per layer
    # and the final one, 4,096 each) replicated on every GPU
    total = param_counts(resolve_model("llama-3-8b")).total
    norms = (32 * 2 + 1) * 4096
    assert mem["draft_weights"] == pytest.approx(((total - norms) / 4 + norms) * 2)
    assert mem["draft_weights"] / 2**30 == pytest.approx(3.74, abs=0.01)
    # KV of 1,280 tokens: 32 layers x 2 (K, V) x 8 / 4 KV heads x 128 x 2 B per token
    assert mem["draft_kv_cache"] == pytest.approx(1280 * 32 * 2 * 2 * 128 * 2)


def test_vllm_refuses_a_tp1_draft_beside_tp4_in_one_line():
    with pytest.raises(pm.PerfModelError) as err:
        pm.predict(_scenario(spec={**SPEC, "draft_tp": 1}, engine="vllm"))
    msg = str(err.value)
    assert "inference.speculative.draft_tp" in msg and "valid: [4]" in msg and "\n" not in msg


def test_draft_step_time_follows_its_tp():
    """TPOT = (k x draft step + verify) / E (Leviathan et al. eq. 1), the verify pass the same
    whatever the draft's TP: TPOT(draft tp 1) - TPOT(draft tp 4) = k (d1 - d4) / E, with d1 / d4
    the 8B model's own decode TPOT at tp 1 and tp 4 (same contexts)."""
    t4 = pm.predict(_scenario(spec=SPEC)).tpot_s
    t1 = pm.predict(_scenario(spec={**SPEC, "draft_tp": 1})).tpot_s
    d4 = pm.predict(_scenario("llama-3-8b", tp=4)).tpot_s
    d1 = pm.predict(_scenario("llama-3-8b", tp=1)).tpot_s
    e = speculative_tokens_per_iteration(4, 0.7)
    assert e == pytest.approx((1 - 0.7 ** 5) / 0.3)
    assert t1 - t4 == pytest.approx(4 * (d1 - d4) / e, rel=1e-6)
    assert d4 < d1 and t4 < t1


def test_a_draft_tp_above_the_target_is_refused():
    with pytest.raises(pm.PerfModelError, match=r"speculative\.draft_tp"):
        pm.predict(_scenario(tp=2, spec={**SPEC, "draft_tp": 4}))


def test_vllm_v0_runs_a_tp1_draft_beside_tp4():
    """V0's SmallerTpProposerWorker (vLLM < 0.8, and VLLM_USE_V1=0 until 0.11) runs a TP-1
    draft on rank 0; V1 refuses it (test above)."""
    facts = get_engine("vllm", "0.7.0").speculative
    assert facts.draft_tp_for(4, 1) == 1 and facts.draft_tp_for(4, None) == 4
    with pytest.raises(pm.PerfModelError, match="valid: \\[1, 4\\]"):
        facts.draft_tp_for(4, 2)

    def tpot(draft_tp):
        spec = {**SPEC, **({"draft_tp": draft_tp} if draft_tp else {})}
        return pm.predict(pm.as_scenario({
            "kind": "inference", "model": "llama-3-70b",
            "engine": {"name": "vllm", "version": "0.7.0"},
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 4}, "parallelism": {"tp": 4},
            "inference": {"batch": 1, "prompt_len": 1024, "output_len": 256,
                          "speculative": spec}})).tpot_s

    assert tpot(1) > tpot(None)  # the unsharded 8B draft step is the slower one at batch 1
