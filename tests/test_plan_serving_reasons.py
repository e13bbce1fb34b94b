"""plan-serving's 'not feasible' list prints a reason shared by several devices once."""

from perfmodel.serving.capacity import Candidate, _grouped_reasons


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
