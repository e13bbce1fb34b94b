"""`perfmodel validate`: the JSON shape, text and plot output, and a clear error when no case
matches."""

from __future__ import annotations

import json

from perfmodel.cli import build_parser, main
from perfmodel.validate import run_cli


def test_cli_json_shape(capsys):
    code = main(["validate", "--json", "--case", "korthikanti2022_t5_22B"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert {"cases", "median_ape", "max_ape"} <= set(data)
    assert len(data["cases"]) == 2
    for c in data["cases"]:
        assert {"id", "metric", "predicted", "measured", "ape"} <= set(c)
        assert c["metric"] == "step_time_s" and c["ape"] >= 0
    assert data["max_ape"] == max(c["ape"] for c in data["cases"])


def test_cli_text_and_plot(tmp_path, capsys):
    out = tmp_path / "v.png"
    args = build_parser().parse_args(["validate", "--kind", "inference", "--case", "TTFT-L40S",
                                      "--plot", str(out)])
    assert run_cli(args) == 0
    text = capsys.readouterr().out
    assert "A-TRT05-TTFT-L40S-09" in text and "inference" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_no_matching_case_is_a_clear_error(capsys):
    assert main(["validate", "--case", "no-such-case-id"]) == 2
    assert "no-such-case-id" in capsys.readouterr().err
