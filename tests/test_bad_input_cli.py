"""Every bad flag of every command is one line on stderr that names it, exit code 2, and no
traceback (issue 12). One row per bad input; run in process (``perfmodel.cli.main``), so
the table takes seconds.

A row is (argv, text the error line must contain). The flags' types live in
``perfmodel.argtypes``; a new flag gets its rows here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from perfmodel import argtypes
from perfmodel.cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "examples" / "gpt3-175b-1024-a100.yaml")
INFER = str(ROOT / "examples" / "llama2-7b-decode-a100.yaml")
# a plan-serving call that is valid but for the one flag a row appends or replaces
SERVE = ["plan-serving", "--model", "llama-3-8b", "--rate", "1", "--ttft-p90", "1",
         "--prompt-len", "128", "--output-len", "16", "--devices", "h100-sxm5-80gb", "--tp", "1",
         "--num-requests", "20"]

ROWS: list[tuple[list[str], str]] = [
    # the command itself
    ([], "command"),
    (["bogus"], "command"),
    # predict
    (["predict"], "scenario"),
    (["predict", "/nonexistent/scenario.yaml"], "/nonexistent/scenario.yaml"),
    (["predict", str(ROOT / "examples")], "examples"),
    (["predict", TRAIN, "--calibration", "/nonexistent/profile.json"], "profile.json"),
    (["predict", TRAIN, "--bogus"], "--bogus"),
    (["predict", TRAIN, "--calibration", str(ROOT / "examples")], "examples"),
    # search
    (["search", TRAIN, "--top", "-1"], "--top"),
    (["search", TRAIN, "--top", "0"], "--top"),
    (["search", TRAIN, "--top", "abc"], "--top"),
    (["search", TRAIN, "--top", "1.5"], "--top"),
    (["search", TRAIN, "--top", "10000000000"], "--top"),
    (["search", INFER], "training"),
    (["search", TRAIN, "--calibration", "/nonexistent/profile.json"], "profile.json"),
    # validate
    (["validate", "--kind", "serving"], "--kind"),
    (["validate", "--measure", "tpu"], "--measure"),
    (["validate", "--plot", "report.txt"], "--plot"),
    (["validate", "--plot", ""], "--plot"),
    (["validate", "--case", "no-such-case-zzz"], "no-such-case-zzz"),
    (["validate", "--calibration", "x.json"], "--calibration"),
    (["validate", "--measure", "cpu", "--calibration", "/nonexistent/p.json"], "--calibration"),
    # calibrate (all refused before anything is measured)
    (["calibrate", "--device", "tpu"], "--device"),
    (["calibrate", "--only", "gemm,bogus"], "--only"),
    (["calibrate", "--only", ","], "--only"),
    (["calibrate", "--budget-s", "-1"], "--budget-s"),
    (["calibrate", "--budget-s", "nan"], "--budget-s"),
    (["calibrate", "--budget-s", "abc"], "--budget-s"),
    (["calibrate", "--point-budget-s", "0"], "--point-budget-s"),
    (["calibrate", "--point-budget-s", "inf"], "--point-budget-s"),
    (["calibrate", "--report", "report.svg"], "--report"),
    (["calibrate", "--reference", "no-such-gpu"], "--reference"),
    # plan-serving: numbers
    ([*SERVE, "--rate", "0"], "--rate"),
    ([*SERVE, "--rate", "-3"], "--rate"),
    ([*SERVE, "--rate", "nan"], "--rate"),
    ([*SERVE, "--rate", "inf"], "--rate"),
    ([*SERVE, "--rate", "abc"], "--rate"),
    ([*SERVE, "--tp", "a"], "--tp"),
    ([*SERVE, "--tp", "0"], "--tp"),
    ([*SERVE, "--tp", "-2"], "--tp"),
    ([*SERVE, "--tp", "1,,2"], "--tp"),
    ([*SERVE, "--tp", "1.5"], "--tp"),
    ([*SERVE, "--seed", "-1"], "--seed"),
    ([*SERVE, "--seed", "1.5"], "--seed"),
    ([*SERVE, "--seed", str(2**32)], "--seed"),
    ([*SERVE, "--num-requests", "0"], "--num-requests"),
    ([*SERVE, "--num-requests", "-5"], "--num-requests"),
    ([*SERVE, "--num-requests", "1000000000"], "--num-requests"),
    ([*SERVE, "--max-gpus", "0"], "--max-gpus"),
    ([*SERVE, "--max-gpus", "x"], "--max-gpus"),
    ([*SERVE, "--max-num-seqs", "0"], "--max-num-seqs"),
    ([*SERVE, "--max-num-seqs", "8,,16"], "--max-num-seqs"),
    ([*SERVE, "--cv", "0"], "--cv"),
    ([*SERVE, "--cv", "-1"], "--cv"),
    ([*SERVE, "--ttft-p90", "0"], "--ttft-p90"),
    ([*SERVE, "--tpot-p90", "-1"], "--tpot-p90"),
    # plan-serving: structured values
    ([*SERVE, "--slo", "foo=1"], "--slo"),
    ([*SERVE, "--slo", "ttft_p90_s"], "--slo"),
    ([*SERVE, "--slo", "ttft_p90_s=-1"], "--slo"),
    ([*SERVE, "--slo", "ttft_p90_s=abc"], "--slo"),
    ([*SERVE, "--prompt-len", "0"], "--prompt-len"),
    ([*SERVE, "--prompt-len", "uniform:10:5"], "--prompt-len"),
    ([*SERVE, "--prompt-len", "lognormal:a:b"], "--prompt-len"),
    ([*SERVE, "--prompt-len", "lognormal:100:-1"], "--prompt-len"),
    ([*SERVE, "--output-len", "banana"], "--output-len"),
    ([*SERVE, "--output-len", "fixed:1:2"], "--output-len"),
    ([*SERVE, "--scheduler", "fifo"], "--scheduler"),
    ([*SERVE, "--arrival", "trace"], "--arrival"),
    ([*SERVE, "--devices", "a b"], "--devices"),
    ([*SERVE, "--devices", ","], "--devices"),
    ([*SERVE, "--devices", "no-such-gpu"], "no-such-gpu"),
    (["plan-serving", "--rate", "1", "--ttft-p90", "1"], "--model"),
    ([*SERVE[:1], "--model", "no-such-model", *SERVE[3:]], "no-such-model"),
    (["plan-serving", "--model", "llama-3-8b", "--ttft-p90", "1"], "--rate"),
    ([*SERVE, "--bogus", "1"], "--bogus"),
    # dashboard (refused before streamlit starts)
    (["dashboard", "--port", "0"], "--port"),
    (["dashboard", "--port", "70000"], "--port"),
    (["dashboard", "--port", "http"], "--port"),
    (["dashboard", "--address", "bad host"], "--address"),
    (["dashboard", "--address", "999.1.1.1"], "--address"),
    (["dashboard", "--address", ""], "--address"),
    # hardware
    (["hardware", "frobnicate"], "action"),
    (["hardware", "show"], "hardware show"),
    (["hardware", "show", "no-such-gpu"], "no-such-gpu"),
    (["hardware", "list", "--nodes", "--interconnects"], "--nodes"),
    # models
    (["models", "delete"], "action"),
    (["models", "show"], "models show"),
    (["models", "show", "no-such-model"], "no-such-model"),
    (["models", "show", "/nonexistent/config.json"], "config.json"),
]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own exit
        code = stop.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("argv", "names"), ROWS,
                         ids=[" ".join(a[-2:]) or "(none)" for a, _ in ROWS])
def test_bad_input_is_one_line_naming_it(argv, names, capsys):
    code, err = _run(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert names in lines[0], lines[0]
    assert len(lines[0]) < 400, lines[0]


def test_the_table_covers_every_command():
    commands = {a[0] for a, _ in ROWS if a}
    assert commands >= {"predict", "search", "validate", "calibrate", "plan-serving",
                        "dashboard", "hardware", "models"}
    assert len(ROWS) >= 40


@pytest.mark.parametrize(("fn", "good", "bad"), [
    (argtypes.positive_int, {"1": 1, "8": 8, " 12 ": 12}, ["0", "-1", "1.0", "1e3", "", "x"]),
    (argtypes.nonnegative_int, {"0": 0, "5": 5}, ["-1", "a"]),
    (argtypes.positive_float, {"0.5": 0.5, "2": 2.0}, ["0", "-1", "nan", "inf", "x"]),
    (argtypes.nonnegative_float, {"0": 0.0, "3.5": 3.5}, ["-0.1", "nan"]),
    (argtypes.fraction, {"0": 0.0, "1": 1.0, "0.25": 0.25}, ["1.5", "-0.1", "nan"]),
    (argtypes.int_list, {"1,2,4": (1, 2, 4), "8": (8,), "2,2": (2,)}, ["", "1,", "a", "0"]),
    (argtypes.id_list, {"h100-sxm5-80gb,b200": ["h100-sxm5-80gb", "b200"]}, [",", "a b"]),
    (argtypes.seed, {"0": 0, str(2**32 - 1): 2**32 - 1}, ["-1", str(2**32)]),
    (argtypes.port, {"1": 1, "8501": 8501, "65535": 65535}, ["0", "65536", "http"]),
    (argtypes.address, {"127.0.0.1": "127.0.0.1", "::1": "::1", "localhost": "localhost",
                        "0.0.0.0": "0.0.0.0"}, ["", "bad host", "999.1.1.1", "a/b"]),
])
def test_argument_types(fn, good, bad):
    for text, value in good.items():
        assert fn(text) == value
    for text in bad:
        with pytest.raises(argtypes.Invalid):
            fn(text)


def test_a_long_bad_value_is_not_echoed_in_full(capsys):
    code, err = _run(["search", TRAIN, "--top", "x" * 10_000], capsys)
    assert code == 2 and len(err) < 300
