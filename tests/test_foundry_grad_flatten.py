"""FSDP1's flat gradient (frameworks/fsdp.yaml fsdp.grad_flatten_bytes_per_param,
frameworks_costs.fsdp_grad_flatten_ops): the original parameters are torch.split views of the
flat parameter (torch fsdp _flat_param.py _get_unflat_views_aligned, _use_unsharded_views under
enable_grad), so the split's backward concatenates every parameter gradient of the block into
the flat gradient each micro-batch: read 2 B + write 2 B per bf16 parameter, one kernel.
Checked against a hand count and, when torch is installed, against the aten calls of such a
backward on this machine's dispatcher."""

import pytest

from perfmodel import frameworks_costs as FC
from perfmodel.frameworks import resolve_framework
from perfmodel.frameworks_config import FrameworkConfig

BLOCK = 12 * 4096**2 + 13 * 4096  # one MPT-7B block: 12 d^2 weights, Linear biases, LayerNorms


def test_fsdp1_concatenates_the_block_gradients_by_hand():
    fsdp = resolve_framework(FrameworkConfig(name="llm-foundry"))
    (op,) = FC.fsdp_grad_flatten_ops(fsdp, 3, BLOCK)
    assert op.bytes == pytest.approx(BLOCK * (2 + 2))
    assert op.launches == 1.0 and op.phase == "bwd"
    assert op.name.endswith(FC.UNFUSED)  # reported with the unfused element-wise kernels


@pytest.mark.parametrize("name", ["megatron-core", "torchtitan", "deepspeed"])
def test_other_stacks_have_no_flat_gradient(name):
    assert FC.fsdp_grad_flatten_ops(resolve_framework(FrameworkConfig(name=name)), 3,
                                    BLOCK) == []


def test_only_zero3_plans_like_the_other_fsdp_copies():
    fsdp = resolve_framework(FrameworkConfig(name="fsdp"))
    assert FC.fsdp_grad_flatten_ops(fsdp, 1, BLOCK) == []
    assert FC.fsdp_grad_flatten_ops(fsdp, 3, 0.0) == []


def test_the_split_backward_is_one_cat_over_the_flat_gradient():
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    class Log(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls.append(str(func))
            return func(*args, **(kwargs or {}))

    flat = torch.nn.Parameter(torch.randn(30 + 5 + 3))  # weight, bias, alignment padding
    with torch.enable_grad():  # FSDP1 _use_unsharded_views(as_params=False)
        weight, bias, _pad = torch.split(flat, [30, 5, 3])
    out = torch.nn.functional.linear(torch.randn(4, 6), weight.view(5, 6), bias).sum()
    with Log() as log:
        out.backward()
    assert log.calls.count("aten.cat.default") == 1  # the flat gradient written once
    assert flat.grad is not None and flat.grad.shape == flat.shape


def test_the_step_charges_the_flat_gradient(monkeypatch):
    from perfmodel.api import predict
    from perfmodel.validate.cases import case_scenario, load_cases

    sc = case_scenario(load_cases(match="llmfoundry_h100_80gb_amp_bf16_mpt13b_seq2048_64gpu")[0])
    charged = predict(sc).step_time_s
    monkeypatch.setattr(FC, "fsdp_grad_flatten_ops", lambda *args: [])
    bare = predict(sc).step_time_s
    # 40 blocks x 4 B x 315 M parameters = 50 GB at H100 HBM rates: 12-30 ms
    assert 0.012 < charged - bare < 0.030
