"""Per-tensor weight formats (perfmodel.formats, perfmodel.zoo.hf_quant), fp8 GEMMs on fp8
tensor cores, and the GEMM-curve fallback of the block-scaled formats (profile.gemm_key / fallback_key)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import perfmodel as pm
from perfmodel import ops as O
from perfmodel.engine_memory import for_scenario
from perfmodel.errors import SpecError
from perfmodel.formats import model_weight_bytes, op_weight_class
from perfmodel.parameters import param_counts
from perfmodel.profile import CalibrationProfile
from perfmodel.resolve import resolve
from perfmodel.specs.common import validate
from perfmodel.specs.model import ModelSpec
from perfmodel.specs.scenario import Scenario
from perfmodel.zoo import resolve_model
from perfmodel.zoo.hf_quant import checkpoint_formats

GIB = 2 ** 30
HF = Path(__file__).parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"
CAL = Path(__file__).parent.parent / "calibration"
MXFP4 = (32 * 4 + 8) / 32 / 8  # OCP MX v1.0 Table 1: 4.25 bits per element


def _tiny() -> ModelSpec:
    return ModelSpec(id="tiny", name="tiny", num_layers=2, hidden_size=64, num_heads=4,
                     ffn_hidden_size=128, vocab_size=1000, gated_mlp=True, activation="silu",
                     norm="rmsnorm")


def test_memory_by_hand_each_class_at_its_dtype():
    # per layer: attention 64 x (64 + 2 x 64) + 64 x 64 = 16384; gated MLP 3 x 64 x 128 =
    # 24576; two RMSNorms 2 x 64. Embedding and untied LM head 1000 x 64 each; final norm 64.
    formats = {"attention": "bf16", "embeddings": "bf16", "lm_head": "bf16"}
    by_hand = (2 * 16384 * 2 + 2 * 24576 * 1 + 2 * 128 * 1  # norms follow the default (fp8)
               + 64000 * 2 + 64000 * 2 + 64 * 1)
    assert model_weight_bytes(param_counts(_tiny()), "fp8", formats) == by_hand
    # one name = every tensor at it (today's behaviour)
    assert model_weight_bytes(param_counts(_tiny()), "fp8") == param_counts(_tiny()).total


def test_scenario_memory_uses_the_mapping():
    model = _tiny().model_dump()
    base = dict(kind="inference", model=model, system={"device": "h100-sxm5-80gb"})
    mixed = pm.predict(Scenario(**base, inference={
        "prompt_len": 8, "weight_dtype": {"default": "fp8", "attention": "bf16",
                                          "embeddings": "bf16", "lm_head": "bf16"}}))
    # every class at fp8, the ends named (a plain fp8 keeps them bf16: formats.KEPT_16BIT)
    one = pm.predict(Scenario(**base, inference={"prompt_len": 8, "weight_dtype": {
        "default": "fp8", "embeddings": "fp8", "lm_head": "fp8"}}))
    assert mixed.breakdown["memory"]["weights"] == pytest.approx(
        one.breakdown["memory"]["weights"] + 2 * 16384 + 128000)


def test_gpt_oss_checkpoint_size_matches_the_model_card():
    # OpenAI, "gpt-oss-120b & gpt-oss-20b Model Card" (arXiv 2508.10925), Table 1: checkpoint
    # 60.8 GiB (120b) and 12.8 GiB (20b): MXFP4 MoE weights, everything else bf16
    for name, published in (("openai--gpt-oss-120b", 60.8), ("openai--gpt-oss-20b", 12.8)):
        model = resolve_model(str(HF / f"{name}_config.json"))
        pc = param_counts(model)
        mixed = model_weight_bytes(pc, model.checkpoint_formats["default"],
                                   {k: v for k, v in model.checkpoint_formats.items()
                                    if k != "default"}) / GIB
        assert mixed == pytest.approx(published, rel=0.01)
        assert abs(model_weight_bytes(pc, "mxfp4") / GIB / published - 1) > 0.04
    assert pytest.approx(0.53125) == MXFP4


def test_llama_405b_fp8_weights_per_gpu():
    # Llama 3 paper (arXiv 2407.21783) Sec. 6.2: FP8 in the feed-forward layers only, not the
    # self-attention ones (nor the first and last blocks); vLLM issue #6746: "Loading model
    # weights took 57.7520 GB" (GiB) per GPU, TP 8 on 8 x H100
    def weights(wd) -> float:
        sc = Scenario(kind="inference", model="llama-3.1-405b",
                      system={"device": "h100-sxm5-80gb", "num_gpus": 8}, parallelism={"tp": 8},
                      engine={"name": "vllm"},
                      inference={"batch": 1, "prompt_len": 1, "output_len": 1,
                                 "weight_dtype": wd})
        rs = resolve(sc)
        return for_scenario(rs.scenario, rs.system, rs.profile).weights_bytes / GIB

    mixed = weights({"default": "fp8", "attention": "bf16", "embeddings": "bf16",
                     "lm_head": "bf16"})
    assert mixed == pytest.approx(57.752, rel=0.05)
    assert weights("fp8") < 0.85 * 57.752  # all fp8: the -18 % miss


def test_each_gemm_reads_its_own_weight_dtype():
    prec = O.Precision.inference("fp8", "bf16", "bf16", formats=(("attention", "bf16"),),
                                 fp8_gemm=True)
    qkv = O.gemm("attn.qkv", 1, 64, 64, prec)
    up = O.gemm("mlp.up", 1, 64, 64, prec)
    assert qkv.bytes == 64 * 2 + 64 * 64 * 2 + 64 * 2 and qkv.dtype == "bf16"
    assert up.bytes == 64 * 2 + 64 * 64 * 1 + 64 * 2 and up.dtype == "fp8"
    assert op_weight_class("moe.expert.up") == "experts"
    assert op_weight_class("attn.kv_down") == "mla"
    assert op_weight_class("head.lm") == "lm_head"


def test_weight_only_fp8_without_fp8_tensor_cores_dequantises():
    # vLLM Fp8LinearMethod: Marlin W8A16 only on GPUs below SM 8.9 (no fp8 hardware)
    a100 = O.Precision.inference("fp8", "bf16", "bf16", fp8_gemm=False)
    h100 = O.Precision.inference("fp8", "bf16", "bf16", fp8_gemm=True)
    assert a100.compute == "bf16" and a100.weight_dequant
    assert h100.compute == "fp8" and not h100.weight_dequant
    # DeepSeek-style block-scaled weights with fp8 activations run the block-scaled kernel
    block = O.Precision.inference("fp8_block", "fp8", "bf16", fp8_gemm=True)
    assert block.compute == "fp8_block" and not block.weight_dequant


@pytest.mark.parametrize("bad, needle", [
    ({"default": "fp8", "attn": "bf16"}, "unknown tensor class 'attn'; valid: default, attention"),
    ({"default": "fp8", "experts": "fp5"}, "inference.weight_dtype.experts: unknown dtype 'fp5'"),
])
def test_mapping_errors_are_one_line(bad, needle):
    with pytest.raises(SpecError) as err:
        validate(Scenario, dict(kind="inference", model="llama-3-8b",
                                system={"device": "h100-sxm5-80gb"},
                                inference={"prompt_len": 8, "weight_dtype": bad}))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_hf_quantization_config_gives_per_class_formats():
    def fmt(name):
        return checkpoint_formats(json.loads((HF / name).read_text()))

    assert fmt("openai--gpt-oss-120b_config.json") == {
        "default": "mxfp4", "attention": "bf16", "router": "bf16", "embeddings": "bf16",
        "lm_head": "bf16"}
    assert fmt("deepseek-ai--DeepSeek-V3_config.json")["default"] == "fp8_block"
    # Qwen3-FP8 lists its layernorms ("post_attention_layernorm"): not the attention class
    qwen = fmt("Qwen--Qwen3-235B-A22B-FP8_config.json")
    assert qwen["default"] == "fp8_block" and "attention" not in qwen
    assert fmt("nvidia--Llama-3.1-70B-Instruct-FP8_hf_quant_config.json")["default"] == "fp8"
    assert fmt("meta-llama--Meta-Llama-3.1-405B_config.json") is None


def test_scenario_takes_the_checkpoint_formats_unless_it_sets_weight_dtype():
    path = str(HF / "openai--gpt-oss-120b_config.json")
    base = dict(kind="inference", model=path, system={"device": "h100-sxm5-80gb"})
    own = Scenario(**base, inference={"prompt_len": 8})
    assert own.inference.weight_dtype == "mxfp4"
    assert own.inference.weight_formats["attention"] == "bf16"
    forced = Scenario(**base, inference={"prompt_len": 8, "weight_dtype": "mxfp4"})
    # every linear layer mxfp4, router, embeddings and LM head bf16 (formats.KEPT_16BIT)
    assert forced.inference.weight_formats == {"router": "bf16", "embeddings": "bf16",
                                                 "lm_head": "bf16"}


def _decode_s(model: str, batch: int, tp: int, wd: str, ad: str) -> float:
    sc = Scenario(kind="inference", model=model,
                  system={"device": "h100-sxm5-80gb", "num_gpus": tp}, parallelism={"tp": tp},
                  inference={"batch": batch, "prompt_len": 256, "output_len": 64,
                             "weight_dtype": wd,
                             **({"activation_dtype": ad} if ad else {})})
    return pm.predict(sc).tpot_s


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(["llama-3-8b", "llama-3-70b", "llama-2-13b"]),
       batch=st.sampled_from([1, 4, 32, 128]), tp=st.sampled_from([2, 4, 8]))
def test_w8a8_never_decodes_slower_than_weight_only_fp8_on_h100(model, batch, tp):
    w8a8 = _decode_s(model, batch, tp, "fp8", "fp8")
    weight_only = _decode_s(model, batch, tp, "fp8", None)  # activations left to the engine
    assert w8a8 <= weight_only * (1 + 1e-9)


def test_block_scaled_gemm_fallback_rule():
    def load_profile(name: str) -> CalibrationProfile:
        return CalibrationProfile.model_validate_json((CAL / name).read_text())

    prof = load_profile("b200.reference.json")
    assert {"nvfp4", "fp8_block", "fp8", "bf16"} <= set(prof.gemm)
    assert {"nvfp4", "fp8_block"} <= set(prof.moe)
    for dev in ("h100-sxm5-80gb", "h200-sxm-141gb"):
        hopper = load_profile(f"{dev}.reference.json")
        assert "fp8_block" in hopper.gemm and "gemm.fp8_block" in {e.table for e in hopper.fit_errors}
        # TRT-LLM's Hopper fp8_block MoE table (CUTLASS) serves TRT-LLM / generic experts; an
        # engine running DeepGEMM there reads the per-tensor fp8 proxy (profile.moe_table)
        assert hopper.moe_kernel["fp8_block"] == "trtllm_cutlass"
        assert hopper.moe_curve("fp8_block") is hopper.moe["fp8_block"]
        assert hopper.moe_curve("fp8_block", "", ("deepgemm",), "fp8") is hopper.moe["fp8"]
    m, n, k = np.array([1.0, 64, 4096]), 8192.0, 8192.0
    only_fp8 = prof.model_copy(update={"gemm": {"fp8": prof.gemm["fp8"]}})
    for dtype in ("nvfp4", "mxfp4", "fp8_block"):  # nearest measured format: fp8
        np.testing.assert_array_equal(only_fp8.gemm_efficiency(dtype, m, n, k),
                                      prof.gemm["fp8"](m, n, k))
    both = prof.model_copy(update={"gemm": {k: prof.gemm[k] for k in ("fp8", "fp8_block")}})
    np.testing.assert_array_equal(both.gemm_efficiency("nvfp4", m, n, k),
                                  prof.gemm["fp8"](m, n, k))  # fp8 before fp8_block
    none = prof.model_copy(update={"gemm": {"bf16": prof.gemm["bf16"]}})
    assert np.all(none.gemm_efficiency("nvfp4", m, n, k) == prof.defaults.gemm)
    assert isinstance(prof, CalibrationProfile)


def test_exclusion_patterns_are_read_by_the_module_they_name():
    """ModelOpt exclude_modules / compressed-tensors ignore lists, by the module each pattern
    names (hand-read from the copied files): the MoE router is a bare ``gate`` module
    (``mlp.gate``, ``block_sparse_moe.gate``) or ``router``, never a dense MLP's ``gate_proj``;
    a regex (``re:``) names its modules with escaped dots."""
    from perfmodel.zoo.hf_quant import _module_class

    def fmt(name):
        return checkpoint_formats(json.loads((HF / name).read_text()))

    # Qwen3-235B-A22B-NVFP4: 'lm_head' and 'model.layers.<i>.mlp.gate' in all 94 layers; the
    # hf_quant_config.json has no shapes, so the class comes from the module name alone
    assert fmt("nvidia--Qwen3-235B-A22B-NVFP4_hf_quant_config.json") == {
        "default": "nvfp4", "router": "bf16", "embeddings": "bf16", "lm_head": "bf16"}
    # MiniMax-M2.5: 'model.layers.<i>.block_sparse_moe.gate' and '...self_attn*'
    mm = fmt("nvidia--MiniMax-M2.5-NVFP4_hf_quant_config.json")
    assert mm["router"] == mm["attention"] == "bf16" and "mlp" not in mm
    # Gemma-4-26B-A4B: '...layers.<i>.router*' beside '...mlp*' (its dense MLP)
    gemma = fmt("nvidia--Gemma-4-26B-A4B-NVFP4_hf_quant_config.json")
    assert gemma["router"] == gemma["mlp"] == gemma["attention"] == "bf16"
    # Kimi-K2.5 (compressed-tensors): 're:.*mlp\.(gate|up|gate_up|down)_proj.*' is the dense MLP
    kimi = fmt("moonshotai--Kimi-K2.5_config.json")
    assert kimi["mlp"] == "bf16" and "router" not in kimi
    # DeepSeek-V3.1-NVFP4 lists the MLA projections only: experts, router stay nvfp4 here
    ds = fmt("nvidia--DeepSeek-V3.1-NVFP4_hf_quant_config.json")
    assert ds["mla"] == ds["attention"] == "bf16" and "router" not in ds
    for name, cls in [("*.mlp.gate", "router"), ("model.layers.3.mlp.gate", "router"),
                      ("model.layers.*.mlp.router", "router"), ("*self_attn*", "attention"),
                      ("model.layers.0.mlp.gate_proj", "mlp"), ("lm_head", "lm_head"),
                      ("model.layers.1.mlp.shared_expert_gate", "router"),
                      ("model.layers.1.mlp.shared_experts.gate_proj", "shared_experts"),
                      ("patch_merge_mlp", None), ("backbone.layers.3.mixer.gate", "router")]:
        assert _module_class(name) == cls, name


def test_engines_build_the_router_in_bf16_whatever_the_checkpoint():
    """vLLM / SGLang / TensorRT-LLM build the DeepSeek-V3 gate unquantised
    (engines/<id>.yaml moe.router_dtype): an nvfp4 checkpoint's router holds 2 bytes per
    parameter there; the generic engine keeps the checkpoint's format."""
    from perfmodel.formats import engine_weight_formats, weight_byte_counts

    fm = (("lm_head", "bf16"), ("mla", "bf16"))
    for engine in ("vllm", "sglang", "trtllm"):
        assert dict(engine_weight_formats(fm, "nvfp4", engine))["router"] == "bf16"
    assert engine_weight_formats(fm, "nvfp4", "generic") == fm
    assert engine_weight_formats(fm, "nvfp4", "llamacpp") == fm  # no such fact in its file
    # a bf16 checkpoint: nothing to override (an explicit router format is dropped)
    assert engine_weight_formats((("router", "fp8"),), "bf16", "vllm") == ()
    pc = param_counts(resolve_model("deepseek-v3"))
    # DeepSeek-V3 router of one MoE layer: 256 experts x 7168 (+ the 256 correction biases)
    assert pc.router == 256 * (7168 + 1)
    by = weight_byte_counts(pc, "nvfp4", dict(engine_weight_formats(fm, "nvfp4", "sglang")))
    assert by.router == pytest.approx(2.0 * pc.router)
    sc = Scenario(kind="inference", model="deepseek-v3", engine="sglang",
                  system={"device": "b200", "num_gpus": 8}, parallelism={"tp": 8, "ep": 8},
                  inference={"prompt_len": 8, "weight_dtype": "nvfp4", "activation_dtype": "nvfp4"})
    from perfmodel.resolve import inference_plan

    # a plain nvfp4 keeps the router bf16 (formats.KEPT_16BIT); a checkpoint naming it nvfp4
    # keeps it on the generic engine, the engines build it bf16 whatever it says
    named = sc.inference.model_copy(update={"weight_formats": {
        **sc.inference.weight_formats, "router": "nvfp4"}})
    for inf, engine, router in ((sc.inference, "sglang", "bf16"), (sc.inference, "generic", "bf16"),
                                (named, "sglang", "bf16"), (named, "generic", "nvfp4")):
        plan = inference_plan(sc.model, sc.parallelism, inf, 8, engine=engine)
        assert dict(plan.weight_formats).get("router") == router


def test_one_list_of_tensor_core_weight_formats():
    """The engines' rule formats are the formats whose activation the rules name (one list:
    engines.RULE_FORMATS; formats.RULE_ACTIVATION keys them)."""
    from perfmodel.engines import RULE_FORMATS
    from perfmodel.formats import RULE_ACTIVATION

    assert set(RULE_ACTIVATION) == set(RULE_FORMATS)
