"""QA 1205c D11: `hardware list --nodes` prints '-' for a node without a scale-out network
(not "0xNone"), and every argument of `hardware` and `models` has a help text."""

import pytest

from perfmodel.cli import main


def test_a_node_without_scale_out_shows_a_dash(capsys):
    assert main(["hardware", "list", "--nodes"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert "None" not in " ".join(" ".join(r) for r in rows.values())
    # gh200-node.yaml: inter_node null (single-node only); dgx-h100.yaml: 8 x ib-ndr-400
    assert rows["gh200-node"][3] == "-"
    assert rows["dgx-h100"][3] == "8xib-ndr-400"


@pytest.mark.parametrize(("command", "arguments"), [
    ("hardware", ("{list,show}", "id", "--interconnects", "--nodes", "--json")),
    ("models", ("{list,show}", "id", "--json")),
])
def test_every_argument_has_a_help_text(capsys, command, arguments):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    lines = capsys.readouterr().out.splitlines()
    for argument in arguments:
        row = next(line for line in lines if line.strip().startswith(argument))
        assert row.strip() != argument, f"{command} {argument} has no help text"
