"""plan-serving's 'not feasible' list prints a reason shared by several devices once."""

from perfmodel.serving.capacity import Candidate, _grouped_reasons, _nothing_feasible, render_plan


def test_a_tp_the_model_refuses_is_one_line():
    heads = "does not apply: parallelism.tp: tp (3) must divide the model's 64 attention heads"
    cands = [Candidate("a100-sxm4-80gb", 3, False, heads), Candidate("h100-sxm5-80gb", 3, False,
                                                                     heads),
             Candidate("gh200", 3, False, "does not apply: system.inter_node: ..."),
             Candidate("h100-sxm5-80gb", 2, False, heads)]
    assert _grouped_reasons(cands) == [
        f"  a100-sxm4-80gb, h100-sxm5-80gb tp 3: {heads}",
        "  gh200 tp 3: does not apply: system.inter_node: ...",
        f"  h100-sxm5-80gb tp 2: {heads}"]


def test_nothing_fitting_in_memory_is_said_as_memory_not_slos():
    """Llama-3.1-405B (~756 GiB of bf16 weights) on L4s (24 GB) at tp <= 8: every candidate
    leaves no KV cache, so the headline names memory and what adds it, not the SLOs."""
    from perfmodel.api import plan_serving

    result = plan_serving(model="llama-3.1-405b", rate=1, prompt_len=1000, output_len=100,
                          ttft_p90=5, tpot_p90=0.1, devices=["l4"])
    assert not any(c.feasible for c in result.candidates)
    text = render_plan(result)
    assert "nothing fits in memory" in text and "--pp 2,4" in text
    assert "no device / TP meets the SLOs" not in text


def test_slo_misses_keep_the_slo_headline():
    fit = Candidate("h100-sxm5-80gb", 1, False, "SLOs not met within max_gpus = 8")
    oom = Candidate("l4", 1, False, "does not apply: serving: the longest request (1100 "
                    "tokens) does not fit in the KV cache of one mixed instance",
                    out_of_memory=True)
    assert _nothing_feasible([fit, oom]) == "no device / TP meets the SLOs"
    assert _nothing_feasible([oom]).startswith("nothing fits in memory")
