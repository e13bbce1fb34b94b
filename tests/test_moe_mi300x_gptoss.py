"""gpt-oss-120b's MXFP4 experts on one MI300X under vLLM (issue 13, InferenceX #1053 cases),
checked against numbers worked out by hand from the checkpoint's shapes, the datasheet and
the kernel's source, not against the model's own data files:

* the weight bytes a decode step reads (experts that receive a token, MXFP4 at 4 bits plus one
  e8m0 byte per 32 weights);
* the bytes vLLM's ROCm MXFP4 backend allocates (H padded to 256, I to 128, the checkpoint's
  scales kept beside the swizzled copy);
* the compute side of the expert GEMMs: 2 m n k tensor FLOPs at the bf16 peak plus the
  dequantisation the model charges (2 k n per active expert at the fp32 vector peak), and the
  upcast's own instruction count (Triton's CDNA3 ``upcast8xMxfp4_SW``) as a floor that the
  expert time never undercuts;
* the proxy table the experts are timed on (no measured MXFP4 weight-only table on gfx942).

Sources: gpt-oss-120b config.json (hidden 2880, 128 experts of intermediate 2880, top-4, 36
layers); AMD MI300X datasheet (1307.4 TFLOP/s bf16 dense, 163.4 TFLOP/s fp32 vector, 304 CUs
at 2.1 GHz, 5.3 TB/s); vLLM mxfp4 backends (engines/vllm.yaml sources mxfp4cw, vllmrocmmxfp4);
triton-lang/triton third_party/amd/lib/TritonAMDGPUToLLVM/Utility.cpp ``upcast8xMxfp4_SW``
(the ``ISAFamily::CDNA3`` bf16 branch)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.api import predict
from perfmodel.engine_memory import EngineShape, mxfp4_expert_padding
from perfmodel.engines import engine_facts, get_engine, moe_kernels
from perfmodel.specs.registry import get_device

GPT_OSS = (Path(__file__).parent
           / "data/hf_configs/aiconfigurator-0.12.0/openai--gpt-oss-120b_config.json")

# gpt-oss-120b config.json
H = INTER = 2880
# vLLM's ROCm MXFP4 backend on gfx942 runs the experts padded: H to a multiple of 256, I to 128
# (FusedMoE / Mxfp4MoEMethod.create_weights; engines/vllm.yaml triton_ogs_rocm)
HP, IP = 3072, 2944
EXPERTS, TOP_K, LAYERS = 128, 4, 36
MXFP4_B = 0.5 + 1 / 32  # bytes per weight: a 4-bit element and one e8m0 scale per 32
# AMD Instinct MI300X datasheet
BF16_PEAK, FP32_VECTOR_PEAK, HBM = 1307.4e12, 163.4e12, 5.3e12
VALU_LANE_OPS = 304 * 4 * 16 * 2.1e9  # CUs x SIMDs x lanes x clock: 40.86e12 instr-lanes/s


def _scenario(batch: int) -> dict:
    return {"kind": "inference", "model": str(GPT_OSS),
            "system": {"device": "mi300x", "num_gpus": 1}, "parallelism": {"tp": 1},
            "engine": "vllm",
            "inference": {"batch": batch, "prompt_len": 1024, "output_len": 1024,
                          "activation_dtype": "bf16", "kv_dtype": "bf16"}}


def _active(tokens: int) -> float:
    """Experts that receive at least one of ``tokens`` tokens routed top-4 of 128."""
    return EXPERTS * (1 - (1 - TOP_K / EXPERTS) ** tokens)


def _decode_op(p, name: str):
    return next(o for o in p.ops if o.name == name and o.phase == "decode")


@pytest.fixture(scope="module")
def decode64():
    return predict(_scenario(64))


def test_vllm_runs_matmul_ogs_for_mxfp4_experts_and_cites_the_rocm_path():
    for version in (None, "0.14"):  # the 0.17 release falls in the 0.14 family
        kernels, proxy = moe_kernels("vllm", "w4a16_mxfp4", version)
        assert kernels[0] == "triton_ogs" and proxy is None
    spec = engine_facts("vllm", "0.14")
    assert "vllmrocmmxfp4" in spec.field_sources["moe.kernels"]
    assert "vllmrocmmxfp4" in {s.id for s in spec.sources}


def test_decode_reads_the_experts_that_receive_a_token(decode64):
    # 64 tokens x top-4 of 128: 111.2 experts; each holds up (2 x 2944 x 3072) and down
    # (3072 x 2944) padded weights at 0.53125 B, in 36 layers: 57.71 GB (52.93 GB unpadded)
    active = _active(64)
    per_expert = 3 * HP * IP * MXFP4_B * LAYERS
    got = decode64.breakdown["moe"]["decode_step"]["routed_expert_weight_bytes_per_gpu"]
    assert active == pytest.approx(111.2, abs=0.05)
    assert got == pytest.approx(active * per_expert, rel=1e-6)
    assert got == pytest.approx(57.71e9, rel=1e-3)


def test_expert_gemm_bytes_and_memory_time_by_hand(decode64):
    # up: each active expert's padded 2I' x H' weights once, the 64 x 4 routed rows in (H')
    # and out (2I')
    up = _decode_op(decode64, "moe.expert.up")
    rows = 64 * TOP_K
    hand = _active(64) * 2 * IP * HP * MXFP4_B + rows * (HP + 2 * IP) * 2
    assert up.bytes == pytest.approx(hand, rel=1e-6)
    assert up.memory_s == pytest.approx(hand / HBM, rel=1e-6)
    assert up.bound == "memory"


def test_expert_gemm_compute_counts_the_dequantisation(decode64):
    # 2 rows n k tensor FLOPs at the bf16 peak, plus 2 k n per active expert (scale and
    # convert every weight once) at the fp32 vector peak
    up = _decode_op(decode64, "moe.expert.up")
    tensor = 2 * 64 * TOP_K * 2 * IP * HP
    dequant = _active(64) * 2 * (2 * IP) * HP
    assert up.flops == pytest.approx(tensor, rel=1e-9)
    assert up.compute_s == pytest.approx(tensor / BF16_PEAK + dequant / FP32_VECTOR_PEAK,
                                         rel=1e-6)
    # the dequantisation is most of the compute side, and still 6x below the memory time
    assert dequant / FP32_VECTOR_PEAK > 3 * tensor / BF16_PEAK
    assert up.compute_s < up.memory_s / 6


def _upcast_floor_s(active: float, n: float, k: float, tiles: float = 1.0) -> float:
    """VALU time of converting every weight of the active experts once per M-tile, at 23
    instructions per 8 elements (Triton's CDNA3 upcast8xMxfp4_SW, bf16 with scale: 3 to
    split the nibbles, 2 v_perm LUT lookups, 3 + 2 for the signs, 4 v_cvt_pk_f32_fp8, 1 to
    place the e8m0 scale, 4 packed multiplies, 4 v_perm to bf16), on vLLM's padded shapes
    (H 3072, I 2944: triton_ogs_rocm), at the datasheet's lane rate."""
    return active * tiles * n * k * (23 / 8) / VALU_LANE_OPS


@pytest.mark.parametrize("batch", [64, 256])
def test_expert_time_never_undercuts_the_upcast_floor(batch):
    # decode at <= 256 tokens: <= 8 rows per expert, one M-tile (triton_kernels opt_flags
    # on CDNA3: block_m = max(32, min(next_pow2(tokens per expert), 64))); the in-kernel
    # upcast's VALU time stays below the time the model gives the kernel (memory-bound)
    p = predict(_scenario(batch))
    for name, n, k in (("moe.expert.up", 2 * IP, HP), ("moe.expert.down", HP, IP)):
        op = _decode_op(p, name)
        floor = _upcast_floor_s(_active(batch), n, k)
        assert floor < op.time_s
        assert op.bound == "memory"
    # at 256 tokens the up GEMM's floor is 0.53 of its time: the fp4 upcast is not what
    # bounds these cases' decode steps on gfx942
    up = _decode_op(p, "moe.expert.up")
    assert _upcast_floor_s(_active(batch), 2 * IP, HP) / up.time_s < 0.6


def test_rocm_backend_allocates_padded_experts_and_kept_scales():
    # vLLM on gfx942: H 2880 -> 3072 (FusedMoE rounds H to 256 for mxfp4 on ROCm), I 2880 ->
    # 2944 (get_padding_alignment 128 off gfx950); the swizzled weights and scales at the
    # padded shapes plus the checkpoint's scales kept: 0.5 + 2/32 B per padded weight
    p = predict({**_scenario(64), "kind": "serving",
                 "inference": {"prompt_len": 64, "output_len": 4, "activation_dtype": "bf16",
                               "kv_dtype": "bf16"},
                 "engine": {"name": "vllm", "version": "0.17.0",
                            "gpu_memory_utilization": 0.95, "max_model_len": 2248,
                            "block_size": 64},
                 "serving": {"arrival": {"process": "closed", "concurrency": 4},
                             "num_requests": 4, "prompt_len": 64, "output_len": 4}})
    eng = p.engine
    assert eng["mxfp4_backend"] == "triton_ogs_rocm"
    checkpoint = EXPERTS * LAYERS * 3 * H * INTER * MXFP4_B
    hp = math.ceil(H / 256) * 256
    ip = math.ceil(INTER / 128) * 128
    allocated = EXPERTS * LAYERS * 3 * hp * ip * (0.5 + 2 / 32)
    assert (hp, ip) == (3072, 2944)
    assert allocated / checkpoint == pytest.approx(1.1545, abs=1e-4)
    # the experts' biases (2I + H = 8640 per expert, 0.035 % of the expert parameters) are
    # counted with the expert tensors, hence 3.3 MB more than the weights alone
    assert eng["mxfp4_extra_bytes"] == pytest.approx(allocated - checkpoint, rel=5e-4)
    assert eng["mxfp4_extra_bytes"] == pytest.approx(9.41e9, rel=1e-3)


def test_the_kernel_runs_the_padded_shapes_without_the_kept_scales():
    # what the matmul_ogs kernel reads per step grows by the padded shapes alone, 1.0904, the
    # kept checkpoint scales (not read) only add to the allocation, 1.1545
    backend, factor, kept = mxfp4_expert_padding(
        get_engine("vllm", "0.17.0"), pm.get_model(str(GPT_OSS)),
        EngineShape(weight_dtype="mxfp4"), get_device("mi300x"), (("experts", "mxfp4"),))
    assert backend == "triton_ogs_rocm" and kept
    assert factor == pytest.approx(3072 * 2944 / (H * INTER), rel=1e-12)
    assert factor == pytest.approx(1.0904, abs=1e-4)


def test_the_experts_read_a_proxy_table_and_say_so():
    p = predict(_scenario(256))
    why = p.breakdown["moe"]["decode_step"]["grouped_gemm_table"]
    assert why.startswith("moe.bf16 ")
    assert "as proxy for triton_ogs" in why and "w4a16_mxfp4" in why
