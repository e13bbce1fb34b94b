"""docs/long-context-seed-analysis.md prints the table `python -m perfmodel.analysis.long_context`
prints: the doc's block under "## The table" must be the command's table, line for line, so a
model change that moves a figure fails here until the doc is regenerated from the command."""

from __future__ import annotations

from pathlib import Path

from perfmodel.analysis import long_context as lc

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "long-context-seed-analysis.md"
HEAD = "Output of `python -m perfmodel.analysis.long_context`:\n\n```\n"


def doc_table() -> list[str]:
    text = DOC.read_text()
    start = text.index(HEAD) + len(HEAD)
    return text[start:text.index("\n```", start)].splitlines()


def test_doc_table_is_the_commands_output(capsys):
    assert lc.main([]) == 0
    printed = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert len(printed) > 10 and printed[0].startswith("quantity")
    assert [line.rstrip() for line in doc_table()] == [line.rstrip() for line in printed], (
        "regenerate the table in docs/long-context-seed-analysis.md from "
        "`python -m perfmodel.analysis.long_context` (and the prose figures beside it)")
