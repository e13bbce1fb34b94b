"""Serving engines as data (engines/*.yaml, perfmodel.engines) and their start-up memory rules
(perfmodel.engine_memory): schema errors, hand calculations, published figures, invariants."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.api import as_scenario, predict
from perfmodel.engine_memory import (
    EngineShape,
    allreduce_outputs_bytes,
    engine_memory,
    profile_activation_bytes,
    sglang_default_fraction,
)
from perfmodel.engines import ENGINE_IDS, EngineSpec, families, get_engine, version_key
from perfmodel.errors import PerfModelError, SpecError
from perfmodel.specs.common import validate
from perfmodel.specs.registry import get_device, get_model, read_mapping
from perfmodel.specs.scenario import EngineConfig

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
H100 = get_device("h100-sxm5-80gb")
LLAMA3_8B = get_model("llama-3-8b")


def _mem(engine="vllm", device=H100, model=LLAMA3_8B, tp=1, ctx=0.7, shape=None, **cfg):
    spec = get_engine(engine, cfg.get("version"), cfg.get("variant"))
    return engine_memory(model, device, shape or EngineShape(tp=tp), spec,
                         EngineConfig(name=engine, **cfg), ctx)


# ---- engine files --------------------------------------------------------------------------

@pytest.mark.parametrize("engine_id", ENGINE_IDS)
def test_every_engine_file_loads_with_its_sources(engine_id):
    spec = get_engine(engine_id)
    assert spec.id == engine_id and spec.sources and spec.field_sources


def test_an_unsourced_number_in_an_engine_file_is_refused():
    data = read_mapping(ROOT / "engines" / "vllm.yaml")
    data["field_sources"] = {k: v for k, v in data["field_sources"].items()
                             if "block_size" not in k}
    with pytest.raises(SpecError, match=r"no source for.*memory\.block_size"):
        validate(EngineSpec, data)


def test_a_field_source_naming_an_unknown_source_is_refused():
    data = read_mapping(ROOT / "engines" / "vllm.yaml")
    data["field_sources"]["memory.block_size"] = ["nowhere"]
    with pytest.raises(SpecError, match="nowhere"):
        validate(EngineSpec, data)


def test_unknown_engine_id_suggests_the_known_ones():
    with pytest.raises(SpecError, match=r"unknown engine 'vlm'.*vllm"):
        get_engine("vlm")


# ---- scenario field ------------------------------------------------------------------------

BASE = dict(kind="inference", model="llama-3-8b", system={"device": "h100-sxm5-80gb"},
            inference={"prompt_len": 128})


@pytest.mark.parametrize("engine, message", [
    ("vlm", "engine.name: must be one of"),
    ({"name": "sglang", "gpu_memory_utilization": 0.8}, "gpu_memory_utilization is vllm's"),
    ({"name": "llamacpp", "mem_fraction_static": 0.8}, "has no memory fraction"),
    ({"name": "generic", "max_num_seqs": 8}, "generic engine has no max_num_seqs"),
    ({"name": "vllm", "gpu_memory_utilization": 1.2}, "gpu_memory_utilization: must be <= 1"),
    ({"name": "vllm", "max_num_seqs": 0}, "max_num_seqs: must be >= 1"),
    ({"name": "vllm", "gpu_util": 0.9}, "engine.gpu_util: unknown field"),
])
def test_bad_engine_sections_fail_with_one_line_naming_the_field(engine, message):
    with pytest.raises(PerfModelError, match=message) as err:
        as_scenario({**BASE, "engine": engine})
    assert "\n" not in str(err.value)


def test_training_scenarios_refuse_an_inference_engine():
    sc = {"kind": "training", "model": "llama-3-8b", "system": {"device": "h100-sxm5-80gb"},
          "training": {"seq_len": 2048, "global_batch": 8}, "engine": "vllm"}
    with pytest.raises(SpecError, match="training scenario does not use it"):
        as_scenario(sc)


def test_bare_name_and_mapping_are_the_same_engine():
    a = as_scenario({**BASE, "engine": "sglang"}).engine
    b = as_scenario({**BASE, "engine": {"name": "sglang"}}).engine
    assert a == b and a.name == "sglang"


def test_generic_engine_leaves_the_prediction_as_it_was():
    plain = predict(as_scenario(BASE))
    generic = predict(as_scenario({**BASE, "engine": "generic"}))
    assert plain.engine is None and plain.to_json_dict() == generic.to_json_dict()


# ---- vLLM: hand calculation and published figures -------------------------------------------

def test_vllm_budget_for_llama3_8b_on_one_h100_by_hand():
    """KV = 0.9 x 79.22 GiB - weights - activation peak - non-torch (vllm/v1/worker/gpu_worker.py,
    vllm/utils/mem_utils.py), every term counted by hand; the 0.14 family (0.14.0 - 0.19.x: no
    CUDA-graph estimate; 0.20+: tests/test_engine_versions_vllm_new.py)."""
    e = _mem(version="0.19.1")
    weights = 8_030_261_248 * 2  # Llama-3-8B parameters (model card) in bf16
    forward = 8192 * (4 * 4096 + 2 * 3 * 14336 + 2 * (32 + 2 * 8) * 128)  # widest step, 8192 tok
    # logits of max_num_seqs rows through the native top-k/top-p sampler, peak inside
    # logits.sort: bf16 2 + fp32 4 + sorted 4 + int64 indices 8 + reverse-index iota 8 + CUB's
    # alternate key / value buffers 4 + 8 bytes (28 later, at the scatter)
    sampler = min(1024, 8192) * 128256 * (2 + 4 + 4 + 8 + 8 + 4 + 8)
    hidden = 8192 * 4096 * 2  # the forward's output, alive while the sampler runs
    peak = max(forward, hidden + sampler)  # the sampler runs after the forward's intermediates
    kv = 0.9 * 79.22 * GIB - weights - peak - 0.04 * GIB  # non-torch at TP 1
    per_token = 2 * 8 * 128 * 2 * 32  # K and V, 8 KV heads x 128, bf16, 32 layers
    assert e.weights_bytes == pytest.approx(weights, rel=1e-9)
    assert e.activation_peak_bytes == pytest.approx(peak, rel=1e-9)
    assert e.kv_cache_bytes == pytest.approx(kv, rel=1e-9)
    assert e.kv_cache_blocks == int(kv // (per_token * 16))
    assert e.kv_cache_tokens == e.kv_cache_blocks * 16
    assert e.max_concurrency == pytest.approx(e.kv_cache_tokens / 8192)  # max_model_len 8192
    assert (e.max_num_seqs, e.max_num_batched_tokens) == (1024, 8192)  # >= 70 GiB, not A100


def test_vllm_weights_and_activation_peak_against_the_published_profile():
    """vLLM PR #10511's profiler on an H100 (Llama-3-8B, 0.6.5-dev V0: 256 sequences, 8192
    tokens): weights 14.96 GiB at TP 1 and 7.48 at TP 2, PyTorch activation peak 1.26 GiB at
    both: the peak is the driver's sampler (full vocabulary at any TP), not the forward. The V0
    family's sampler peak, inside logits.sort (38 B per logit: vLLM's sampler code plus PyTorch's
    sort workspace, read from the code), gives 1.23 GiB: 3 % under (32 B, the tensors alive at
    the scatter without the sort's workspace, gave 1.04 GiB: 17 % under)."""
    one = _mem(version="0.6.4+pr10511", max_num_seqs=256, max_num_batched_tokens=8192)
    two = _mem(version="0.6.4+pr10511", tp=2, max_num_seqs=256, max_num_batched_tokens=8192)
    assert one.weights_bytes / GIB == pytest.approx(14.96, abs=0.01)
    assert two.weights_bytes / GIB == pytest.approx(7.48, abs=0.01)
    assert one.activation_peak_bytes == pytest.approx(two.activation_peak_bytes)
    assert one.activation_peak_bytes / GIB == pytest.approx(1.26, rel=0.05)
    assert one.activation_peak_bytes == pytest.approx(8192 * 4096 * 2 + 256 * 128256 * 38)


def test_vllm_reserves_more_non_torch_memory_at_tp2_on_an_nvls_fabric():
    """0.38 GiB at TP >= 2 (vLLM #16570, A100), plus 1.79 GiB on NVSwitch with NVLS (vLLM PR
    #10511: TP 2 - TP 1 on H100)."""
    spec, cfg = get_engine("vllm"), EngineConfig(name="vllm")
    plain = engine_memory(LLAMA3_8B, H100, EngineShape(tp=2), spec, cfg, 0.7)
    nvls = engine_memory(LLAMA3_8B, H100, EngineShape(tp=2, nvls=True), spec, cfg, 0.7)
    assert plain.non_torch_bytes == pytest.approx(0.38 * GIB)
    assert nvls.non_torch_bytes - plain.non_torch_bytes == pytest.approx(1.79 * GIB)
    one = engine_memory(LLAMA3_8B, H100, EngineShape(tp=1, nvls=True), spec, cfg, 0.7)
    assert one.non_torch_bytes == pytest.approx(0.04 * GIB)


def test_vllm_uses_the_small_defaults_on_an_a100():
    e = _mem(device=get_device("a100-sxm4-80gb"))
    assert (e.max_num_seqs, e.max_num_batched_tokens) == (256, 2048)


def test_vllm_reports_a_max_model_len_the_cache_cannot_hold():
    e = _mem(gpu_memory_utilization=0.255, version="0.19.1")  # 20.2 GiB: weights and peak leave ~0.5 GiB
    assert 0 < e.kv_cache_tokens < 8192
    assert any("refuses to start" in p for p in e.problems)


# ---- SGLang, TensorRT-LLM, llama.cpp ---------------------------------------------------------

@pytest.mark.parametrize("mib, tp, expected", [
    (81559, 1, 0.835),  # H100: (81559 - (512 + 8192*1.5 + 256*2 + 128)) / 81559
    (81559, 4, 0.824),  # cuda_graph_max_bs 512 at tp >= 4, 4 x 128 MB
    (40960, 1, 0.833),  # A100 40GB: chunk 4096, graphs 32, no 10 GiB floor below 60 GiB
    (15360, 1, 0.757),  # T4: chunk 2048, graphs 8
])
def test_sglang_default_mem_fraction_static_by_hand(mib, tp, expected):
    rule = get_engine("sglang").memory.reserve
    fraction, _ = sglang_default_fraction(rule, mib, tp, 1)
    assert fraction == expected


def test_sglang_pool_is_fraction_of_free_memory_minus_weights():
    e = _mem("sglang", mem_fraction_static=0.9)
    free = 79.22 * GIB - 0.7 * GIB
    assert e.kv_cache_bytes == pytest.approx(0.9 * free - e.weights_bytes, rel=1e-12)
    assert e.kv_block_size == 1 and e.kv_cache_tokens == int(e.kv_cache_bytes // 131072)


def test_sglang_attention_dp_counts_in_its_tp_size_vllm_dp_ranks_keep_their_own_tp():
    """SGLang runs attention DP inside its TP group (dp_attention.py: attn_tp_size = tp_size //
    dp_size), so DeepSeek-V3 at attention tp 1 x attention DP 8 on 8 x H200 (nvidia-smi 143771
    MiB) is server_args tp_size 8: reserved = 512 + 1.5 x 8192 + 2 x 512 + 128 x 8 = 14848 MB,
    f = round(128923 / 143771, 3) = 0.897 (tp 1 would be 13440 MB, 0.907), and the NVLS
    distributed init takes 2.01 GiB (none at tp 1). --enable-dp-attention adds 3 x 512 x 8 +
    1.5 x 512 x 8 = 18432 MB (v0.5.6.post2 _handle_gpu_memory_settings, cuda_graph_max_bs 512
    > 300): 33280 MB, f = round(110491 / 143771, 3) = 0.769 for the DP layout, 0.897 for TP 8.
    vLLM's DP ranks are engine cores of their own tp: tp 1 x DP 8 keeps the tp-1 non-torch
    0.04 GiB."""
    h200, v3 = get_device("h200-sxm-141gb"), get_model("deepseek-v3")
    spec, cfg = get_engine("sglang"), EngineConfig(name="sglang")
    dp = engine_memory(v3, h200, EngineShape(tp=1, attention_dp=8, ep=8, nvls=True), spec, cfg,
                       0.7)
    tp8 = engine_memory(v3, h200, EngineShape(tp=8, ep=8, nvls=True), spec, cfg, 0.7)
    assert (dp.fraction, tp8.fraction) == (0.769, 0.897)
    assert dp.breakdown["distributed_init"] == tp8.breakdown["distributed_init"] == 2.01 * GIB
    assert dp.max_num_batched_tokens == tp8.max_num_batched_tokens == 8192
    vspec, vcfg = get_engine("vllm"), EngineConfig(name="vllm")
    v = engine_memory(v3, h200, EngineShape(tp=1, attention_dp=8, ep=8, nvls=True), vspec, vcfg,
                      0.7)
    assert v.breakdown["non_torch"] == pytest.approx(0.04 * GIB)


def test_trtllm_pool_is_fraction_of_memory_free_after_the_profiled_peak():
    e = _mem("trtllm")
    free = 79.22 * GIB - e.weights_bytes - e.activation_peak_bytes - 0.7 * GIB
    assert e.kv_cache_bytes == pytest.approx(0.9 * free, rel=1e-12)
    assert e.kv_block_size == 32 and e.kv_cache_tokens % 32 == 0


def test_llamacpp_allocates_the_context_up_front():
    e = _mem("llamacpp", model=get_model("llama-2-7b"), max_model_len=2048)
    assert e.kv_cache_bytes == 2048 * 2 * 32 * 4096 * 2  # 1 GiB: K and V, 32 layers, f16
    assert e.kv_cache_tokens == 2048 and e.max_concurrency == 1


# ---- invariants ------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(gib=st.floats(20, 300), more=st.floats(0, 100),
       engine=st.sampled_from(["vllm", "sglang", "trtllm"]))
def test_more_device_memory_never_gives_fewer_kv_tokens(gib, more, engine):
    """At a fixed budget fraction and batch limits. SGLang derives its fraction from the memory
    itself, by brackets (next test), so it is pinned here as a user pins --mem-fraction-static;
    vLLM's API server raises its default max_num_seqs / max_num_batched_tokens from 256 / 2048
    to 1024 / 8192 on a device of >= 70 GiB (engines/vllm.yaml, arg_utils.py
    get_batch_defaults), a larger profiling-run peak that can leave fewer KV tokens just above
    the bracket (67 -> 70 GiB: 361,456 -> 354,640 tokens), so they are pinned as a user pins
    them."""
    small = H100.model_copy(update={"usable_memory_gib": gib, "memory_gb": 400.0,
                                    "nvidia_smi_memory_mib": None})
    large = small.model_copy(update={"usable_memory_gib": gib + more})
    cfg = {"sglang": {"mem_fraction_static": 0.85},
           "vllm": {"max_num_seqs": 256, "max_num_batched_tokens": 2048}}.get(engine, {})
    assert (_mem(engine, device=large, **cfg).kv_cache_tokens
            >= _mem(engine, device=small, **cfg).kv_cache_tokens)


def test_sglang_derived_fraction_can_give_fewer_tokens_on_a_larger_gpu():
    """SGLang's own rule (server_args.py _handle_gpu_memory_settings, engines/sglang.yaml
    reserve buckets): from 160 GiB chunked_prefill_size 8192 -> 16384 and cuda_graph_max_bs
    (tp < 4) 256 -> 512, so the reserve grows by 8192 x 1.5 + 256 x 2 = 12,800 MB, more than
    the 12 GiB gained from 148 to 160 GiB: fewer KV tokens, as the engine itself would give."""
    small = H100.model_copy(update={"usable_memory_gib": 148.0, "memory_gb": 400.0,
                                    "nvidia_smi_memory_mib": None})
    large = small.model_copy(update={"usable_memory_gib": 160.0})
    a, b = _mem("sglang", device=small), _mem("sglang", device=large)
    assert b.kv_cache_tokens < a.kv_cache_tokens
    assert b.breakdown["reserved"] - a.breakdown["reserved"] > 12 * 2**30


@settings(max_examples=40, deadline=None)
@given(u=st.floats(0.3, 0.99), du=st.floats(0, 0.5), tokens=st.integers(256, 32768),
       more=st.integers(0, 32768))
def test_vllm_kv_grows_with_utilization_and_shrinks_with_the_profiled_batch(u, du, tokens, more):
    hi = min(u + du, 1.0)
    assert (_mem(gpu_memory_utilization=hi).kv_cache_bytes
            >= _mem(gpu_memory_utilization=u).kv_cache_bytes)
    assert (_mem(max_num_batched_tokens=tokens + more).kv_cache_bytes
            <= _mem(max_num_batched_tokens=tokens).kv_cache_bytes)


def test_vllm_profile_holds_the_fused_moe_output_cache():
    """vLLM fused_moe.py: intermediate_cache3 of min(tokens, 32768) x top_k x hidden bf16."""
    mixtral = get_model("mixtral-8x7b")
    plain = profile_activation_bytes(mixtral, 8192, 256, 2, 2.0, 14)
    moe = profile_activation_bytes(mixtral, 8192, 256, 2, 2.0, 14, moe_chunk_tokens=32768)
    assert moe - plain == 8192 * 2 * 4096 * 2
    dense = profile_activation_bytes(LLAMA3_8B, 8192, 256, 1, 2.0, 14, moe_chunk_tokens=32768)
    assert dense == profile_activation_bytes(LLAMA3_8B, 8192, 256, 1, 2.0, 14)


def test_activation_peak_is_linear_in_tokens_and_rows():
    a = profile_activation_bytes(LLAMA3_8B, 1000, 10, 1, 2.0, 14)
    b = profile_activation_bytes(LLAMA3_8B, 2000, 20, 1, 2.0, 14)
    assert b == pytest.approx(2 * a)


# ---- predictions, serving, text --------------------------------------------------------------

def test_prediction_carries_the_engine_start_up_figures():
    # the V1 model runner subtracts the CUDA-graph estimate (vLLM >= 0.20); Model Runner V2,
    # llama's default from 0.23.0, does not
    p = predict(as_scenario({**BASE, "engine": {"name": "vllm", "variant": "v1"}}))
    e = p.engine
    assert e["kv_cache_tokens"] == e["kv_cache_blocks"] * e["kv_block_size"]
    assert e["breakdown"]["kv_cache"] == pytest.approx(e["kv_cache_bytes"])
    assert set(e["breakdown"]) == {"weights", "activation_peak", "non_torch", "kv_cache",
                                   "outside_budget", "cuda_graph_estimate"}  # vLLM >= 0.20
    # the engine's categories add up to the whole device as CUDA reports it
    assert sum(e["breakdown"].values()) == pytest.approx(79.22 * GIB)
    json.dumps(p.to_json_dict())


def test_unsourced_device_memory_is_warned_about():
    sc = {**BASE, "system": {"device": "h200-sxm-141gb"}, "engine": "vllm"}
    assert any("not sourced" in w for w in predict(as_scenario(sc)).warnings)


def test_serving_instances_use_the_engine_pool_and_max_num_seqs():
    from perfmodel.serving.predict import deployment_for, serving_inputs
    from perfmodel.specs.assemble import resolve_system
    from perfmodel.specs.registry import profile_for

    sc = as_scenario({**BASE, "kind": "serving", "engine": "vllm",
                      "inference": {"prompt_len": 512, "output_len": 64},
                      "serving": {"arrival": {"rate_per_s": 1.0}, "num_requests": 5}})
    system, profile = resolve_system(sc.system), profile_for("h100-sxm5-80gb")
    inf, wl = serving_inputs(sc)
    dep = deployment_for(sc, system, profile, inf, wl)
    e = _mem()
    assert dep.instances[0].kv.num_blocks == e.kv_cache_blocks
    assert dep.scheduler.max_batch == 1024
    fixed = sc.serving.model_copy(update={"scheduler": sc.serving.scheduler.model_copy(
        update={"max_batch": 64})})
    dep2 = deployment_for(sc.model_copy(update={"serving": fixed}), system, profile, inf, wl)
    assert dep2.scheduler.max_batch == 64


def test_predict_text_prints_the_engine_log_lines(tmp_path):
    path = tmp_path / "vllm.yaml"
    path.write_text("kind: inference\nmodel: llama-3-8b\nsystem: {device: h100-sxm5-80gb}\n"
                    "engine: {name: vllm, max_model_len: 4096}\n"
                    "inference: {prompt_len: 512, output_len: 16}\n")
    out = subprocess.run([sys.executable, "-m", "perfmodel.cli", "predict", str(path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "GPU KV cache size:" in out.stdout
    assert "Maximum concurrency for 4,096 tokens per request:" in out.stdout


# ---- device memory as the driver reports it -------------------------------------------------

def test_device_memory_falls_back_from_cuda_to_nvidia_smi_to_nominal():
    assert H100.usable_memory_source == "cuda" and H100.usable_memory_bytes == 79.22 * GIB
    smi = H100.model_copy(update={"usable_memory_gib": None})
    assert smi.usable_memory_source == "nvidia-smi"
    assert smi.usable_memory_bytes == 81559 * 2**20
    nominal = smi.model_copy(update={"nvidia_smi_memory_mib": None})
    assert nominal.usable_memory_bytes == nominal.memory_bytes


def test_driver_memory_above_the_nominal_capacity_is_refused():
    from perfmodel.specs.hardware import DeviceSpec

    data = H100.model_dump(exclude_none=True) | {"usable_memory_gib": 81.0}
    with pytest.raises(SpecError, match=r"usable_memory_gib .* must not exceed memory_gb"):
        validate(DeviceSpec, data)


# ---- validation cases ------------------------------------------------------------------------

def test_every_engine_startup_case_is_predicted_with_its_engine_and_the_generic_rule():
    from perfmodel.validate.cases import load_case_file, validation_root
    from perfmodel.validate.conventions import engine_metric
    from perfmodel.validate.run import run_case

    cases = load_case_file(validation_root() / "inference" / "engine_startup.yaml")
    assert len(cases) >= 15
    assert {lc.case.scenario["engine"] if isinstance(lc.case.scenario["engine"], str)
            else lc.case.scenario["engine"]["name"] for lc in cases} >= {"vllm", "sglang",
                                                                          "llamacpp"}
    for lc in cases:
        row = run_case(lc)
        assert row.status == "ok", (lc.case.id, row.error)
        assert lc.case.source.url.startswith("https://github.com/")
    # the generic figure of a case: perfmodel's engine-neutral serving rule
    sc = as_scenario({**BASE, "engine": "generic"})
    tokens = engine_metric("kv_cache_tokens", predict(sc), sc)
    assert tokens > 0 and tokens % 16 == 0


# ---- engine versions (engines/versions/*.yaml) -----------------------------------------------

def test_version_keys_order_releases_and_main_branch_snapshots():
    assert version_key("0.2.4") < version_key("0.2.4+pr2031") < version_key("0.2.4+pr2151") \
        < version_key("0.2.5") < version_key("0.4.0.post1") < version_key("0.10.1")
    # PEP 440 (Pre-releases): 1.0a1 < 1.0b1 < 1.0rc1 < 1.0; rc10 after rc2 (numeric, not text)
    assert version_key("1.2.0a1") < version_key("1.2.0b1") < version_key("1.2.0rc2") \
        < version_key("1.2.0rc10") < version_key("1.2.0") < version_key("1.2.0.post1")
    assert version_key("1.1.0") < version_key("1.2.0rc2")
    with pytest.raises(SpecError, match=r"engine\.version 'latest'"):
        version_key("latest")


def test_a_pre_release_reads_the_family_it_precedes_the_release_of():
    """TensorRT-LLM 1.2.0rc2 (the InferenceMAX images) is a 1.x release of the 1.0.0 family:
    the same facts as 1.2.0, not a refusal."""
    assert get_engine("trtllm", "1.2.0rc2") == get_engine("trtllm", "1.2.0")


@pytest.mark.parametrize("version, variant, family", [
    (None, None, "0.22"), ("0.21.0", None, "0.20"), ("0.23.0", "mrv2", "0.22-mrv2"), ("0.19.1", None, "0.14"), ("0.1.7", None, "0.2.0"), ("0.2.4", None, "0.2.0"),
    ("0.2.4+pr2031", None, "0.2.4+pr2031"), ("0.2.7", None, "0.2.4+pr2151"),
    ("0.4.3", None, "0.3.0+pr2863"), ("0.6.5", None, "0.6.4+pr10511"),
    ("0.7.3", None, "0.7-v0"), ("0.7.0", "v1", "0.7-v1"), ("0.9.2", None, "0.8"),
    ("0.9.2", "v1", "0.8"), ("0.10.0", None, "0.10.0"), ("0.10.2", None, "0.10"), ("0.9.2", "v0", "0.7-v0"),
])
def test_a_version_picks_its_family(version, variant, family):
    assert get_engine("vllm", version, variant).version == family


def test_every_family_is_sourced_and_the_ranges_do_not_overlap():
    fams = families("vllm")
    for spec in fams:  # overlay validated: every changed fact cited by the family's sources
        assert spec.ranges and spec.field_sources
    for variant in (None, "v0", "v1"):
        spans = sorted((version_key(r.since), version_key(r.until) if r.until else (99,))
                       for f in fams for r in f.ranges if r.variant == variant)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_a_family_fact_is_cited_by_the_family_not_the_current_file():
    spec = get_engine("vllm", "0.6.5")
    assert spec.memory.non_torch_gib_tp1 == 1.79
    assert spec.field_sources["memory.non_torch_gib_tp1"] == ["pr10511"]
    assert spec.field_sources["memory.sampler_bytes_per_logit"] == ["v0sampler", "v0sort", "v0runner"]


def test_an_unknown_version_or_variant_is_one_line():
    with pytest.raises(SpecError, match=r"no facts for version '0\.0\.1'") as err:
        get_engine("vllm", "0.0.1")
    assert "\n" not in str(err.value)
    with pytest.raises(SpecError, match="variant 'v9'"):
        get_engine("vllm", "0.9.2", "v9")


def test_pre_2031_profiler_reproduces_the_published_block_counts():
    """vLLM PR #2031's comment: before the PR, 7,449 blocks (Llama-2-7B, 1 x A100-80GB) and
    31,615 (Llama-2-70B, TP 4), max_num_batched_tokens 4096, 256 sequences, fp16: the torch
    peak rule (weights + activations only)."""
    a100 = get_device("a100-sxm4-80gb")
    cfg = dict(version="0.2.4", max_num_seqs=256, max_num_batched_tokens=4096, max_model_len=4096)
    for model, tp, blocks in (("llama-2-7b", 1, 7449), ("llama-2-70b", 4, 31615)):
        e = _mem(device=a100, model=get_model(model),
                 shape=EngineShape(tp=tp, weight_dtype="fp16", kv_dtype="fp16"), **cfg)
        assert e.non_torch_bytes == 0
        assert e.kv_cache_blocks == pytest.approx(blocks, rel=0.02)


def test_held_allreduce_outputs_by_hand():
    """Before vLLM PR #2151 every TP all-reduce output of the profile run stayed reserved
    (issue #2150): (2 x 80 + 1) outputs of 4096 x 8192 fp16 for Llama-2-70B = 10.06 GiB; at
    TP 1 nothing is held."""
    llama70 = get_model("llama-2-70b")
    held = (2 * 80 + 1) * 4096 * 8192 * 2
    assert allreduce_outputs_bytes(llama70, 4096, 1, 2.0) == held
    a100 = get_device("a100-sxm4-80gb")
    cfg = dict(version="0.2.4+pr2031", max_num_seqs=256, max_num_batched_tokens=4096,
               max_model_len=4096)
    e4 = _mem(device=a100, model=llama70, shape=EngineShape(tp=4, weight_dtype="fp16",
                                                             kv_dtype="fp16"), **cfg)
    assert e4.breakdown["allreduce_outputs_held"] == held
    assert e4.breakdown["cuda_context"] == pytest.approx(0.7 * GIB)
    e1 = _mem(device=a100, model=get_model("llama-2-7b"),
              shape=EngineShape(tp=1, weight_dtype="fp16", kv_dtype="fp16"), **cfg)
    assert "allreduce_outputs_held" not in e1.breakdown


def test_v1_at_0_7_counts_logits_for_every_dummy_token_and_the_cuda_context():
    """Early V1 profile_run: compute_logits over all max_num_tokens rows (bf16), no sampler;
    non-torch = device used - torch allocated, the CUDA context included."""
    e = _mem(version="0.7.0", variant="v1", max_num_seqs=256, max_num_batched_tokens=2048)
    forward = 2048 * (4 * 4096 + 2 * 3 * 14336 + 2 * (32 + 2 * 8) * 128)
    assert e.activation_peak_bytes == pytest.approx(
        max(forward, 2048 * 4096 * 2 + 2048 * 128256 * 2))
    assert e.non_torch_bytes == pytest.approx((0.04 + 0.7) * GIB)


def test_a_scenario_names_the_engine_version():
    p = predict(as_scenario({**BASE, "engine": {"name": "vllm", "version": "0.2.0"}}))
    assert p.engine["version"] == "0.2.0" and p.engine["non_torch_bytes"] == 0
    with pytest.raises(PerfModelError, match=r"engine\.version"):
        predict(as_scenario({**BASE, "engine": {"name": "vllm", "version": "nightly"}}))


def test_sglang_pool_excludes_what_the_distributed_init_took():
    """SGLang measures total_gpu_memory after init_torch_distributed; its own log puts that
    init at 2.01 GiB per rank on a Hopper NVSwitch node (sglang PR #11716, TP 8): KV = f x (T -
    CUDA context - 2.01 GiB) - weights at TP >= 2 on an NVLS fabric, nothing at TP 1."""
    shape4 = EngineShape(tp=4, nvls=True)
    spec, cfg = get_engine("sglang"), EngineConfig(name="sglang", mem_fraction_static=0.9)
    e = engine_memory(LLAMA3_8B, H100, shape4, spec, cfg, 0.7)
    assert e.breakdown["distributed_init"] == pytest.approx(2.01 * GIB)
    init_free = H100.usable_memory_bytes - 0.7 * GIB - 2.01 * GIB
    assert e.kv_cache_bytes == pytest.approx(0.9 * init_free - e.weights_bytes)
    one = engine_memory(LLAMA3_8B, H100, EngineShape(tp=1, nvls=True), spec, cfg, 0.7)
    assert "distributed_init" not in one.breakdown


def test_a_llamacpp_build_tag_reads_its_family_and_a_release_number_is_refused():
    """llama.cpp versions are build tags (engines/llamacpp.yaml: b3216 up to b7407)."""
    assert get_engine("llamacpp", "b5000") == get_engine("llamacpp", "b6000")
    with pytest.raises(SpecError, match=r"engine\.version"):
        get_engine("llamacpp", "1.0")


def test_a_version_outside_every_family_is_refused():
    """SGLang has version families since 0.5.5.post3's (engines/versions/sglang-0.5.5.post3.yaml):
    a version none of them covers names the known ranges."""
    with pytest.raises(SpecError, match=r"sglang has no facts for version '0\.4\.0'"):
        get_engine("sglang", "0.4.0")


def test_generic_capacity_counts_an_attention_dp_instance_like_the_deployment():
    """An attention-DP instance is tp x attention_dp x pp GPUs (serving.deploy); the
    engine-neutral figure used to refuse it (it counted tp x pp). Each DP group's GPU holds
    its own pool and the instance's tokens are the groups' pools summed. By hand: DeepSeek-V3's
    MLA caches the 512-wide latent and the 64-wide rope key per token and layer, bf16, not split
    by TP: (512 + 64) x 2 B x 61 layers = 70,272 B per token on every GPU."""
    from perfmodel.engine_memory import generic_capacity

    per_token = (512 + 64) * 2 * 61
    base = dict(kind="inference", model="deepseek-v3",
                system={"device": "h200-sxm-141gb", "num_gpus": 8},
                inference={"prompt_len": 8, "weight_dtype": "fp8_block",
                           "activation_dtype": "fp8"})
    tokens, pool, weights = generic_capacity(as_scenario(
        {**base, "parallelism": {"tp": 1, "attention_dp": 8, "ep": 8}}))
    assert tokens % 8 == 0
    assert pool == pytest.approx(tokens / 8 * per_token)  # one group's GPU holds 1/8
    assert 0 < weights < 141e9
    # without attention DP (tp 8): one pool, every GPU holding all of its tokens' latents
    tokens8, pool8, _ = generic_capacity(as_scenario({**base, "parallelism": {"tp": 8, "ep": 8}}))
    assert pool8 == pytest.approx(tokens8 * per_token)


def test_serving_scheduler_reads_the_named_engine_version():
    """engine.version picks the family's scheduler facts in serving too: vLLM 0.2.0 (V0) caps
    the batch at max_num_seqs 256 on any GPU and has no engine policy (the scenario's
    scheduler kind stays), where the current V1 file says 1024 on an H100 and ``chunked``."""
    from perfmodel.serving.predict import deployment_for, serving_inputs
    from perfmodel.specs.assemble import resolve_system
    from perfmodel.specs.registry import profile_for
    from perfmodel.specs.scenario import SchedulerConfig

    sc = as_scenario({**BASE, "kind": "serving", "engine": {"name": "vllm", "version": "0.2.0"},
                      "inference": {"prompt_len": 512, "output_len": 64},
                      "serving": {"arrival": {"rate_per_s": 1.0}, "num_requests": 5}})
    system, profile = resolve_system(sc.system), profile_for("h100-sxm5-80gb")
    inf, wl = serving_inputs(sc)
    dep = deployment_for(sc, system, profile, inf, wl)
    assert dep.scheduler.max_batch == 256
    assert dep.scheduler.kind == SchedulerConfig().kind
    assert dep.engine_facts.policy is None


def test_engine_weights_spread_the_experts_as_inference_does():
    """Mixtral-8x7B bf16 on 8 GPUs, by hand: experts 32 x 8 x 3 x 4096 x 14336 params, attention
    32 x (2 x 4096^2 + 2 x 4096 x 1024), embeddings + head 2 x 32000 x 4096. TP8 (with or
    without EP8) holds 1/8 of each; attention DP8 keeps the experts 1/8 (tp x attention_dp / ep
    = 1 with EP8, 8-way TP of each expert without) but every GPU holds whole attention and
    embeddings. (Before, EP8 divided the experts by ep and by tp: 1/64.)"""
    experts, attn, emb = 32 * 8 * 3 * 4096 * 14336, 32 * (2 * 4096**2 + 2 * 4096 * 1024), 2 * 32000 * 4096
    router = 32 * 4096 * 8
    sharded = 2 * (experts + attn + emb) / 8
    replicated = 2 * (experts / 8 + attn + emb)
    for par, hand in [({"tp": 8}, sharded), ({"tp": 8, "ep": 8}, sharded),
                      ({"tp": 1, "attention_dp": 8, "ep": 8}, replicated),
                      ({"tp": 1, "attention_dp": 8}, replicated)]:
        p = predict(as_scenario(dict(kind="inference", model="mixtral-8x7b", engine="vllm",
                                     system={"device": "h100-sxm5-80gb", "num_gpus": 8},
                                     parallelism=par, inference={"prompt_len": 128, "batch": 8})))
        got = p.engine["weights_bytes"]
        assert abs(got - hand) <= 2 * router + 2 * 32 * 3 * 4096 * 2, (par, got, hand)  # + router, norms
