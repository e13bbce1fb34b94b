"""Serving instances that span nodes (issues 9 and 13): DeepSeek-R1 as SGLang and vLLM run it
on two 8 x H100 nodes, TP16 (SGLang's DeepSeek docs: ``--tp 16 --nnodes 2``) or TP8 x PP2.

The serving iteration cost is the inference plan's pass: a TP group across nodes pays the
inter-node all-reduce, a pipeline across nodes its hops; an uneven layer split is the one the
engine makes (engines/<id>.yaml pipeline.default_split) and its largest stage paces the
micro-batches and sizes the KV cache. Errors about the split never contradict each other."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import perfmodel as pm
from perfmodel.engine_comm import tp_all_reduce_time
from perfmodel.errors import SpecError
from perfmodel.inference import forward_pass, inference
from perfmodel.moe_parallel import contiguous_span
from perfmodel.resolve import resolve_profile
from perfmodel.serving.capacity import PlanInputs, plan_serving
from perfmodel.serving.predict import deployment_for, serving_inputs
from perfmodel.specs.assemble import resolve_system
from perfmodel.specs.scenario import LengthDistribution, SLOConfig

TWO_NODES = {"device": "h100-sxm5-80gb", "num_gpus": 16, "gpus_per_node": 8,
             "inter_node": "ib-ndr-400x8"}
R1 = {"prompt_len": 1024, "output_len": 64, "weight_dtype": "fp8_block", "kv_dtype": "bf16"}


def serving(parallelism: dict, engine: str = "sglang", **system) -> dict:
    return {"kind": "serving", "model": "deepseek-v3", "engine": engine,
            "system": {**TWO_NODES, **system}, "parallelism": parallelism, "inference": R1,
            "serving": {"arrival": {"process": "closed", "concurrency": 8},
                        "num_requests": 16, "seed": 0}}


def deployment(data: dict):
    sc = pm.as_scenario(data)
    system, profile = resolve_system(sc.system), resolve_profile(sc)
    inf, wl = serving_inputs(sc)
    return sc, system, profile, deployment_for(sc, system, profile, inf, wl)


def decode_step(sc, system, profile, plan, b: int, c: int):
    """The inference model's decode step of b sequences at context c (output_len 1 puts every
    TPOT sample at kv = c + 1)."""
    return inference(sc.model, system, replace(plan, batch=b, prompt_len=c, output_len=1),
                     profile)


@pytest.fixture(scope="module")
def tp16():
    return deployment(serving({"tp": 16}))


def test_tp16_over_two_nodes_serves(tp16):
    pred = pm.predict(serving({"tp": 16}))
    inst = pred.serving["deployment"]["instances"][0]
    assert (inst["tp"], inst["pp"], inst["nodes_per_instance"]) == (16, 1, 2)
    assert pred.serving["tpot_s"]["p50"] > 0 and pred.fits


def test_tp16_decode_is_the_inference_decode_step_with_its_inter_node_all_reduce(tp16):
    sc, system, profile, dep = tp16
    cost, plan = dep.instances[0].cost, dep.instances[0].plan
    h = sc.model.hidden_size
    span = contiguous_span(np.asarray(16.0), system.gpus_per_node)
    assert (float(span.local), float(span.nodes)) == (8.0, 2.0)  # 8 GPUs on each of 2 nodes
    one_node = contiguous_span(np.asarray(8.0), system.gpus_per_node)
    for b, c in [(1, 1025), (2, 1040), (8, 1100)]:
        got = cost.iteration_time(decode_kv=[c + 1] * b)
        assert got == pytest.approx(float(decode_step(sc, system, profile, plan, b, c).tpot),
                                    rel=1e-3)
        # two all-reduces of the b x hidden bf16 activations per layer (Shoeybi et al. 2019,
        # Megatron-LM Sec. 3: one after attention, one after the MLP / MoE), 61 layers
        step = forward_pass(sc.model, system, plan, profile, b, 1.0, c + 1, c + 1, "decode",
                            b, False)
        nbytes = b * h * 2.0
        ar = tp_all_reduce_time("sglang", nbytes, span, system, profile)
        assert float(step.tp_comm) == pytest.approx(2 * 61 * float(ar), rel=1e-9)
        # ... an all-reduce over both nodes costs more than one inside a node
        inside = tp_all_reduce_time("sglang", nbytes, one_node, system, profile)
        assert float(ar) > float(inside)
        assert got > got - float(step.tp_comm) + 2 * 61 * float(inside)


def test_pp2_with_61_layers_serves_with_the_engines_split():
    # SGLang get_pp_indices: 61 // 2 = 30 each, one more on the last stage (engines/sglang.yaml
    # default_split: last_ranks); vLLM get_pp_indices: the remainder to the stages before the
    # last (engines/vllm.yaml before_last)
    # TensorRT-LLM Mapping.pp_layers: the first L % pp ranks one more (first_ranks)
    for engine, split in (("sglang", [30, 31]), ("vllm", [31, 30]), ("trtllm", [31, 30])):
        pred = pm.predict(serving({"tp": 8, "pp": 2}, engine=engine))
        inst = pred.serving["deployment"]["instances"][0]
        assert inst["pipeline_layers"] == split and inst["nodes_per_instance"] == 2


def test_uneven_pp_kv_and_memory_are_the_largest_stages():
    dep = deployment(serving({"tp": 8, "pp": 2}))[3]
    inst = dep.instances[0]
    assert inst.plan.pp_layers == (30, 31)
    # MLA latent KV per token and layer: (kv_lora_rank 512 + rope head dim 64) x 2 bytes,
    # the same on every TP rank; the 31-layer stage holds 31 of them
    assert inst.kv.bytes_per_token == (512 + 64) * 2 * 31
    # the generic engine: the same rule through kv_capacity
    _, _, _, gen = deployment(serving({"tp": 8, "pp": 2, "pipeline_layers": [29, 32]},
                                      engine="generic"))
    assert gen.instances[0].kv.bytes_per_token == (512 + 64) * 2 * 32
    even = deployment(serving({"tp": 8, "pp": 2, "pipeline_layers": [30, 31]},
                              engine="generic"))[3]
    assert gen.instances[0].kv.memory["weights"] > even.instances[0].kv.memory["weights"]


def test_uneven_pp_decode_is_paced_by_the_largest_stage():
    sc, system, profile, dep = deployment(serving({"tp": 8, "pp": 2, "pipeline_layers":
                                                   [29, 32]}, engine="generic"))
    cost, plan = dep.instances[0].cost, dep.instances[0].plan
    for b, c in [(1, 1025), (2, 1040), (8, 1100)]:
        ref = decode_step(sc, system, profile, plan, b, c)  # pipeline.pipelined_step_time
        assert cost.iteration_time(decode_kv=[c + 1] * b) == pytest.approx(float(ref.tpot),
                                                                           rel=1e-3)
        runs = cost.decode_run_times(np.full(b, float(c)), 1)
        assert float(runs[0]) == pytest.approx(float(ref.tpot), rel=1e-3)
    # two micro-batches: the 32-layer stage sets the pace, slower than an even-ish split
    even = deployment(serving({"tp": 8, "pp": 2, "pipeline_layers": [30, 31]},
                              engine="generic"))[3].instances[0].cost
    assert cost.iteration_time(decode_kv=[1101] * 8) > even.iteration_time(decode_kv=[1101] * 8)


def test_split_errors_do_not_send_the_user_in_a_circle():
    # generic engine: no split of its own; the error names the fields, and each is accepted
    with pytest.raises(SpecError, match="uneven_pipeline: true") as err:
        pm.predict(serving({"tp": 8, "pp": 2}, engine="generic"))
    assert "pipeline_layers" in str(err.value)
    for extra in ({"uneven_pipeline": True}, {"pipeline_layers": [30, 31]},
                  {"pipeline_split": [1, 1]}):
        pred = pm.predict(serving({"tp": 8, "pp": 2, **extra}, engine="generic"))
        assert pred.serving["deployment"]["instances"][0]["pipeline_layers"]
    with pytest.raises(SpecError, match=r"parallelism\.pipeline_layers sums to 60"):
        pm.predict(serving({"tp": 8, "pp": 2, "pipeline_layers": [30, 30]}, engine="generic"))
    # an engine without explicit counts: the same refusal as an inference scenario's
    with pytest.raises(SpecError, match=r"parallelism\.pipeline_layers: trtllm"):
        pm.predict(serving({"tp": 8, "pp": 2, "pipeline_layers": [30, 31]}, engine="trtllm"))


def test_an_instance_across_nodes_needs_a_network():
    # a node preset without a scale-out network (hardware_specs/nodes/pcie-server-gen3.yaml)
    with pytest.raises(SpecError, match=r"system\.inter_node"):
        pm.predict(serving({"tp": 16}, node="pcie-server-gen3", inter_node=None))
    # a system without a network, built by hand: the deployment says the same
    sc, system, profile, _ = deployment(serving({"tp": 16}))
    inf, wl = serving_inputs(sc)
    with pytest.raises(SpecError, match=r"system\.inter_node.*tp\*pp = 16 GPUs"):
        deployment_for(sc, replace(system, inter=None, nics_per_node=0), profile, inf, wl)


def test_plan_serving_takes_tp_above_a_node_and_pp():
    inp = PlanInputs(model=pm.get_model("deepseek-v3"), rate_per_s=1.0,
                     slo=SLOConfig(tpot_p90_s=0.2),
                     prompt_len=LengthDistribution(kind="fixed", value=512),
                     output_len=LengthDistribution(kind="fixed", value=32),
                     devices=["h100-sxm5-80gb"], tps=(16,), pps=(1, 2), num_requests=20,
                     attention_dps=(1,),  # TP-only instances (MoE layouts: test_plan_serving_layouts)
                     inference=pm.as_scenario(serving({"tp": 16})).inference)
    res = plan_serving(inp)
    got = {(c.tp, c.pp): c for c in res.candidates if c.attention_dp == 1}
    assert set(got) == {(16, 1), (16, 2)}
    for (tp, pp), c in got.items():
        assert "spans more than one node" not in c.reason
        if c.feasible:
            assert c.gpus == c.replicas * tp * pp
    assert got[(16, 1)].feasible
