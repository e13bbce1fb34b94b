"""QA 1205d D10: an ep x etp that does not fit a pipeline stage names what would (etp not
given is tp, as Megatron-Core's --expert-tensor-parallel-size; the fitting expert TP degrees)."""
import pytest

import perfmodel as pm


def _scenario(par: dict) -> dict:
    return {"kind": "training", "model": "qwen3-30b-a3b",
            "system": {"device": "h100-sxm5-80gb", "num_gpus": 16}, "parallelism": par,
            "training": {"global_batch": 64, "micro_batch": 1, "seq_len": 4096}}


def test_the_refusal_says_etp_followed_tp_and_which_etp_fit():
    # 16 GPUs, tp 2: a stage has 16 ranks; ep 16 x etp 2 = 32 does not divide it, etp 1 does
    with pytest.raises(pm.SpecError) as info:
        pm.predict(_scenario({"tp": 2, "pp": 1, "ep": 16}))
    text = str(info.value)
    assert text.startswith("parallelism.ep: ep*etp = 16*2 = 32")
    assert "etp not given is tp" in text and "valid etp: 1)" in text
    pm.predict(_scenario({"tp": 2, "pp": 1, "ep": 16, "etp": 1}))   # the remedy runs


def test_tp4_ep4_lists_every_expert_tp_that_fits():
    # tp 4 on 16 GPUs: ep 4 x etp 4 = 16 divides 16, so pick ep 8: 16 / 8 = 2 -> etp 1 or 2
    with pytest.raises(pm.SpecError, match=r"valid etp: 1, 2\)"):
        pm.predict(_scenario({"tp": 4, "pp": 1, "ep": 8}))
