"""QA 1205c D8: ``kind: inference`` with a batch that is not a multiple of attention_dp is
refused naming the field and what would be valid, and each remedy the message offers runs;
a MoE batch below attention_dp runs under SGLang, whose other ranks run idle
(inference.idle_ranks, tests/test_attention_dp_idle_ranks.py)."""

import pytest

import perfmodel as pm
from perfmodel.errors import SpecError

BASE = dict(kind="inference", model="deepseek-r1", engine="sglang",
            system={"device": "b200", "num_gpus": 8},
            parallelism={"tp": 1, "attention_dp": 8, "ep": 8},
            inference={"batch": 4, "prompt_len": 1024, "output_len": 256})


def _refusal(**changes) -> str:
    scenario = {**BASE, **changes}
    with pytest.raises(SpecError) as info:
        pm.predict(scenario)
    return str(info.value)


def test_a_batch_below_attention_dp_names_the_field_and_the_remedies():
    # vLLM's dummy batch is not read: refused there
    message = _refusal(engine="vllm")
    assert message.startswith("inference.batch: batch (4) must be a multiple of "
                              "parallelism.attention_dp (8)")
    assert "valid: batch 8;" in message  # ep 8 needs tp*attention_dp >= 8: no smaller dp
    assert "kind: serving" in message and "concurrency: 4" in message


def test_a_smaller_attention_dp_is_offered_only_where_the_plan_allows_it():
    message = _refusal(engine="vllm", parallelism={"tp": 1, "attention_dp": 8, "ep": 4})
    assert "valid: batch 8, or attention_dp 4 (dividing 4)" in message
    message = _refusal(inference={**BASE["inference"], "batch": 12})
    assert "valid: batch 8 or 16;" in message  # 12 = 1.5 x 8; 3, 4, 6 break ep 8 or 8 GPUs


def test_the_offered_remedies_run():
    assert pm.predict({**BASE, "inference": {**BASE["inference"], "batch": 8}}).tpot_s > 0
    serving = {**BASE, "kind": "serving",
               "inference": {"prompt_len": 1024, "output_len": 256},
               "serving": {"arrival": {"process": "closed", "concurrency": 4},
                           "num_requests": 8, "seed": 0}}
    assert pm.predict(serving).tpot_s > 0


def test_sglang_runs_a_batch_below_attention_dp_with_idle_ranks():
    """4 requests on 8 DP ranks: each busy rank runs one sequence, as at batch 8, while the
    routed experts see 4 tokens instead of 8: no slower than batch 8, and a step is more
    than batch 1 on one rank's share alone would suggest (the collectives of 8 ranks)."""
    four = pm.predict(BASE).tpot_s
    eight = pm.predict({**BASE, "inference": {**BASE["inference"], "batch": 8}}).tpot_s
    assert 0 < four <= eight
