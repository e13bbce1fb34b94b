"""``perfmodel.plan_serving``: one call as ``plan-serving`` (QA4 item 9), errors in the API's
words (``prompt_len=``, ``devices=``) and the commands' messages (QA4 item 10)."""

from __future__ import annotations

import argparse

import pytest

import perfmodel as pm
from perfmodel.argtypes import int_list, positive_int
from perfmodel.serving.cli import add_arguments, length_distribution, plan_inputs

H100 = "h100-sxm5-80gb"
BASE = {"rate": 4, "ttft_p90": 1.0, "tpot_p90": 0.05, "prompt_len": 1024, "output_len": 128,
        "devices": [H100], "tp": [1, 2], "engine": "vllm", "num_requests": 100}


def _cli_inputs(*argv: str):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return plan_inputs(parser.parse_args(list(argv)))


def test_one_call_answers_as_the_command():
    res = pm.plan_serving("llama-3-8b", **BASE)
    cli = pm.plan_serving(_cli_inputs(
        "--model", "llama-3-8b", "--rate", "4", "--ttft-p90", "1", "--tpot-p90", "0.05",
        "--prompt-len", "1024", "--output-len", "128", "--devices", H100, "--tp", "1,2",
        "--engine", "vllm", "--num-requests", "100"))
    assert res.best is not None and res.to_dict() == cli.to_dict()
    assert res.inputs["rate_per_s"] == 4


def test_lengths_lists_and_slo_dict_as_objects():
    from perfmodel.specs.scenario import LengthDistribution

    inp = pm.api._serving_inputs("llama-3-8b", {
        **BASE, "prompt_len": {"kind": "uniform", "min": 128, "max": 1024},
        "output_len": LengthDistribution(kind="fixed", value=64), "devices": f"{H100},b200",
        "slo": {"ttft_p99_s": 2}})
    assert (inp.prompt_len.min, inp.prompt_len.max, inp.output_len.value) == (128, 1024, 64)
    assert inp.devices == [H100, "b200"] and inp.slo.ttft_p99_s == 2 and inp.tps == (1, 2)


@pytest.mark.parametrize("kwargs, says", [
    ({"prompt_len": "foo"}, ["prompt_len=", "lognormal:MEAN:CV"]),
    ({"rate": 0}, ["rate=", "positive number"]),
    ({"engine": "tgi"}, ["engine=", "'vllm'", "'sglang'"]),
    ({"raet": 3}, ["unknown argument 'raet'", "did you mean rate"]),
    ({"slo": {"ttft_p99": 2}}, ["slo=", "ttft_p99_s"]),
    ({"ttft_p90": None, "tpot_p90": None}, ["at least one SLO", "ttft_p90="]),
    ({"prompt_len": 200_000}, ["prompt_len= + output_len=", "200127 tokens", "8192"]),
])
def test_api_errors_name_the_keyword_and_what_is_valid(kwargs, says):
    with pytest.raises(pm.SpecError) as err:
        pm.plan_serving("llama-3-8b", **{**BASE, **kwargs})
    msg = str(err.value)
    assert all(s in msg for s in says), msg
    assert "--" not in msg.replace("--help", ""), msg  # no CLI flag in an API message


def test_plan_training_errors_name_the_keyword_the_command_the_flag():
    with pytest.raises(pm.SpecError) as err:
        pm.plan_training("llama-3-8b", tokens="1T", devices="h100")
    msg = str(err.value)
    assert msg.startswith("devices=: unknown device 'h100'") and "h100-sxm5-80gb" in msg
    assert "--devices" not in msg
    with pytest.raises(pm.SpecError, match=r"give seq_len=8192 or less"):
        pm.plan_training("llama-3-8b", tokens="1T", devices=H100, seq_len=16384)


def test_length_error_lists_every_form():
    for bad in ("foo", "0", "uniform:1", "lognormal:x:1"):
        with pytest.raises(argparse.ArgumentTypeError, match="lognormal:MEAN:CV"):
            length_distribution(bad)


def test_a_whole_number_in_exponent_form_is_refused_saying_why():
    """1e9 is refused (a typo must not start a huge run: argtypes), but the message says it is
    a whole number written with an exponent and gives the digits, not 'not a number (1 to
    1,000,000,000)'; a fractional value says so."""
    with pytest.raises(argparse.ArgumentTypeError, match=r"exponent; give it in digits "
                                                          r"\(1000000000\)"):
        positive_int("1e9")
    with pytest.raises(argparse.ArgumentTypeError, match=r"'1e9' in '1,1e9' is a whole number"):
        int_list("1,1e9")  # --concurrency 1,1e9: where in the list, and why
    with pytest.raises(argparse.ArgumentTypeError, match="fractional part"):
        positive_int("1.5")
    with pytest.raises(argparse.ArgumentTypeError, match="far too large"):
        positive_int("1e400")
    with pytest.raises(argparse.ArgumentTypeError, match=r"'0' in '1,0' is not a positive"):
        int_list("1,0")


def test_plan_serving_context_message_offers_what_the_command_takes():
    from perfmodel.errors import SpecError

    with pytest.raises(SpecError) as err:
        _cli_inputs("--model", "llama-3-8b", "--rate", "1", "--ttft-p90", "5",
                    "--prompt-len", "200000", "--output-len", "100")
    msg = str(err.value)
    assert "--prompt-len + --output-len" in msg and "200099 tokens" in msg
    assert "set allow_beyond_context" not in msg and "give shorter lengths" in msg
