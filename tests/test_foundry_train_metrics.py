"""Composer's per-micro-batch train metrics (frameworks/fsdp.yaml loss.train_metrics,
frameworks_costs.train_metric_ops): ComposerMPTCausalLM's LanguageCrossEntropy and
LanguagePerplexity each run torch.nn.CrossEntropyLoss over the full bf16 logits under the
amp_bf16 autocast after the backward, without gradient. Checked against a hand count of the
bytes (fp32 cast r2 w4 + log_softmax r4 w4 = 14 B per logit, per metric)."""

import pytest

from perfmodel import frameworks_costs as FC
from perfmodel import ops as O
from perfmodel.errors import SpecError
from perfmodel.frameworks import framework_spec, resolve_framework
from perfmodel.frameworks_config import FrameworkConfig
from perfmodel.specs.registry import get_model

PREC = O.Precision(compute="bf16", act=2.0, weight=2.0)


def metric_ops(name: str, tokens: float, tp: float = 1.0) -> list[O.Op]:
    model = get_model("mpt-7b")
    fw = resolve_framework(FrameworkConfig(name=name))
    return FC.train_metric_ops(fw, O.head_ops(model, tokens, tp, PREC))


def test_two_fp32_cross_entropies_per_micro_batch_by_hand():
    tokens = 6 * 2048  # MPT-7B llm-foundry row: micro-batch 6 x seq 2048
    ops = metric_ops("llm-foundry", tokens)
    assert len(ops) == 2
    logits = tokens * 50368
    for op in ops:
        assert op.bytes == pytest.approx(logits * (2 + 4 + 4 + 4))
        assert op.launches == 3.0  # cast, log_softmax, nll_loss
        assert op.phase == "bwd" and op.flops == 0.0
        assert op.name.endswith(FC.UNFUSED)  # reported with the unfused element-wise kernels


def test_vocab_parallel_share_under_tp():
    one, two = metric_ops("fsdp", 4096.0), metric_ops("fsdp", 4096.0, tp=2.0)
    assert two[0].bytes == pytest.approx(one[0].bytes / 2)


@pytest.mark.parametrize("name", ["megatron-core", "torchtitan", "deepspeed"])
def test_other_stacks_compute_no_train_metrics(name):
    assert metric_ops(name, 4096.0) == []


def test_the_step_charges_the_metrics(monkeypatch):
    from perfmodel.api import predict
    from perfmodel.validate.cases import case_scenario, load_cases

    sc = case_scenario(load_cases(match="llmfoundry_h100_80gb_amp_bf16_mpt1b_seq2048_64gpu")[0])
    charged = predict(sc).step_time_s
    monkeypatch.setattr(FC, "train_metric_ops", lambda *args: [])
    bare = predict(sc).step_time_s
    # 2 x 14 B x 20 x 2048 x 50368 logits = 57.8 GB at H100 HBM rates: 15-35 ms (a derived
    # backward at twice the bytes would triple it)
    assert 0.015 < charged - bare < 0.035


def test_unknown_metric_decomposition_is_refused(monkeypatch):
    spec = framework_spec("fsdp")
    bad = spec.model_copy(update={"loss": spec.loss.model_copy(
        update={"train_metrics": ["no_such_pass"]})})
    from perfmodel import frameworks as F

    framework_spec.cache_clear()
    monkeypatch.setattr(F, "load_named", lambda *args: bad)
    try:
        with pytest.raises(SpecError, match="no_such_pass"):
            framework_spec("fsdp")
    finally:
        framework_spec.cache_clear()
