"""llama.cpp builds after b6000 (engines/llamacpp.yaml ranges to b7407, engines/versions/
llamacpp-b7407.yaml to b10471) and the kernels later builds fuse (perfmodel/llamacpp_kernels.py
docstring 6), each against a hand count of the kernel's bytes for one shape. Build numbers are
``git rev-list --count`` of the merge commits (engines/llamacpp.yaml source hist10470):
PR #15631 b6316, PR #16130 b6583, PR #16715 b6841, PR #16884 b7044, PR #16653 b7407,
PR #18958 b7925, PR #25441 b10039; b10470 is the newest build read."""

from __future__ import annotations

import pytest

from perfmodel import ops as O
from perfmodel.engines import get_engine
from perfmodel.errors import SpecError
from perfmodel.llamacpp_kernels import build_number, fusions, with_ggml_cuda_matmuls
from perfmodel.specs.registry import get_device

Q4 = 0.5 + 2.0 / 32  # Q4_0: 18 B per 32 weights
Q8_1 = 36.0 / 32.0   # block_q8_1: 36 B per 32 values
RTX4090 = get_device("rtx-4090")


# ---- which facts a build reads --------------------------------------------------------------

@pytest.mark.parametrize("build, family, n_ctx", [
    ("b3216", "b6000", 4096), ("b6000", "b6000", 4096), ("b7406", "b6000", 4096),
    ("b7407", "b7407", None), ("b10470", "b7407", None),
])
def test_the_build_picks_its_family(build, family, n_ctx):
    # common/common.h n_ctx: 4096 (PR #10136, b4014) until PR #16653 (b7407) made it 0, the
    # model's training context (default_n_ctx null: the model's max_position_embeddings)
    spec = get_engine("llamacpp", build)
    assert spec.version == family and spec.memory.default_n_ctx == n_ctx
    assert spec.gemm.ggml_mmq == "should_use_mmq"  # ggml_cuda_should_use_mmq, NVIDIA: unchanged
    assert spec.memory.budget == "context_upfront"


def test_no_version_is_the_newest_build_read():
    assert get_engine("llamacpp").version == "b7407"


@pytest.mark.parametrize("build", ["b10471", "b12000"])
def test_builds_after_b10470_are_refused_in_one_line(build):
    with pytest.raises(SpecError) as err:
        get_engine("llamacpp", build)
    text = str(err.value)
    assert text.startswith("engine.version") and "b10471" in text and "\n" not in text


@pytest.mark.parametrize("build, fused", [
    (None, set()), ("b6000", set()), ("b6315", set()), ("b6316", {"adds"}),
    ("b6582", {"adds"}), ("b6583", {"adds", "topk_moe"}),
    ("b6841", {"adds", "topk_moe", "gemv_glu"}),
    ("b7043", {"adds", "topk_moe", "gemv_glu"}),
    ("b7044", {"adds", "topk_moe", "gemv_glu", "rope_set_rows"}),
    ("b7925", {"adds", "topk_moe", "gemv_glu", "rope_set_rows", "mmid_mmvq"}),
    ("b10038", {"adds", "topk_moe", "gemv_glu", "rope_set_rows", "mmid_mmvq"}),
    ("b10470", {"adds", "topk_moe", "gemv_glu", "rope_set_rows", "mmid_mmvq", "mmid_dedup"}),
])
def test_each_fusion_from_the_build_that_merged_it(build, fused):
    assert fusions(build) == fused


def test_build_tags_only():
    assert build_number("b7044") == 7044 and build_number(None) is None
    with pytest.raises(ValueError, match="build tag"):
        build_number("0.5.0")


# ---- b6316: the MoE adds in one multi-add kernel ----------------------------------------------

class _Moe:
    num_experts, top_k = 128, 8


def test_eight_experts_sum_in_one_kernel_from_b6316():
    # one token, 8 experts of width 2048: 7 adds, one fused kernel reading 8 rows and writing 1
    # (f32): 9 x 2048 x 4 B = 73,728 B, where b6000 ran 7 kernels of 3 rows each
    prec = O.Precision("fp16", 2.0, Q4)
    combine = O.moe_combine_op(8.0, 1.0, 2048, prec)
    old = with_ggml_cuda_matmuls([combine], prec, RTX4090, moe=_Moe, build="b6315")
    assert [(o.name, float(o.count)) for o in old] == [("moe.weights_mul", 1.0),
                                                       ("moe.expert_sum", 7.0)]
    mul, add = with_ggml_cuda_matmuls([combine], prec, RTX4090, moe=_Moe, build="b6316")
    assert add.name == "moe.expert_sum.fused7" and float(add.count) == 1.0
    assert add.bytes == pytest.approx(9 * 2048 * 4)
    assert mul.bytes == pytest.approx(2 * 8 * 2048 * 4)  # the weights' mul is unchanged


def test_more_than_eight_adds_take_a_second_kernel():
    # top 10: 9 adds = one kernel of 8 (9 rows in, 1 out) + one of 1 (2 rows in, 1 out)
    class Moe10:
        num_experts, top_k = 128, 10
    prec = O.Precision("fp16", 2.0, Q4)
    combine = O.moe_combine_op(10.0, 1.0, 1024, prec)
    _, a8, a1 = with_ggml_cuda_matmuls([combine], prec, RTX4090, moe=Moe10, build="b7000")
    assert (a8.name, a1.name) == ("moe.expert_sum.fused8", "moe.expert_sum.fused1")
    assert a8.bytes == pytest.approx(10 * 1024 * 4) and a1.bytes == pytest.approx(3 * 1024 * 4)


# ---- b6583: the routing in one top-K MoE kernel -------------------------------------------------

def test_routing_is_one_topk_moe_kernel_from_b6583():
    # one token, 128 experts, top 8: reads 128 f32 logits, writes 8 f32 weights + 8 i32 ids:
    # 128 x 4 + 8 x 8 = 576 B (b6000: softmax, argsort, get_rows = 1,632 B in three kernels)
    prec = O.Precision("fp16", 2.0, Q4)
    topk = O.moe_topk_op(1.0, 128, 8, prec)
    old = with_ggml_cuda_matmuls([topk], prec, RTX4090, moe=_Moe, build="b6582")
    assert len(old) == 3 and sum(o.bytes for o in old) == pytest.approx((256 + 136 + 16) * 4)
    (fused,) = with_ggml_cuda_matmuls([topk], prec, RTX4090, moe=_Moe, build="b6583")
    assert fused.name == "moe.topk_moe" and fused.bytes == pytest.approx(576)


def test_an_expert_count_that_is_no_power_of_two_keeps_three_kernels():
    # ggml_cuda_should_use_topk_moe: n_expert a power of 2 up to 512 (60 experts: no)
    class Moe60:
        num_experts, top_k = 60, 4
    prec = O.Precision("fp16", 2.0, Q4)
    topk = O.moe_topk_op(1.0, 60, 4, prec)
    ops = with_ggml_cuda_matmuls([topk], prec, RTX4090, moe=Moe60, build="b10470")
    assert [o.name for o in ops] == ["moe.softmax", "moe.argsort", "moe.get_rows"]


# ---- b6841: gate + up + GLU in one MMVQ kernel at one token -------------------------------------

def _mlp(tokens: float):
    # llama-2-7b MLP, Q4_0: gate and up 4096 -> 11008 each, then the SiLU-GLU
    prec = O.Precision("fp16", 2.0, Q4, weight_format="int4")
    up = O.gemm("mlp.up", tokens, 2 * 11008, 4096, prec,
                matmuls=(O.Matmul(0.5, 11008, True), O.Matmul(0.5, 11008, True)))
    act = O.elementwise("mlp.act", tokens * 2 * 11008, tokens * 11008, 2.0, 4.0, kind="silu")
    return prec, [up, act]


def test_one_token_runs_gate_up_and_glu_as_one_gemv_from_b6841():
    prec, layer = _mlp(1.0)
    old = [o.name for o in with_ggml_cuda_matmuls(layer, prec, RTX4090, build="b6840")]
    assert old == ["mlp.up.0.quantize_q8_1", "mlp.up.0", "mlp.up.1.quantize_q8_1", "mlp.up.1",
                   "mlp.act"]
    q, gemv = with_ggml_cuda_matmuls(layer, prec, RTX4090, build="b6841")
    # one quantise of the 4096 input values: 4096 x (4 + 1.125) B
    assert q.name == "mlp.up.glu.quantize_q8_1" and q.bytes == pytest.approx(4096 * (4 + Q8_1))
    # both weights at 4.5 bits, the input once, 11008 activated values written (2 B each)
    assert gemv.name == "mlp.up.glu"
    assert gemv.bytes == pytest.approx(4096 * 2 + 4096 * 22016 * Q4 + 11008 * 2)
    assert gemv.flops == pytest.approx(2 * 4096 * 22016)


def test_two_tokens_and_pascal_keep_the_separate_kernels():
    # ggml_cuda_should_fuse_mul_mat_vec_q: dst->ne[1] == 1 only; cc > GGML_CUDA_CC_PASCAL (600)
    prec, layer = _mlp(2.0)
    names = [o.name for o in with_ggml_cuda_matmuls(layer, prec, RTX4090, build="b10470")]
    assert "mlp.act" in names and "mlp.up.glu" not in names
    prec, layer = _mlp(1.0)
    p100_like = get_device("t4").model_copy(update={"compute_capability": 6.0})
    names = [o.name for o in with_ggml_cuda_matmuls(layer, prec, p100_like, build="b10470")]
    assert "mlp.act" in names and "mlp.up.glu" not in names


def test_the_experts_gate_and_up_fuse_at_one_token():
    # Qwen3-30B-A3B geometry, one token routed to 8 experts: gate + up 2 x 768 wide, k = 2048;
    # one quantise of the token's 2048 values, each expert reads both 768 x 2048 weights and
    # writes 768 activated values; the activation kernel goes
    prec = O.Precision("fp16", 2.0, Q4, weight_format="int4")
    up = O.grouped_gemm("moe.expert.up", 8.0, 2 * 768, 2048, 8.0, prec,
                        matmuls=(O.Matmul(0.5, 768 * 8, True), O.Matmul(0.5, 768 * 8, True)))
    act = O.elementwise("moe.expert.act", 8.0 * 1536, 8.0 * 768, 2.0, 4.0, kind="silu")
    q, gemv = with_ggml_cuda_matmuls([up, act], prec, RTX4090, moe=_Moe, build="b6841")
    assert q.bytes == pytest.approx(2048 * (4 + Q8_1))
    assert gemv.name == "moe.expert.up.glu"
    assert gemv.bytes == pytest.approx(8 * (2048 * 2 + 2048 * 1536 * Q4 + 768 * 2))


# ---- b7044: K's RoPE writes the cache ----------------------------------------------------------

def _rope():
    # Llama-3-8B, one token: 32 query heads and 8 KV heads of 128 (5120 values, 2 B each)
    return O.elementwise("attn.rope", 1.0 * (32 + 8) * 128, 1.0 * (32 + 8) * 128, 2.0, 3.0,
                         kind="rope")


def test_k_rope_and_its_store_are_one_kernel_from_b7044():
    # fused: K's 1024 values read (2 B) and written to the f16 cache (2 B): 4096 B; V's store
    # stays (1024 f32 values read, 2 B written: 6144 B)
    prec = O.Precision("fp16", 2.0, Q4, kv=2.0)
    old = with_ggml_cuda_matmuls([_rope()], prec, RTX4090, heads=(32, 8), build="b7043")
    assert [o.name for o in old] == ["attn.rope.q", "attn.rope.k", "attn.k_store",
                                     "attn.v_store"]
    q, k, v = with_ggml_cuda_matmuls([_rope()], prec, RTX4090, heads=(32, 8), build="b7044")
    assert (q.name, k.name, v.name) == ("attn.rope.q", "attn.rope.k_store", "attn.v_store")
    assert q.bytes == pytest.approx(4096 * 2 * 2)
    assert k.bytes == pytest.approx(1024 * (2 + 2)) and v.bytes == pytest.approx(1024 * 6)


def test_a_quantised_cache_keeps_the_store_kernel():
    # ggml_cuda_should_fuse_rope_set_rows: the cache f16 or f32 only (q8_0: 34 B per 32)
    prec = O.Precision("fp16", 2.0, Q4, kv=34.0 / 32.0)
    ops = with_ggml_cuda_matmuls([_rope()], prec, RTX4090, heads=(32, 8), build="b10470")
    assert [o.name for o in ops] == ["attn.rope.q", "attn.rope.k", "attn.k_store",
                                     "attn.v_store"]


# ---- the experts' gate / up quantise: MMVQ to 8 tokens from b7925, MMQ dedup from b10039 ------

def _expert_up(tokens: float):
    # Qwen3-30B-A3B geometry: tokens x 8 routed rows over 8 experts' problems, k = 2048
    prec = O.Precision("fp16", 2.0, Q4, weight_format="int4")
    up = O.grouped_gemm("moe.expert.up", tokens * 8.0, 2 * 768, 2048, 8.0, prec,
                        matmuls=(O.Matmul(0.5, 768 * 8, True), O.Matmul(0.5, 768 * 8, True)))
    return prec, up


@pytest.mark.parametrize("tokens, build, rows_in, rows_out", [
    (512, None, 512 * 8, 512 * 8),      # b6000 MMQ: ne11_flat = ne12 * n_expert_used rows
    (512, "b10038", 512 * 8, 512 * 8),
    (512, "b10039", 512, 512 * 8),      # dedup_bcast: each token read once, 8 slots written
    (4, "b7924", 4 * 8, 4 * 8),         # ne2 == 1 only: 4 tokens run MMQ
    (4, "b7925", 4, 4),                 # MMVQ up to 8 tokens: the tokens' rows
])
def test_expert_gate_up_quantise_rows(tokens, build, rows_in, rows_out):
    prec, up = _expert_up(float(tokens))
    q = with_ggml_cuda_matmuls([up], prec, RTX4090, moe=_Moe, build=build)[0]
    assert q.name == "moe.expert.up.0.quantize_q8_1"
    assert q.bytes == pytest.approx(rows_in * 2048 * 4 + rows_out * 2048 * Q8_1)
