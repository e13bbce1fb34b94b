"""plan-serving and sweep-concurrency resolve their scenarios as predict does (review 1203c
finding 6): the model each simulates carries its engine's recurrent-state dtypes
(resolve.with_engine_state), and plan-serving's KV pool for Nemotron-H-56B under SGLang is
predict's for the same layout."""

from __future__ import annotations

from pathlib import Path

import perfmodel as pm
import perfmodel.serving.capacity as cap
import perfmodel.serving.sweep as sweep
from perfmodel.serving.capacity import Layout, PlanInputs, _scenario, plan_serving
from perfmodel.specs.scenario import EngineConfig, LengthDistribution, SLOConfig
from perfmodel.zoo import load_hf_config

CONFIGS = Path(__file__).resolve().parent / "data" / "hf_configs" / "aiconfigurator-0.12.0"
NEMOTRON_H = CONFIGS / "nvidia--Nemotron-H-56B-Base-8K_config.json"
DEVICE = "h200-sxm-141gb"


def _inputs() -> PlanInputs:
    return PlanInputs(model=load_hf_config(NEMOTRON_H), rate_per_s=1.0,
                      slo=SLOConfig(ttft_p90_s=5.0, tpot_p90_s=0.2),
                      prompt_len=LengthDistribution(kind="fixed", value=512),
                      output_len=LengthDistribution(kind="fixed", value=32),
                      devices=[DEVICE], tps=(4,), num_requests=40,
                      engine=EngineConfig(name="sglang"), max_num_seqs=(64,))


def _capture(monkeypatch, module) -> list:
    seen = []
    real = module.deployment_for

    def spy(sc, *args, **kw):
        dep = real(sc, *args, **kw)
        seen.append((sc, dep))
        return dep

    monkeypatch.setattr(module, "deployment_for", spy)
    return seen


def test_plan_serving_kv_pool_is_predicts(monkeypatch):
    inp = _inputs()
    # the unresolved model: the generic rule (no dtype in the config: bf16, 2 B)
    assert inp.model.mamba.state_bytes == 2.0
    seen = _capture(monkeypatch, cap)
    plan_serving(inp)
    (sc, dep), = seen
    # SGLang keeps the SSM state in fp32 without a config dtype (engines/sglang.yaml
    # memory.state_dtype: config_or_fp32), conv bf16
    assert (sc.model.mamba.state_bytes, sc.model.mamba.conv_bytes) == (4.0, 2.0)
    pred = pm.predict(_scenario(inp, DEVICE, Layout(4)))
    inst = pred.serving["deployment"]["instances"][0]
    assert dep.instances[0].kv.tokens == inst["kv_tokens"] > 0
    assert dep.instances[0].kv.num_blocks == inst["kv_blocks"]


def test_sweep_simulates_the_resolved_scenario(monkeypatch):
    sc = _scenario(_inputs(), DEVICE, Layout(4))
    seen = _capture(monkeypatch, sweep)
    sweep.sweep_concurrency(sc, [1], num_requests=4)
    (used, _dep), = seen
    assert used.model.mamba.state_bytes == 4.0
