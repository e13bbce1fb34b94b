"""Issue 14 / 13: an fp8 training recipe converts the transformer blocks' Linears, not the LM
head or the MoE router (frameworks/<id>.yaml ``fp8_scope.high_precision``: Megatron-Core's
output_layer is a ColumnParallelLinear and its router a bf16 router_gating_linear, torchtitan's
float8 converter skips ``output`` and ``router.gate``, llm-foundry's fc_type 'te' swaps only
the block Linears). Under fp8 the head GEMM costs what it costs in bf16, no cast is charged for
it or for the router, and the block GEMMs stay fp8 with their casts. Hand numbers: Llama-3.1-8B
(h 4096, vocab 128,256), micro-batch 2 x 8192 tokens, TP 1.
"""

from __future__ import annotations

import pytest

import perfmodel as pm
from perfmodel import frameworks_costs as FC
from perfmodel import ops as O
from perfmodel.frameworks import framework_spec, resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.resolve import resolve, training_plan
from perfmodel.training import training_step

T, H, V = 2 * 8192.0, 4096.0, 128256.0
# bf16 head GEMM, every pass: the t x h input, the h x V weight and the t x V logits, 2 B each
HEAD_BYTES = 2.0 * (T * H + H * V + T * V)


def _scenario(precision: str, framework) -> dict:
    return {"kind": "training", "model": "llama-3.1-8b",
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 8},
            "parallelism": {"dp": 8, "zero_stage": 3},
            "training": {"seq_len": 8192, "global_batch": 16, "micro_batch": 2,
                         "recompute": "op", "precision": precision, "framework": framework}}


def _op_times(precision: str, framework) -> dict[str, tuple]:
    rs = resolve(_scenario(precision, framework))
    plan = training_plan(rs.scenario, rs.system)
    res = training_step(rs.scenario.model, rs.system, plan, rs.profile, keep_ops=True)
    t = res.op_times
    return {op.name: (op, float(t.time[i])) for i, op in enumerate(t.ops)}


def test_the_scope_facts_are_read():
    for name in ("megatron-core", "nemo", "torchtitan"):
        assert framework_spec(name).fp8_scope.high_precision == ["lm_head", "router"]
    assert framework_spec("fsdp").fp8_scope.high_precision == ["lm_head"]
    assert framework_spec("deepspeed").fp8_scope is None  # no fact: every GEMM fp8


def test_head_gemm_by_hand_under_fp8():
    """head.lm and its dgrad / wgrad in bf16: 2 t V h FLOPs each, HEAD_BYTES each."""
    fw = resolve_framework(FrameworkConfig(name="torchtitan", float8_recipe="tensorwise"))
    prec = O.Precision.training("fp8")
    head = O.head_ops(pm.get_model("llama-3.1-8b"), T, 1, prec)
    ops = FC.fp8_recipe_costs(fw, head + [b for op in head for b in O.backward(op, prec)])
    gemms = {op.name: op for op in ops if op.cls == O.GEMM}
    assert set(gemms) == {"head.lm", "head.lm.dgrad", "head.lm.wgrad"}
    for op in gemms.values():
        assert op.dtype == "bf16"
        assert op.flops == pytest.approx(2.0 * T * V * H)
        assert op.bytes == pytest.approx(HEAD_BYTES)
    assert not [op for op in ops if op.fp8_cast]


@pytest.mark.parametrize("framework", ["torchtitan", "fsdp"])
def test_fp8_head_time_equals_bf16_and_blocks_stay_fp8(framework):
    fp8, bf16 = _op_times("fp8", {"name": framework, "float8_recipe": "tensorwise"}), \
        _op_times("bf16", framework)
    for name in ("head.lm", "head.lm.dgrad", "head.lm.wgrad"):
        assert fp8[name][0].dtype == "bf16"
        assert fp8[name][1] == pytest.approx(bf16[name][1], rel=1e-12)
    # no cast charged for the head
    assert not [n for n, (op, _) in fp8.items() if op.fp8_cast and n.startswith("head.")
                and float(op.count) > 0]
    # the block GEMMs stay fp8, with their casts, and are faster than in bf16
    assert fp8["attn.qkv"][0].dtype == "fp8" and fp8["mlp.down"][0].dtype == "fp8"
    assert float(fp8["mlp.up.fp8cast"][0].count) > 0
    assert fp8["mlp.up"][1] < bf16["mlp.up"][1]


def test_router_is_bf16_and_uncast_experts_fp8():
    """A MoE layer under nemo's fp8 scope: moe.router (t x E x h) in bf16, its fp8 casts
    charged nothing (count 0); the grouped expert GEMMs keep fp8 and their casts."""
    fw = resolve_framework(FrameworkConfig(name="nemo", float8_recipe="tensorwise"))
    model = pm.get_model("mixtral-8x7b")
    prec = O.Precision.training("fp8")
    fwd = O.layer_forward_ops(model, True, 1.0, 4096.0, 4096.0, 4096.0 * 4096.0, O.Shard(), prec)
    ops = FC.fp8_recipe_costs(fw, fwd + [b for op in fwd for b in O.backward(op, prec)])
    by = {op.name: op for op in ops}
    t, e, h = 4096.0, model.moe.num_experts, model.hidden_size
    for name in ("moe.router", "moe.router.dgrad", "moe.router.wgrad"):
        assert by[name].dtype == "bf16"
        assert by[name].bytes == pytest.approx(2.0 * (t * h + h * e + t * e))
    assert float(by["moe.router.fp8cast"].count) == 0.0
    assert float(by["moe.router.fp8cast.bwd"].count) == 0.0
    assert by["moe.expert.up"].dtype == "fp8" and float(by["moe.expert.up.fp8cast"].count) > 0


def test_no_fact_keeps_every_gemm_fp8():
    fw = resolve_framework(FrameworkConfig(name="deepspeed"))
    prec = O.Precision.training("fp8")
    head = O.head_ops(pm.get_model("llama-3.1-8b"), T, 1, prec)
    assert [op.dtype for op in FC.fp8_recipe_costs(fw, head) if op.cls == O.GEMM] == ["fp8"]
