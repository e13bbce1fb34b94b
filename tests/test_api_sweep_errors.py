"""``perfmodel.sweep_concurrency``'s errors in the API's words (``concurrency=``,
``num_requests=``, with what is valid), ``perfmodel sweep-concurrency``'s in its flags
(``--concurrency``): one check, the caller's namer (as ``plan_serving``, 346e9d6)."""

from __future__ import annotations

from pathlib import Path

import pytest

import perfmodel as pm
from perfmodel.cli import main
from perfmodel.errors import SpecError
from perfmodel.serving.sweep import _levels, cli_flag

CLOSED = Path(__file__).resolve().parents[1] / "examples" / "vllm-closed-loop-llama3.1-8b-h100.yaml"


@pytest.mark.parametrize(("concurrency", "said"), [
    ([0], "'0' is not a positive whole number (1 to 1,000,000,000)"),
    ([1.5], "'1.5' is not a whole number (it has a fractional part)"),
    ("1,x", "'x' is not a whole number"),
    ([True], "True is not a whole number"),
    ([], "no concurrency given; whole numbers >= 1"),
    (None, "None is not a list of whole numbers >= 1"),
])
def test_api_names_the_keyword_and_what_is_valid(concurrency, said):
    with pytest.raises(SpecError) as err:
        pm.sweep_concurrency(CLOSED, concurrency, num_requests=10)
    text = str(err.value)
    assert text.startswith("concurrency=: ") and said in text
    assert text.endswith("e.g. concurrency=[1, 2, 4, 8]") and "--" not in text


def test_api_takes_a_list_one_number_or_the_commands_text():
    assert _levels([8, 2, 2]) == _levels("2, 8") == [2, 8] and _levels(4) == [4]


def test_api_num_requests_and_request_cap_name_keywords():
    with pytest.raises(SpecError, match=r"^num_requests=: '0' is not a whole number from 1 "
                                        r"to 10,000,000; e\.g\. num_requests=1000$"):
        pm.sweep_concurrency(CLOSED, [1], num_requests=0)
    # 10 requests per client: 10^7 clients need 10^8 > MAX_REQUESTS (10^7), at most 10^6
    with pytest.raises(SpecError, match=r"^concurrency=: 10,000,000 clients need 100,000,000 "
                                        r"requests .* give at most 1,000,000$"):
        pm.sweep_concurrency(CLOSED, [10**7])


def test_cli_keeps_its_flag(capsys):
    assert main(["sweep-concurrency", str(CLOSED), "--concurrency", str(10**7)]) == 2
    err = capsys.readouterr().err
    assert "error: --concurrency: 10,000,000 clients need" in err and "concurrency=" not in err
    with pytest.raises(SystemExit):  # argparse's own message names the flag
        main(["sweep-concurrency", str(CLOSED), "--concurrency", "0"])
    assert "argument --concurrency: '0' is not a positive whole number" in capsys.readouterr().err
    with pytest.raises(SpecError, match=r"^--concurrency: 'x' is not a whole number; e\.g\. "
                                        r"--concurrency 1,2,4,8$"):
        _levels("x", cli_flag)
