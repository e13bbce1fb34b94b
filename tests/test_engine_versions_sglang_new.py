"""SGLang releases after 0.5.14, read in their PyPI wheels up to 0.5.23 (engines/versions/
sglang-0.5.12.yaml, -0.5.16, -0.5.20; sources there): which family a version resolves
to, the refusal past the newest release read, and each changed fact against a hand calculation.

- 0.5.12: the JIT custom all-reduce v2 is the CUDA default (world sizes 2-8, up to 16 MiB; the
  legacy kernel of 0.5.6 - 0.5.11: 2 / 4 / 6 / 8 GPUs, below 8 MiB), and the auto-enabled
  FlashInfer all-reduce + residual + RMSNorm fusion for MoE models at TP > 1 without DP attention.
- 0.5.16: --kv-cache-dtype nvfp4; fp4_e2m1 (a block-16 FP4 recipe, not MXFP4) deprecated.
- 0.5.20: GPUs of 20-35 GiB default to chunked_prefill_size 4096, cuda_graph_max_bs 48 / 160.
- 0.5.23 (in the 0.5.20 family): a DP-attention decode batch whose summed rows fit 16 MiB is
  gathered by one all-reduce (SUM_LEN); not modelled (moe.dp_gather has no size bound): decode
  keeps the all-gather SGLang runs for a balanced batch above the bound.
"""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel.comm import collective_time
from perfmodel.engine_comm import below_workspace
from perfmodel.engines import default_version_note, dp_gather_mode, fused_away_kernels, get_engine
from perfmodel.errors import SpecError
from perfmodel.moe_parallel import contiguous_span, stage_comm
from perfmodel.paths import data_dir
from perfmodel.resolve import inference_inputs, resolve
from perfmodel.zoo import resolve_model

MiB = 1 << 20


@pytest.mark.parametrize("version, family", [
    ("0.5.6", "0.5"), ("0.5.11", "0.5"), ("0.5.12", "0.5.12"), ("0.5.14", "0.5.12"),
    ("0.5.15.post1", "0.5.12"), ("0.5.16", "0.5.16"), ("0.5.19", "0.5.16"),
    ("0.5.20", "0.5.20"), ("0.5.22", "0.5.20"), ("0.5.23", "0.5.20"), (None, "0.5.20"),
])
def test_each_release_resolves_to_its_family(version, family):
    assert get_engine("sglang", version).version == family


@pytest.mark.parametrize("version", ["0.5.24", "0.6.0", "0.6.3"])
def test_a_release_after_0_5_23_is_refused_with_the_remedy(version):
    with pytest.raises(SpecError) as err:
        get_engine("sglang", version)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"engine.version: sglang has no facts for version '{version}'")
    assert "newest version family 0.5.20" in msg and "pin a version before 0.5.24" in msg


def test_no_version_is_the_0_5_20_family_and_says_so():
    note = default_version_note("sglang", None)
    assert "version family 0.5.20" in note and "0.5.24" in note


def test_custom_all_reduce_v2_reaches_16_mib_and_odd_world_sizes():
    # v2 should_custom_ar: inp_size <= max_size, max_size = max(16 MiB pull, push) = 16 MiB;
    # the legacy kernel: inp_size < 8 MiB on 2 / 4 / 6 / 8 GPUs
    assert bool(below_workspace("sglang", 12 * MiB, 8, "0.5.12"))
    assert not bool(below_workspace("sglang", 12 * MiB, 8, "0.5.11"))
    assert not bool(below_workspace("sglang", 17 * MiB, 8, "0.5.23"))
    assert get_engine("sglang", "0.5.11").comm.custom_allreduce_world_sizes == [2, 4, 6, 8]
    assert get_engine("sglang", "0.5.23").comm.custom_allreduce_world_sizes == list(range(2, 9))
    assert get_engine("sglang", "0.5.23").comm.custom_allreduce_reach == "host"


GPT_OSS = "tests/data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json"
LAYERS = 36  # gpt-oss-120b, hidden 2880


def _calls(version: str, tp: int = 4, batch: int = 4, prompt: int = 1024, **par) -> dict:
    path = str(data_dir("calibration").parent / GPT_OSS)
    sc = pm.Scenario(kind="inference", model=path,
                     engine={"name": "sglang", "version": version},
                     system={"device": "b200", "num_gpus": tp}, parallelism={"tp": tp, **par},
                     inference=dict(batch=batch, prompt_len=prompt, output_len=128))
    out: dict = {}
    for op in pm.predict(sc).ops:
        out[(op.phase, op.name)] = out.get((op.phase, op.name), 0.0) + op.calls
    return out


def test_flashinfer_allreduce_norm_fusion_removes_the_add_norm_kernels():
    # GptOssForCausalLM on SM100, tp 4, no DP attention: both adds + norms of each of the 36
    # layers run inside the all-reduce at 0.5.12+; 0.5.11's rule is not modelled (kernels kept)
    new, old = _calls("0.5.23"), _calls("0.5.11")
    for name in ("attn.residual_norm", "mlp.residual_norm"):
        assert new.get(("decode", name), 0.0) == 0.0
        assert old[("decode", name)] == LAYERS
    # the first layer's input norm has no add before it: still its own kernel
    assert new[("decode", "embed.input_norm")] == 1.0


def test_the_fusion_stops_where_the_all_reduce_leaves_the_custom_kernel():
    # 4,096 prefill tokens x 2880 x 2 B = 23.6 MB > 16 MiB: PyNCCL, the norms after it
    # (SGLang fuses only up to 2,048 tokens too); 1,024 tokens = 5.9 MB: fused
    big = _calls("0.5.23", batch=1, prompt=4096)
    assert big[("prefill", "attn.residual_norm")] == LAYERS
    small = _calls("0.5.23", batch=1, prompt=1024)
    assert small.get(("prefill", "attn.residual_norm"), 0.0) == 0.0


def test_the_fusion_needs_tp_and_no_attention_dp_and_experts():
    import numpy as np
    on, _ = fused_away_kernels("sglang", "0.5.23", None, 2880, np.array([1, 4, 4]),
                               np.array([1, 1, 4]), True, moe=True)
    assert list(on) == [0.0, 1.0, 0.0]  # tp 1: no all-reduce; attention DP: off
    dense, _ = fused_away_kernels("sglang", "0.5.23", None, 4096, 8, 1, True, moe=False)
    assert float(dense) == 0.0


def _fraction(version: str, device: str = "rtx-4090") -> dict:
    sc = {"kind": "inference", "model": "llama-3.1-8b",
          "engine": {"name": "sglang", "version": version},
          "system": {"device": device, "num_gpus": 1},
          "inference": {"batch": 4, "prompt_len": 1024, "output_len": 64}}
    return pm.predict(sc).engine


def test_the_20_to_35_gib_bucket_of_0_5_20():
    # RTX 4090, nvidia-smi 24,564 MiB, TP 1. 0.5.20: reserved = 512 + 1.5 x 4096 + 2 x 48 +
    # 1024 x 1 x 1 / 8 = 6,880 MB, f = round(17,684 / 24,564, 3) = 0.720. 0.5.19: 512 + 1.5 x
    # 2048 + 2 x 24 + 128 = 3,760 MB, f = round(20,804 / 24,564, 3) = 0.847
    new, old = _fraction("0.5.20"), _fraction("0.5.19")
    assert new["fraction"] == pytest.approx(0.720)
    assert new["chunked_prefill_size"] == 4096
    assert old["fraction"] == pytest.approx(0.847)
    assert old["chunked_prefill_size"] == 2048
    spec = get_engine("sglang", "0.5.20")
    assert spec.memory.reserve.graph_bs(24564, 1) == 48
    assert spec.memory.reserve.graph_bs(24564, 4) == 160
    # an 80 GiB GPU is untouched: the 10 GiB floor, 8k chunk (H100 81,559 MiB)
    assert _fraction("0.5.23", "h100-sxm5-80gb")["fraction"] == \
        _fraction("0.5.19", "h100-sxm5-80gb")["fraction"]


def _kv(version: str, kv: str):
    return resolve({"kind": "inference", "model": "llama-3.1-8b",
                    "engine": {"name": "sglang", "version": version},
                    "system": {"device": "b200", "num_gpus": 1},
                    "inference": {"batch": 4, "prompt_len": 1024, "output_len": 64,
                                  "kv_dtype": kv}})


def test_kv_cache_formats_of_0_5_16():
    _kv("0.5.16", "nvfp4")
    _kv("0.5.23", "fp8")
    with pytest.raises(SpecError, match=r"^inference\.kv_dtype: mxfp4 is not a KV-cache "):
        _kv("0.5.16", "mxfp4")  # fp4_e2m1 deprecated; fp4_mx_block16 is block-16, not MXFP4
    with pytest.raises(SpecError, match=r"^inference\.kv_dtype: nvfp4 is not a KV-cache "):
        _kv("0.5.15", "nvfp4")


DSV3 = resolve_model("deepseek-v3")  # hidden 7168, 58 MoE layers


def _dp_comm(version: str):
    sc = {"kind": "inference", "model": "deepseek-v3",
          "engine": {"name": "sglang", "version": version},
          "system": {"device": "h200-sxm-141gb", "num_gpus": 8},
          "parallelism": {"tp": 1, "attention_dp": 8, "ep": 1},
          "inference": {"batch": 64, "prompt_len": 1000, "output_len": 200,
                        "weight_dtype": "fp8", "activation_dtype": "fp8"}}
    rs = resolve(sc)
    plan = inference_inputs(rs.scenario, rs.system, rs.profile).plan
    return rs, stage_comm(DSV3, plan, 64, "decode", 2.0, rs.system, rs.profile)


def test_dp_attention_decode_keeps_the_all_gather_at_0_5_23():
    # 0.5.23 all-reduces a decode batch whose summed rows fit 16 MiB (SUM_LEN), e.g. 64 tokens x
    # 7168 x 2 B = 917,504 B, and all-gathers a balanced one above it (DeepSeek-V3: > 1,170
    # tokens, 1,171 x 14,336 B = 16,787,456 B > 16,777,216 B); moe.dp_gather has one mode per
    # phase, so decode keeps the all-gather (+ reduce-scatter) of the larger batches: documented
    # in engines/versions/sglang-0.5.20.yaml (source sgl0523dpgather), prefill all-reduces
    assert 1170 * 7168 * 2 <= 16 * MiB < 1171 * 7168 * 2
    assert dp_gather_mode("sglang", "decode", "0.5.23") == "all_gather"
    assert dp_gather_mode("sglang", "prefill", "0.5.23") == "all_reduce"
    nb = 64 * 7168 * 2.0
    rs, dec = _dp_comm("0.5.23")
    span = contiguous_span(8, 8)
    assert dec.ep == pytest.approx(58 * (
        collective_time("all_gather", nb, span, rs.system, rs.profile)
        + collective_time("reduce_scatter", nb, span, rs.system, rs.profile)))
