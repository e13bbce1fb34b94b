"""plan-serving's engine flags and layout rules (QA, helper H9): --max-model-len and each
engine's memory fraction under its own name (vLLM --gpu-memory-utilization, SGLang
--mem-fraction-static, TensorRT-LLM --free-gpu-memory-fraction) onto the scenario's engine
overrides, refused clearly where the engine has no such setting; --redundant-experts N|auto
(EPLB) so a wide-EP layout whose ep does not divide the experts runs; layouts breaking a
divisibility rule are filtered before modelling with their reason counted; a TensorRT-LLM
refusal whose weights alone exceed the GPU says so instead of suggesting a fraction."""

import argparse
import json
from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.cli import main
from perfmodel.errors import SpecError
from perfmodel.serving.capacity import (
    Layout,
    PlanInputs,
    layout_refusal,
    layouts,
    redundant_for,
)
from perfmodel.serving.cli import add_arguments, plan_inputs
from perfmodel.specs.scenario import EngineConfig, LengthDistribution, SLOConfig

ROOT = Path(__file__).resolve().parents[1]
DSR1 = ROOT / "tests/data/hf_configs/aiconfigurator-0.12.0/deepseek-ai--DeepSeek-R1_config.json"
VLLM_SCENARIO = ROOT / "examples" / "vllm-closed-loop-llama3.1-8b-h100.yaml"
BASE = ["--rate", "1", "--ttft-p90", "5", "--tpot-p90", "0.1", "--prompt-len", "1000",
        "--output-len", "200", "--num-requests", "60"]


def _args(*argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args([str(a) for a in argv])


def _inputs(model, **kw):
    return PlanInputs(model=pm.get_model(str(model)), rate_per_s=1.0,
                      slo=SLOConfig(ttft_p90_s=5.0),
                      prompt_len=LengthDistribution(kind="fixed", value=1000),
                      output_len=LengthDistribution(kind="fixed", value=100), **kw)


# --- engine overrides as flags --------------------------------------------------------------

def test_flags_become_the_engines_own_overrides():
    inp = plan_inputs(_args("--model", "llama-3-8b", "--engine", "vllm", *BASE,
                            "--max-model-len", "4096", "--gpu-memory-utilization", "0.95"))
    assert inp.engine.name == "vllm"
    assert inp.engine.max_model_len == 4096 and inp.engine.gpu_memory_utilization == 0.95
    inp = plan_inputs(_args("--model", "llama-3-8b", "--engine", "sglang", *BASE,
                            "--mem-fraction-static", "0.8"))
    assert inp.engine.mem_fraction_static == 0.8
    inp = plan_inputs(_args("--model", "llama-3-8b", "--engine", "trtllm", *BASE,
                            "--free-gpu-memory-fraction", "0.5"))
    assert inp.engine.free_gpu_memory_fraction == 0.5


def test_flags_override_a_scenarios_engine_and_say_so(tmp_path):
    import yaml

    data = yaml.safe_load(VLLM_SCENARIO.read_text())
    data["model"] = "llama-3.1-8b"
    data["engine"] = {"name": "vllm", "max_model_len": 8192, "max_num_seqs": 64}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    inp = plan_inputs(_args(path, "--rate", "2", "--ttft-p90", "1", "--arrival", "poisson",
                            "--max-model-len", "4096"))
    assert inp.engine.name == "vllm"
    assert inp.engine.max_model_len == 4096 and inp.engine.max_num_seqs == 64  # kept
    assert "engine.max_model_len 8192 -> 4096" in inp.replaced


def test_a_request_longer_than_the_engines_context_is_refused_where_the_engine_rejects_it(
        tmp_path):
    """vLLM / SGLang reject a prompt + output above max_model_len (engines/<id>.yaml
    scheduler.over_context_request, predict.rejecting_limit): refused whether the context
    comes from the flag or from the scenario's engine (review: the scenario's was planned as
    if served); TensorRT-LLM's file states no such rule, so its flag is taken as given."""
    import yaml

    data = yaml.safe_load(VLLM_SCENARIO.read_text())
    data["model"] = "llama-3.1-8b"
    data["engine"] = {"name": "vllm", "max_model_len": 1100}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"the scenario's engine\.max_model_len: 1,100 tokens"):
        plan_inputs(_args(path, "--rate", "2", "--ttft-p90", "1", "--arrival", "poisson",
                          "--prompt-len", "1000", "--output-len", "200"))
    inp = plan_inputs(_args("--model", "llama-3-8b", *BASE, "--engine", "trtllm",
                            "--max-model-len", "1100"))
    assert inp.engine.max_model_len == 1100


@pytest.mark.parametrize("argv, words", [
    (["--max-model-len", "4096"], ["generic engine has no max_model_len", "--engine"]),
    (["--engine", "vllm", "--mem-fraction-static", "0.8"],
     ["sglang's memory fraction", "--gpu-memory-utilization"]),
    (["--engine", "trtllm", "--gpu-memory-utilization", "0.9"],
     ["vllm's memory fraction", "--free-gpu-memory-fraction"]),
    (["--engine", "llamacpp", "--gpu-memory-utilization", "0.9"],
     ["vllm's memory fraction", "llamacpp has no memory fraction"]),
    # the longest request, 1000 + 200 = 1200 tokens: vLLM's _validate_input refuses
    # prompt + max_tokens > max_model_len, so 1199 (the KV positions it holds) is one short
    (["--engine", "vllm", "--max-model-len", "1199"], ["1,200", "would reject"]),
    # llama-3-8b's context is 8,192 (config.json max_position_embeddings); vLLM refuses above
    (["--engine", "vllm", "--max-model-len", "8193"], ["--max-model-len", "8,192"]),
    # a dense model has no routed experts to replicate (reviewer: was accepted, ignored)
    (["--redundant-experts", "8"], ["--redundant-experts", "no routed experts"]),
    (["--redundant-experts", "auto"], ["--redundant-experts", "no routed experts"]),
    # nor attention to split into DP groups: a dense model's layouts are TP only, so the
    # degrees were ignored (QA 12-05: --tp 2 --attention-dp 2 planned tp 2 rows only)
    (["--tp", "2", "--attention-dp", "2"], ["--attention-dp", "dense model", "MoE models only"]),
])
def test_bad_engine_flags_are_one_message_naming_the_flag(argv, words):
    with pytest.raises(SpecError) as err:
        plan_inputs(_args("--model", "llama-3-8b", *BASE, *argv))
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("engine", ["trtllm", "llamacpp"])
def test_attention_dp_on_an_engine_without_it_is_refused(engine):
    """A MoE model's attention DP is searched only on an engine whose file states it
    (capacity.dp_attention_supported: SGLang, vLLM, generic); TensorRT-LLM and llama.cpp
    state nothing, so the degrees would be ignored and no layout tried (review 12-05)."""
    with pytest.raises(SpecError) as err:
        plan_inputs(_args("--model", "qwen3-30b-a3b", *BASE, "--tp", "2", "--attention-dp", "2",
                          "--engine", engine))
    assert "--attention-dp" in str(err.value) and f"engine {engine}" in str(err.value)
    ok = plan_inputs(_args("--model", "qwen3-30b-a3b", *BASE, "--tp", "2",
                           "--attention-dp", "2", "--engine", "sglang"))
    assert ok.attention_dps == (2,)


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "x"])
def test_a_memory_fraction_outside_0_1_is_refused_by_the_parser(value, capsys):
    with pytest.raises(SystemExit):
        _args("--model", "llama-3-8b", "--gpu-memory-utilization", value)
    assert "--gpu-memory-utilization" in capsys.readouterr().err


def test_gpt_oss_120b_on_one_h100_runs_with_a_higher_utilization():
    """vLLM issues #23278 / #27508 (docs/engines.md, validation/inference/engine_startup.yaml):
    gpt-oss-120b on one H100 under vLLM's default 0.9 logs "Available KV cache memory: -2.14
    GiB" and does not start; with --gpu-memory-utilization 0.95 it starts with 1.71 GiB of KV
    (0.05 x 79.2 GiB = 3.96 GiB more budget). The flag must move the plan across that line."""
    argv = ["--model", "gpt-oss-120b", "--devices", "h100-sxm5-80gb", "--tp", "1",
            "--engine", "vllm", *BASE]
    before = pm.plan_serving(**_api(argv))
    assert before.best is None
    after = pm.plan_serving(**_api([*argv, "--gpu-memory-utilization", "0.95"]))
    assert after.best is not None and after.best.gpus == 1
    assert after.inputs["engine_settings"] == {"gpu_memory_utilization": 0.95}


def _api(argv):
    """The command's flags as plan_serving keywords."""
    out, it = {}, iter(argv)
    for flag in it:
        out[flag[2:].replace("-", "_")] = next(it)
    return out


# --- redundant experts and layout filtering -------------------------------------------------

def test_auto_redundant_experts_are_the_fewest_that_make_ep_divide():
    inp = _inputs(DSR1, redundant_experts="auto")
    # 256 routed experts: EP72 needs 288 = 4 x 72, the 32 SGLang's GB200 deployment adds
    # (lmsys.org/blog/2025-06-16-gb200-part-1: --ep-num-redundant-experts 32)
    assert redundant_for(inp, 72) == 32
    assert redundant_for(inp, 8) == 0 and redundant_for(inp, 1) == 0
    assert redundant_for(inp, 96) == 32  # 288 = 3 x 96
    assert redundant_for(inp, 48) == 32  # 288 = 6 x 48
    assert redundant_for(_inputs(DSR1, redundant_experts=16), 32) == 16
    assert redundant_for(_inputs("llama-3-8b", redundant_experts="auto"), 8) == 0  # dense


def test_layouts_breaking_a_rule_are_filtered_with_their_reason():
    inp = _inputs(DSR1, tps=(72,), attention_dps=(8, 72), engine=EngineConfig(name="sglang"))
    got = {x: layout_refusal(inp, x) for x in layouts(inp)}
    # 72 / 8 = tp 9: does not divide DeepSeek-R1's 128 heads
    assert got[Layout(9, 1, 8, 1)][1].startswith("parallelism.tp: tp (9) must divide")
    assert got[Layout(9, 1, 8, 72)][0] == got[Layout(9, 1, 8, 1)][0]
    assert got[Layout(1, 1, 72, 1)] is None
    # 256 experts over ep 72 without redundant experts: refused; with auto (+32): runs
    assert "--redundant-experts N or auto" in got[Layout(1, 1, 72, 72)][1]
    auto = _inputs(DSR1, tps=(72,), attention_dps=(72,), redundant_experts="auto",
                   engine=EngineConfig(name="sglang"))
    assert layout_refusal(auto, Layout(1, 1, 72, 72)) is None


def test_wide_ep_layout_of_our_example_is_modelled(capsys):
    """examples/deepseek-r1-wide-ep-gb200-nvl72.yaml's layout (tp 1, dp 72, ep 72, 32
    redundant experts, mem_fraction_static 0.82, context 2716) from plan-serving's flags."""
    code = main(["plan-serving", "--model", str(DSR1), "--devices", "gb200", "--tp", "8,72",
                 "--attention-dp", "8,72", "--engine", "sglang", "--redundant-experts", "auto",
                 "--mem-fraction-static", "0.82", "--max-model-len", "2716", "--rate", "5",
                 "--ttft-p90", "5", "--tpot-p90", "0.1", "--prompt-len", "2000",
                 "--output-len", "100", "--num-requests", "60", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    inputs = out["inputs"]
    assert "tp 1 dp 72 ep 72" in inputs["layouts"]
    assert inputs["redundant_experts"] == {"tp 1 dp 72 ep 72": 32}
    assert inputs["layouts_refused"] == [{
        "reason": inputs["layouts_refused"][0]["reason"], "count": 2,
        "layouts": ["tp 9 dp 8", "tp 9 dp 8 ep 72"]}]
    wide = [c for c in out["candidates"] if c["layout"] == "tp 1 dp 72 ep 72"]
    assert wide and not wide[0]["reason"].startswith("does not apply")
    assert not any("tp 9" in c["layout"] for c in out["candidates"])
    assert any(p["layout"] == "tp 1 dp 72 ep 72" for p in out["frontier_points"])


def test_refused_layouts_are_counted_not_listed_in_the_table(capsys):
    main(["plan-serving", "--model", str(DSR1), "--devices", "gb200", "--tp", "72",
          "--attention-dp", "8", "--engine", "sglang", "--rate", "5", "--ttft-p90", "5",
          "--prompt-len", "2000", "--output-len", "100", "--num-requests", "60"])
    text = capsys.readouterr().out
    assert "layouts not modelled (2" in text
    assert "2 layout(s), e.g. tp 9 dp 8: parallelism.tp: tp (9) must divide" in text
    assert "gb200 tp 9" not in text


def test_redundant_experts_flag_is_checked():
    with pytest.raises(SystemExit):
        _args("--model", "deepseek-v3", "--redundant-experts", "-1")
    assert _args("--redundant-experts", "auto").redundant_experts == "auto"
    assert _args("--redundant-experts", "32").redundant_experts == 32


# --- the TensorRT-LLM refusal when the weights alone exceed the device ----------------------

def test_trtllm_weights_beyond_the_device_say_so():
    """DeepSeek-V3 in its fp8 checkpoint: 671B parameters at ~1 byte (bf16 embeddings / head,
    block scales) = ~157 GiB per GPU over tp 4, twice an H100's 79.2 GiB: no memory fraction
    can help (TensorRT-LLM's applies to the memory left after the weights)."""
    result = pm.plan_serving(model="deepseek-v3", devices=["h100-sxm5-80gb"], tp=[4],
                             engine="trtllm", rate=1, ttft_p90=5, prompt_len=1000,
                             output_len=200, num_requests=60)
    reasons = [c.reason for c in result.candidates]
    assert reasons and all("the weights alone need" in r for r in reasons)
    for r in reasons:
        gib = float(r.split("the weights alone need ")[1].split(" GiB")[0])
        assert 150 < gib < 165  # 671.03e9 x ~1 B / 4 / 2**30 = 156 GiB + bf16 embeddings
        assert "set engine.free_gpu_memory_fraction" not in r
        assert "higher tp" in r and "weight_dtype" in r


@pytest.mark.parametrize("engine, words", [
    ("vllm", "gpu_memory_utilization 0.92 of 79.22 GiB"),  # the default from vLLM 0.20
    ("trtllm", "free_gpu_memory_fraction 0.9 of the memory left after weights and the "
               "activation peak"),
    ("sglang", "of the memory free at start-up"),
])
def test_the_engine_line_says_what_its_fraction_is_of(engine, words):
    """vLLM's fraction is of the whole device (79.22 GiB as CUDA reports an H100 80GB);
    TensorRT-LLM's of what its profiling run leaves (_torch/pyexecutor/_util.py); SGLang's of
    the memory free at start-up (engines/<id>.yaml memory.budget, sources there)."""
    from perfmodel.engine_report import render_engine

    p = pm.predict({"kind": "inference", "model": "llama-3.1-8b", "engine": engine,
                    "system": {"device": "h100-sxm5-80gb", "num_gpus": 1},
                    "inference": {"prompt_len": 512, "output_len": 64, "batch": 1}})
    assert words in render_engine(p.engine).splitlines()[0]


def test_a_refusal_naming_an_engine_setting_points_to_its_flag(capsys):
    code = main(["plan-serving", "--model", "gpt-oss-120b", "--devices", "h100-sxm5-80gb",
                 "--tp", "1", "--engine", "vllm", *BASE])
    out = capsys.readouterr().out
    assert code == 1 and "engine.gpu_memory_utilization >= " in out
    assert "engine.gpu_memory_utilization = --gpu-memory-utilization" in out
