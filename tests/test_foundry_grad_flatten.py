"""FSDP1's kernels on a block's unsharded gradient (frameworks/fsdp.yaml fsdp.
grad_flatten_bytes_per_param / grad_divides / mp_shard_cast_bytes_per_param,
frameworks_costs.fsdp_grad_ops): the original
parameters are torch.split views of the flat parameter (torch fsdp _flat_param.py
_get_unflat_views_aligned, _use_unsharded_views under enable_grad), so the split's backward
concatenates every parameter gradient of the block into the flat gradient each micro-batch
(read 2 B + write 2 B per bf16 parameter, one kernel); then _reduce_grad divides the unsharded
gradient in place by the predivide factor (> 1 for 2+ ranks) in the reduce dtype and the shard
by the postdivide factor; each all-gather is preceded by the fp32 shard's cast to bf16. Checked
against a hand count and, when torch is installed, against the aten calls of such a backward
on this machine's dispatcher."""

import pytest
from aten_calls import aten_calls

from perfmodel import frameworks_costs as FC
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig

BLOCK = 12 * 4096**2 + 13 * 4096  # one MPT-7B block: 12 d^2 weights, Linear biases, LayerNorms


def ops(name: str, zero: int = 3, block: float = BLOCK, reduce_bytes: float = 4.0,
        group: float = 8.0) -> dict:
    fw = resolve_framework(FrameworkConfig(name=name))
    return {op.name: op for op in FC.fsdp_grad_ops(fw, zero, block, reduce_bytes, group)}


def test_a_plan_that_keeps_the_gathered_weights_casts_the_shard_once():
    # no reshard after forward: one all-gather per micro-batch, so one shard cast of
    # 1/8 of the block at fp32 read + bf16 write
    fw = resolve_framework(FrameworkConfig(name="llm-foundry"))
    got = {op.name: op for op in FC.fsdp_grad_ops(fw, 3, BLOCK, 4.0, 8.0, resharded=False)}
    cast = got[FC.FSDP1_MP_SHARD_CAST + FC.UNFUSED]
    assert cast.bytes == pytest.approx(BLOCK * (4 + 2) / 8)
    assert cast.launches == 1.0


def test_divide_factors_as_torch_computes_them():
    # _get_gradient_predivide_factor: 2 -> 2, 4 -> 2, 8 -> 4, 64 -> 8, 128 -> 16; post = w / pre
    pre, post = FC.fsdp1_divide_factors([1, 2, 4, 8, 64, 128])
    assert list(pre) == [1, 2, 2, 4, 8, 16]
    assert list(post) == [1, 1, 2, 2, 8, 8]


def test_fsdp1_gradient_kernels_by_hand():
    got = ops("llm-foundry")  # 8 ranks, DEFAULT: fp32 reduction
    cat = got[FC.FSDP1_GRAD_FLATTEN + FC.UNFUSED]
    assert cat.bytes == pytest.approx(BLOCK * (2 + 2))
    div = got[FC.FSDP1_GRAD_PREDIVIDE + FC.UNFUSED]
    assert div.bytes == pytest.approx(BLOCK * (4 + 4))  # fp32 read + write, factor 4
    post = got[FC.FSDP1_GRAD_POSTDIVIDE + FC.UNFUSED]
    assert post.bytes == pytest.approx(BLOCK * (4 + 4) / 8)  # the shard, factor 2
    cast = got[FC.FSDP1_MP_SHARD_CAST + FC.UNFUSED]
    assert cast.bytes == pytest.approx(2 * BLOCK * (4 + 2) / 8)  # two unshards of the shard
    assert cast.launches == 2.0
    # the shard's kernels touch the shard's elements only (the element-rate side of the
    # roofline), not the block's
    assert post.shape[0] == pytest.approx(BLOCK / 8) and cast.shape[0] == pytest.approx(BLOCK / 4)
    for op in got.values():
        assert op.phase == "bwd" and op.name.endswith(FC.UNFUSED)


def test_pure_bf16_reduction_divides_two_byte_gradients():
    div = ops("fsdp", reduce_bytes=2.0)[FC.FSDP1_GRAD_PREDIVIDE + FC.UNFUSED]
    assert div.bytes == pytest.approx(BLOCK * (2 + 2))


def test_two_ranks_have_no_postdivide_and_one_rank_no_divide():
    assert float(ops("fsdp", group=2.0)[FC.FSDP1_GRAD_POSTDIVIDE + FC.UNFUSED].bytes) == 0.0
    one = ops("fsdp", group=1.0)
    assert float(one[FC.FSDP1_GRAD_PREDIVIDE + FC.UNFUSED].bytes) == 0.0
    assert float(one[FC.FSDP1_GRAD_POSTDIVIDE + FC.UNFUSED].bytes) == 0.0


@pytest.mark.parametrize("name", ["megatron-core", "torchtitan", "deepspeed"])
def test_other_stacks_have_no_flat_gradient(name):
    assert ops(name) == {}


def test_only_zero3_plans_like_the_other_fsdp_copies():
    assert ops("fsdp", zero=1) == {}
    assert ops("fsdp", block=0.0) == {}


def test_the_split_backward_is_one_cat_over_the_flat_gradient():
    torch = pytest.importorskip("torch")
    flat = torch.nn.Parameter(torch.randn(30 + 5 + 3))  # weight, bias, alignment padding
    with torch.enable_grad():  # FSDP1 _use_unsharded_views(as_params=False)
        weight, bias, _pad = torch.split(flat, [30, 5, 3])
    out = torch.nn.functional.linear(torch.randn(4, 6), weight.view(5, 6), bias).sum()
    calls = aten_calls(out.backward)
    assert calls.count("aten.cat.default") == 1  # the flat gradient written once
    assert flat.grad is not None and flat.grad.shape == flat.shape


def test_the_step_charges_the_gradient_kernels(monkeypatch):
    from perfmodel.api import predict
    from perfmodel.validate.cases import case_scenario, load_cases

    sc = case_scenario(load_cases(match="llmfoundry_h100_80gb_amp_bf16_mpt13b_seq2048_64gpu")[0])
    charged = predict(sc).step_time_s
    monkeypatch.setattr(FC, "fsdp_grad_ops", lambda *args: [])
    bare = predict(sc).step_time_s
    # 40 blocks x (4 + 8 + 8/64 + 12/64) B x 315 M parameters = 155 GB: no faster than the
    # H100's 3.35 TB/s HBM peak (46 ms), no slower than 1 TB/s
    assert 0.046 < charged - bare < 0.155
