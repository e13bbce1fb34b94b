"""Backward-only eager kernels of a framework (frameworks_costs.backward_extra_ops): the bias
gradient reductions, the QKV split's concatenation and the Triton FlashAttention backward's
own element-wise kernels (frameworks/fsdp.yaml eager_backward, _common.yaml triton_flash
bwd_extra), checked against hand calculations; and, when torch is installed, the aten calls
of the backward that the facts stand for."""

import pytest
from aten_calls import aten_calls

from perfmodel import frameworks_costs as FC
from perfmodel import ops as O
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.specs.registry import get_model

PREC = O.Precision(compute="bf16", act=2.0, weight=2.0)


def mpt_layer(model, tokens: float) -> list[O.Op]:
    """An MPT layer's forward as perfmodel lists it (fused QKV, MHA, GELU MLP)."""
    h = model.hidden_size
    qkv = (O.Matmul(1 / 3, h, True), O.Matmul(1 / 3, h, True), O.Matmul(1 / 3, h, True))
    return [
        O.elementwise("attn.norm", tokens * h, tokens * h, 2.0, kind="layernorm"),
        O.gemm("attn.qkv", tokens, 3 * h, h, PREC, matmuls=qkv),
        O.Op(name="attn.core", cls=O.ATTENTION, flops=1.0, bytes=1.0, dtype="bf16",
             shape=(2048, 2048), phase="prefill", attention_core=True),
        O.gemm("attn.out", tokens, h, h, PREC),
        O.gemm("mlp.up", tokens, 4 * h, h, PREC),
        O.elementwise("mlp.act", tokens * 4 * h, tokens * 4 * h, 2.0, kind="gelu"),
        O.gemm("mlp.down", tokens, h, 4 * h, PREC),
    ]


def extras(name: str, model) -> dict[str, O.Op]:
    fw = resolve_framework(FrameworkConfig(name=name))
    ops = FC.backward_extra_ops(fw, mpt_layer(model, 12288.0), model, 2.0)
    return {op.name: op for op in ops}


def test_fsdp_mpt_backward_extras_by_hand():
    model = get_model("mpt-7b")
    assert model.qkv_bias and model.attn_out_bias and model.mlp_bias  # MPT yamls: no_bias False
    t, h, a = 12288.0, 4096.0, 2.0
    got = extras("fsdp", model)
    # bias gradients: the output gradient (t x n) read, the bias gradient (n) written
    for name, n in (("attn.qkv", 3 * h), ("attn.out", h), ("mlp.up", 4 * h), ("mlp.down", h)):
        op = got[name + FC.BIAS_GRAD + FC.UNFUSED]
        assert op.bytes == pytest.approx((t * n + n) * a)
        assert op.phase == "bwd" and op.launches == 1.0
    # the split's backward: dq, dk, dv read and the QKV gradient written (t x 3h each way)
    assert got[FC.QKV_SPLIT_GRAD + FC.UNFUSED].bytes == pytest.approx(2 * t * 3 * h * a)
    # Triton backward: 14 B per element of q (t x h), three kernels
    tri = got[FC.ATTN_BWD_EXTRA + FC.UNFUSED]
    assert tri.bytes == pytest.approx(14.0 * t * h)
    assert tri.launches == 3.0 and tri.block == "attn"
    assert len(got) == 6


def test_no_bias_model_keeps_only_the_split_and_backend_kernels():
    model = get_model("mpt-7b").model_copy(update={"qkv_bias": False, "attn_out_bias": False,
                                                    "mlp_bias": False})
    got = extras("fsdp", model)
    assert set(got) == {FC.QKV_SPLIT_GRAD + FC.UNFUSED, FC.ATTN_BWD_EXTRA + FC.UNFUSED}


@pytest.mark.parametrize("name", ["megatron-core", "torchtitan"])
def test_other_frameworks_add_nothing(name):
    # megatron-core is the baseline; torchtitan has no eager_backward facts and SDPA's flash
    # backend runs no extra backward kernels in these facts
    assert extras(name, get_model("mpt-7b")) == {}


def test_fsdp_with_another_attention_backend_drops_the_triton_kernels():
    model = get_model("mpt-7b")
    fw = resolve_framework(FrameworkConfig(name="fsdp", attention_backend="fa2"))
    names = {op.name for op in FC.backward_extra_ops(fw, mpt_layer(model, 1024.0), model, 2.0)}
    assert FC.ATTN_BWD_EXTRA + FC.UNFUSED not in names
    assert FC.QKV_SPLIT_GRAD + FC.UNFUSED in names


def test_the_facts_match_the_aten_calls_of_the_backward():
    """F.linear with a bias, then a split into q, k, v: the backward runs a cat (the split)
    and a sum (the bias gradient) beside the two matmuls (frameworks/fsdp.yaml
    eager_backward)."""
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 8, 16, requires_grad=True)
    w = torch.randn(48, 16, requires_grad=True)
    b = torch.randn(48, requires_grad=True)
    q, k, v = torch.nn.functional.linear(x, w, b).split([16, 16, 16], dim=2)
    loss = (q + 2.0 * k + 3.0 * v).sum()
    calls = aten_calls(loss.backward)
    assert "aten.cat.default" in calls
    assert "aten.sum.dim_IntList" in calls
    assert calls.count("aten.mm.default") == 2


def test_fp8_gemms_fuse_their_bias_gradient():
    """fp8 rows run Transformer Engine Linears, whose bias gradient comes out of the output
    gradient's fused cast: no separate reduction, the split and the Triton kernels stay."""
    model = get_model("mpt-3b")
    fp8 = O.Precision(compute="fp8", act=2.0, weight=1.0)
    layer = [O.gemm(op.name, *op.shape, fp8, matmuls=op.matmuls) if op.cls == O.GEMM else op
             for op in mpt_layer(model, 2048.0)]
    fw = resolve_framework(FrameworkConfig(name="fsdp"))
    names = {op.name for op in FC.backward_extra_ops(fw, layer, model, 2.0)}
    assert names == {FC.QKV_SPLIT_GRAD + FC.UNFUSED, FC.ATTN_BWD_EXTRA + FC.UNFUSED}


def test_the_step_charges_the_backward_extras(monkeypatch):
    """The llm-foundry MPT-7B case's training step includes the backward-only kernels:
    without them (the facts' ops emptied) the same step is faster."""
    from perfmodel.api import predict
    from perfmodel.validate.cases import case_scenario, load_cases

    sc = case_scenario(load_cases(match="llmfoundry_h100_80gb_amp_bf16_mpt7b_seq2048_8gpu")[0])
    charged = predict(sc).step_time_s
    monkeypatch.setattr(FC, "backward_extra_ops", lambda *args: [])
    assert charged > predict(sc).step_time_s
