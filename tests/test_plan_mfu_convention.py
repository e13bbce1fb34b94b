"""``mfu`` means one thing in predict and plan-training -- Megatron's model FLOPs utilisation
(``Prediction.mfu``) -- and the 6ND figure is named ``mfu_6nd`` in both (QA: plan-training's
``mfu`` was 0.514 by 6ND where predict's was 0.584 by Megatron's FLOPs, same plan).

The 6ND MFU of plan-training and predict (one code path: ``Prediction.mfu_6nd``) counts N
as ALL active parameters, embeddings and LM head included -- Chinchilla's N (Hoffmann et al.
2022 arXiv 2203.15556; Pearce & Song 2024 arXiv 2406.12907 on the Kaplan / Chinchilla
difference) -- and says so; Kaplan et al. 2020 (arXiv 2001.08361 Sec. 2.1) exclude the
vocabulary and position embeddings. Numbers by hand from Llama-3-70B's config.json
(meta-llama/Meta-Llama-3-70B: 80 layers, hidden 8,192, 8 KV heads of 128, FFN 28,672,
vocabulary 128,256, untied embeddings, RMSNorm weights only)."""

from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.planning.render import render

ROOT = Path(__file__).resolve().parents[1]
L, H, KV, FFN, V = 80, 8192, 8 * 128, 28672, 128256
TOTAL = L * (2 * H * H + 2 * H * KV + 3 * H * FFN + 2 * H) + 2 * V * H + H
KAPLAN = TOTAL - 2 * V * H  # without the input embedding and the (untied) LM head


def test_the_hand_counts():
    assert TOTAL == 70_553_706_496  # the 70.6 B of the QA
    assert KAPLAN == 68_452_360_192  # the 68.5 B of the QA
    ratio = KAPLAN / TOTAL
    assert abs(ratio - 0.9702) < 1e-4


def test_predict_mfu_6nd_uses_total_parameters():
    pred = pm.predict(ROOT / "examples/llama3-70b-train-h100.yaml")
    peak = 989.4e12  # H100 SXM dense bf16, hardware_specs/devices/h100-sxm5-80gb.yaml
    tokens_per_s = 512 * 8192 / pred.step_time_s
    assert pred.mfu_6nd == pytest.approx(6 * TOTAL * tokens_per_s / (256 * peak), rel=1e-9)
    kaplan = 6 * KAPLAN * tokens_per_s / (256 * peak)
    assert kaplan == pytest.approx(0.9702 * pred.mfu_6nd, rel=1e-4)


def test_plan_training_says_which_n():
    res = pm.plan_training(model="llama-3-8b", tokens="100B", devices="h100-sxm5-80gb",
                           max_gpus=16)
    assert "Chinchilla" in res.inputs["mfu_6nd"] and "Kaplan" in res.inputs["mfu_6nd"]
    assert "Megatron" in res.inputs["mfu"]
    text = render(res)
    assert "6 x active parameters incl. embeddings" in text and "Hoffmann et al. 2022" in text
    assert "MFU 6ND %" in text


def test_mfu_is_predicts_mfu_in_plan_training():
    """The same plan through predict and plan-training gives the same ``mfu`` and
    ``mfu_6nd`` (Megatron > 6ND: the attention FLOPs)."""
    from perfmodel.search import scenario_for
    from perfmodel.specs.scenario import Scenario, SystemConfig, TrainingConfig

    res = pm.plan_training("llama-3-8b", tokens="100B", devices="h100-sxm5-80gb", max_gpus=16)
    row = res.rows[-1]
    sc = Scenario(kind="training", model="llama-3-8b",
                  system=SystemConfig(device="h100-sxm5-80gb", num_gpus=row.gpus),
                  training=TrainingConfig(seq_len=8192, global_batch=512))
    pred = pm.predict(scenario_for(sc, row.plan))
    d = row.to_dict()
    assert d["mfu"] == pred.mfu and d["mfu_6nd"] == pred.mfu_6nd
    assert d["mfu_6nd"] < d["mfu"]
    assert {"mfu", "mfu_6nd"} <= set(res.to_csv().splitlines()[0].split(","))
