"""Hidden states between layers stay 16-bit under quantised GEMM inputs (Precision.hidden):
the TP all-reduce moves the same bytes for W8A8 as for weight-only fp8."""

import pytest

import perfmodel as pm
from perfmodel.moe_parallel import stage_comm
from perfmodel.ops import Precision


@pytest.mark.parametrize("act, expected", [("fp8", 2.0), ("nvfp4", 2.0), ("bf16", 2.0),
                                           ("fp32", 4.0)])
def test_hidden_bytes_are_the_wider_of_16_bit_and_the_activations(act, expected):
    prec = Precision.inference("fp8" if act != "fp32" else "fp32", act, "bf16")
    assert prec.hidden == expected


def _tp2(**inf):
    base = {"batch": 8, "prompt_len": 512, "output_len": 64, "weight_dtype": "fp8"}
    base.update(inf)
    return pm.Scenario(kind="inference", model="llama-2-7b",
                       system={"device": "h100-sxm5-80gb", "num_gpus": 2},
                       parallelism={"tp": 2}, inference=base)


def test_w8a8_all_reduce_moves_bf16_hidden_states():
    """The decode step's TP all-reduces are the same for fp8 and bf16 activations (the
    o_proj / down_proj outputs are bf16 either way), and equal 2 all-reduces per layer of
    batch x hidden x 2 B (hand count: 8 x 4096 x 2 = 65,536 B per all-reduce)."""
    w8a8 = pm.predict(_tp2(activation_dtype="fp8"))
    w8a16 = pm.predict(_tp2(activation_dtype="bf16"))
    assert w8a8.breakdown["decode_step"]["tp_comm"] == pytest.approx(
        w8a16.breakdown["decode_step"]["tp_comm"])


def test_stage_comm_counts_the_bytes_it_is_given():
    """stage_comm's all-reduce time grows with the hidden bytes it is handed (2 B moves more
    than a mistaken 1 B), the bytes Precision.hidden supplies."""
    from perfmodel.resolve import inference_inputs, resolve

    r = resolve(_tp2(activation_dtype="fp8"))
    plan = inference_inputs(r.scenario, r.system, r.profile).plan
    assert plan.precision.hidden == 2.0
    model = r.scenario.model
    one = stage_comm(model, plan, 8, "decode", 1.0, r.system, r.profile).tp
    two = stage_comm(model, plan, 8, "decode", 2.0, r.system, r.profile).tp
    assert two > one > 0
