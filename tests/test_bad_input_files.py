"""Files as input (issue 12, part 2): every bad file any reader of the package meets is one
clear line, fast.

One row per bad input: which reader takes it (scenario YAML, a model file, an HF config.json,
a serving trace CSV, a price table, a calibration profile, a calibration raw JSONL, a
validation case file), the file's bytes and the words the error must contain. Each row must
raise a ``PerfModelError`` whose message is one line, names the file, is shorter than 300
characters, and comes within a second (a 400-byte alias bomb included). A few rows also run
through the CLI (``python -m perfmodel.cli``): exit 2, one ``perfmodel: error:`` line, no
traceback.

The readers and the table use only functions that predate the safe file door, so the same
table can be run against an older checkout to count how it fared (tracebacks, hangs, silent
acceptance, clear errors): ``python tests/test_bad_input_files.py [--json]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20

SCENARIO = (b"kind: inference\nmodel: llama-2-7b\n"
            b"system: {device: a100-sxm4-80gb, num_gpus: 1}\n"
            b"inference: {batch: 1, prompt_len: 512, output_len: 256}\n")
HF_CONFIG = json.dumps({
    "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
    "vocab_size": 32000, "max_position_embeddings": 4096}).encode()
RAW_META = b'{"bench": "meta", "device": "cpu"}\n'
RAW_POINT = b'{"bench": "gemm", "key": "gemm|m=1", "status": "ok", "time_s": 1e-3}\n'


def alias_bomb(indent: bytes = b"") -> bytes:
    """The "billion laughs" document: nine anchors of nine aliases each (~400 bytes, ~10^9
    nodes once expanded)."""
    lines = [indent + b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = b"a"
    for c in b"bcdefghi":
        name = bytes([c])
        lines.append(indent + name + b": &" + name + b" [" + b",".join([b"*" + prev] * 9) + b"]")
        prev = name
    return b"\n".join(lines) + b"\n"


BOMB = b"lol:\n" + alias_bomb(b"  ")
DEEP_YAML_FLOW = b"x: " + b"[" * 10_000 + b"]" * 10_000 + b"\n"
DEEP_YAML_BLOCK = b"x:\n  " + b"- " * 10_000 + b"1\n"
DEEP_JSON = b"[" * 10_000 + b"]" * 10_000
DEEP_JSON_500 = b'{"a": ' * 500 + b"1" + b"}" * 500
LONG = b"x" * MiB  # a 1 MiB single-line value


# -- readers: how each kind of file enters the package ----------------------------------------

def _scenario(path: Path):
    from perfmodel.specs.assemble import load_scenario, resolve_system

    scenario = load_scenario(path)
    return scenario, resolve_system(scenario.system)


def _model_file(path: Path):
    from perfmodel.zoo import resolve_model

    return resolve_model(str(path))


def _hf_config(path: Path):
    from perfmodel.zoo.hf import load_hf_config

    return load_hf_config(path)


def _trace(path: Path):
    from perfmodel.serving.workload import read_trace

    return read_trace(path)


def _prices(path: Path):
    from perfmodel.serving.economics import load_prices

    return load_prices(path)


def _profile(path: Path):
    from perfmodel.specs.registry import load_profile

    return load_profile(path)


def _raw(path: Path):
    from perfmodel.calibrate.raw import RawStore

    return RawStore(path).records()


def _cases(path: Path):
    from perfmodel.validate.cases import load_case_file

    return load_case_file(path)


READERS: dict[str, Callable[[Path], object]] = {
    "scenario": _scenario, "model": _model_file, "hf": _hf_config, "trace": _trace,
    "prices": _prices, "profile": _profile, "raw": _raw, "cases": _cases,
}


@dataclass(frozen=True)
class Row:
    id: str
    reader: str
    name: str  # file name ("" for a folder)
    content: bytes | None  # None: make a folder named ``name``
    needle: str  # words the message must contain
    sparse_to: int = 0  # grow the file to this size with a hole (a size-cap row, instantly)
    names_file: bool = True  # False: a value checked after loading (the message quotes it)
    cli: tuple[str, ...] = ()  # also run `perfmodel <cli...> <path>`


ROWS = [
    # scenario YAML ---------------------------------------------------------------------------
    Row("scenario-latin1", "scenario", "s.yaml", SCENARIO + b"name: caf\xe9\n",
        "not UTF-8 text (byte 0xe9 at line 5", cli=("predict",)),
    Row("scenario-utf16-bom", "scenario", "s.yaml", SCENARIO.decode().encode("utf-16"),
        "looks like UTF-16"),
    Row("scenario-empty", "scenario", "s.yaml", b"", "got an empty file"),
    Row("scenario-only-comment", "scenario", "s.yaml", b"# nothing here\n", "got an empty file"),
    Row("scenario-folder", "scenario", "s.yaml", None, "is a folder", cli=("predict",)),
    Row("scenario-missing", "scenario", "nope/s.yaml", b"", "not found"),
    Row("scenario-binary", "scenario", "s.yaml", bytes(range(256)) * 4, "not UTF-8 text"),
    Row("scenario-alias-bomb", "scenario", "s.yaml", SCENARIO + BOMB,
        "aliases expand it beyond", cli=("predict",)),
    Row("scenario-alias-bomb-as-model", "scenario", "s.yaml",
        BOMB + b"kind: inference\nsystem: {device: a100-sxm4-80gb, num_gpus: 1}\n"
        b"inference: {batch: 1, prompt_len: 512, output_len: 256}\nmodel: *i\n",
        "aliases expand it beyond"),
    Row("scenario-recursive-alias", "scenario", "s.yaml", SCENARIO + b"x: &x [*x]\n",
        "alias refers to a node that contains it"),
    Row("scenario-deep-flow-10k", "scenario", "s.yaml", SCENARIO + DEEP_YAML_FLOW, "nest"),
    Row("scenario-deep-block-10k", "scenario", "s.yaml", SCENARIO + DEEP_YAML_BLOCK, "nest"),
    Row("scenario-deep-150", "scenario", "s.yaml",
        SCENARIO + b"x: " + b"[" * 150 + b"]" * 150 + b"\n", "nested deeper than 100"),
    Row("scenario-over-cap", "scenario", "s.yaml", SCENARIO + b"# ", "larger than the 16 MiB",
        sparse_to=16 * MiB + 1),
    Row("scenario-list", "scenario", "s.yaml", b"- kind: inference\n- model: x\n",
        "expected a mapping"),
    Row("scenario-scalar", "scenario", "s.yaml", b"just some words\n", "expected a mapping"),
    Row("scenario-nul-byte", "scenario", "s.yaml", SCENARIO + b"name: a\x00b\n",
        "not valid YAML"),
    Row("scenario-tab-indent", "scenario", "s.yaml", b"kind: inference\n\tmodel: x\n",
        "not valid YAML: line 2"),
    Row("scenario-python-tag", "scenario", "s.yaml",
        SCENARIO + b"x: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    Row("scenario-bad-int-tag", "scenario", "s.yaml", SCENARIO + b"x: !!int abc\n",
        "not valid YAML"),
    Row("scenario-long-model-id", "scenario", "s.yaml",
        SCENARIO.replace(b"llama-2-7b", LONG), "unknown model 'xxxx"),
    Row("scenario-long-device-id", "scenario", "s.yaml",
        SCENARIO.replace(b"a100-sxm4-80gb", LONG), "unknown device 'xxxx", names_file=False),
    Row("scenario-long-key", "scenario", "s.yaml", SCENARIO + b"? " + LONG + b"\n: 1\n",
        "unknown field"),
    Row("scenario-10k-unknown-keys", "scenario", "s.yaml",
        SCENARIO + b"".join(b"k%d: 1\n" % i for i in range(10_000)), "more)"),
    # a model file named by a scenario (YAML or JSON) ---------------------------------------
    Row("model-latin1", "model", "m.yaml", b"id: m\nname: caf\xe9\n", "not UTF-8 text"),
    Row("model-alias-bomb", "model", "m.yaml", BOMB, "aliases expand it beyond"),
    Row("model-list", "model", "m.json", b"[1, 2]", "expected a mapping"),
    # HF config.json ------------------------------------------------------------------------
    Row("hf-latin1", "hf", "config.json", HF_CONFIG[:-1] + b', "_name_or_path": "caf\xe9"}',
        "not UTF-8 text"),
    Row("hf-utf16-bom", "hf", "config.json", HF_CONFIG.decode().encode("utf-16"),
        "looks like UTF-16"),
    Row("hf-truncated", "hf", "config.json", HF_CONFIG[:40], "not valid JSON",
        cli=("models", "show")),
    Row("hf-empty", "hf", "config.json", b"", "not valid JSON"),
    Row("hf-deep-10k", "hf", "config.json", DEEP_JSON, "nested deeper than"),
    Row("hf-deep-500", "hf", "config.json", DEEP_JSON_500, "nested deeper than 100"),
    Row("hf-list", "hf", "config.json", b"[" + HF_CONFIG + b"]", "expected a mapping"),
    Row("hf-folder-without-config", "hf", "", None, "not found"),
    Row("hf-long-model-type", "hf", "config.json",
        HF_CONFIG.replace(b'"llama"', b'"' + LONG + b'"'), "model_type"),
    Row("hf-over-cap", "hf", "config.json", b"{", "larger than the 16 MiB",
        sparse_to=16 * MiB + 1),
    # serving trace CSV ---------------------------------------------------------------------
    Row("trace-latin1-mid-file", "trace", "t.csv",
        b"prompt_len,output_len\n10,10\n" * 50 + b"1\xe90,10\n", "line 101"),
    Row("trace-utf16-bom", "trace", "t.csv", "prompt_len,output_len\n1,1\n".encode("utf-16"),
        "looks like UTF-16"),
    Row("trace-nul-byte", "trace", "t.csv", b"prompt_len,output_len\n1\x002,3\n", "t.csv"),
    Row("trace-huge-field", "trace", "t.csv", b"prompt_len,output_len\n" + LONG + b",1\n",
        "t.csv"),
    Row("trace-huge-quoted-field", "trace", "t.csv",
        b'prompt_len,output_len\n"' + LONG + b'",1\n', "t.csv"),
    Row("trace-folder", "trace", "t.csv", None, "is a folder"),
    Row("trace-inf", "trace", "t.csv", b"prompt_len,output_len\ninf,3\n", "not a number"),
    Row("trace-nan-arrival", "trace", "t.csv", b"prompt_len,output_len,arrival_s\n1,1,nan\n",
        "arrival_s must be finite"),
    Row("trace-binary", "trace", "t.csv", bytes(range(256)) * 4, "not UTF-8 text"),
    Row("trace-over-cap", "trace", "t.csv", b"prompt_len,output_len\n",
        "larger than the 256 MiB", sparse_to=256 * MiB + 1),
    # price table ---------------------------------------------------------------------------
    Row("prices-latin1", "prices", "p.yaml", b"currency: \xa4\n", "not UTF-8 text"),
    Row("prices-alias-bomb", "prices", "p.yaml", BOMB, "aliases expand it beyond"),
    Row("prices-list", "prices", "p.yaml", b"- 1\n- 2\n", "expected a mapping"),
    # calibration profile -------------------------------------------------------------------
    Row("profile-latin1", "profile", "p.json", b'{"id": "caf\xe9"}', "not UTF-8 text"),
    Row("profile-truncated", "profile", "p.json", b'{"schema_version": 1, "id": "x', "JSON"),
    Row("profile-deep-10k", "profile", "p.json", DEEP_JSON, "nested deeper than"),
    Row("profile-folder", "profile", "p.json", None, "p.json"),
    # calibration raw JSONL -----------------------------------------------------------------
    Row("raw-bad-byte-mid-file", "raw", "r.jsonl",
        RAW_META + RAW_POINT + b'{"bench": "gemm", "key": "\xff"}\n' + RAW_POINT,
        "not UTF-8 text (byte 0xff at line 3"),
    Row("raw-not-a-record", "raw", "r.jsonl", RAW_META + b"[1, 2]\n", "r.jsonl:2"),
    Row("raw-deep-line", "raw", "r.jsonl", RAW_META + DEEP_JSON + b"\n", "r.jsonl:2"),
    Row("raw-key-not-text", "raw", "r.jsonl", RAW_META + b'{"key": [1]}\n', "r.jsonl:2"),
    Row("raw-folder", "raw", "r.jsonl", None, "is a folder"),
    # validation case file ------------------------------------------------------------------
    Row("cases-latin1", "cases", "c.yaml", b"cases:\n  - id: caf\xe9\n", "not UTF-8 text"),
    Row("cases-alias-bomb", "cases", "c.yaml",
        BOMB + b"cases:\n  - {id: x, scenario: {lol: *i}}\n", "aliases expand it beyond"),
    Row("cases-scalar", "cases", "c.yaml", b"42\n", "expected a mapping"),
]


def make(row: Row, tmp: Path) -> Path:
    """Write the row's file under ``tmp``; its path."""
    path = tmp / row.name if row.name else tmp / "folder"
    if row.content is None:
        path.mkdir(parents=True)
    elif not row.id.endswith("-missing"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(row.content)
        if row.sparse_to:
            os.truncate(path, row.sparse_to)
    return path


def check_message(message: str, path: Path, names_file: bool = True) -> list[str]:
    """What is wrong with an error message (nothing: a clear one-liner naming the file, under
    300 characters besides the file's path)."""
    problems = []
    if "\n" in message.strip():
        problems.append("more than one line")
    if len(message.replace(str(path), "")) >= 300:
        problems.append(f"{len(message)} characters")
    if names_file and path.name not in message:
        problems.append("does not name the file")
    return problems


@pytest.fixture(scope="module", autouse=True)
def _imported():
    """Import every reader once, so that a row's time is its reading, not the imports."""
    import perfmodel.calibrate.raw
    import perfmodel.serving.economics
    import perfmodel.serving.workload
    import perfmodel.specs.assemble
    import perfmodel.validate.cases
    import perfmodel.zoo.hf  # noqa: F401


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_file_is_one_clear_line(row, tmp_path):
    from perfmodel.errors import PerfModelError

    path = make(row, tmp_path)
    start = time.perf_counter()
    with pytest.raises(PerfModelError) as err:
        READERS[row.reader](path)
    elapsed = time.perf_counter() - start
    message = str(err.value)
    problems = check_message(message, path, row.names_file)
    assert not problems, (problems, message[:400])
    assert row.needle in message, message
    # A hang guard (an alias bomb grows without end), not a speed target: refused in ~1 ms idle,
    # the bound leaves room for a loaded 2-core machine.
    assert elapsed < 30.0, f"{elapsed:.2f} s"


def test_the_table_covers_every_reader():
    assert len(ROWS) >= 35
    assert {r.reader for r in ROWS} == set(READERS)


CLI_ROWS = [r for r in ROWS if r.cli]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Every CLI row at once (in parallel: the table stays a few seconds)."""
    procs = {}
    for row in CLI_ROWS:
        path = make(row, tmp_path_factory.mktemp(row.id))
        cmd = [sys.executable, "-m", "perfmodel.cli", *row.cli, str(path)]
        procs[row.id] = (path, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, text=True))
    out = {}
    for rid, (path, proc) in procs.items():
        _, stderr = proc.communicate(timeout=60)
        out[rid] = (path, proc.returncode, stderr)
    return out


@pytest.mark.parametrize("row", CLI_ROWS, ids=[r.id for r in CLI_ROWS])
def test_cli_prints_one_line_and_exits_2(row, cli_runs):
    path, code, stderr = cli_runs[row.id]
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfmodel: error: "), stderr[:500]
    assert not check_message(lines[0].removeprefix("perfmodel: error: "), path)
    assert row.needle in lines[0]


def test_a_utf8_bom_is_read(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + SCENARIO)
    assert _scenario(path)[0].kind == "inference"


def test_shared_anchors_are_fine(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"sys: &s {device: a100-sxm4-80gb, num_gpus: 1}\n"
                     + SCENARIO.replace(b"system: {device: a100-sxm4-80gb, num_gpus: 1}",
                                        b"system: *s").replace(b"kind:", b"kind:", 1))
    from perfmodel.specs.registry import read_mapping

    assert read_mapping(path)["system"] == {"device": "a100-sxm4-80gb", "num_gpus": 1}


def test_a_torn_last_raw_line_is_still_tolerated(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(RAW_META + RAW_POINT + b'{"bench": "gemm", "ke')
    assert [r["key"] for r in _raw(path)] == ["gemm|m=1"]


def test_messages_quote_long_values_shortly():
    from perfmodel.errors import SpecError, shorten

    assert shorten("abc") == "abc"
    assert shorten("x" * 1000) == "x" * 77 + "..."
    message = str(SpecError(f"unknown device {'y' * MiB!r}; did you mean 'a100'?"))
    assert len(message) < 150 and message.endswith("did you mean 'a100'?")


# -- before / after: run the table against any checkout ----------------------------------------

def classify(row: Row, timeout: float = 10.0) -> str:
    """Run one row in a fresh interpreter (PYTHONPATH picks the checkout): 'clear', 'unclear'
    (a PerfModelError that is long, multi-line or does not name the file), 'traceback',
    'hang' or 'silent' (accepted)."""
    import tempfile

    code = ("import sys, pathlib; sys.path.insert(1, sys.argv[1]); import test_bad_input_files as t\n"
            "from perfmodel.errors import PerfModelError\n"
            "row = next(r for r in t.ROWS if r.id == sys.argv[2])\n"
            "path = t.make(row, pathlib.Path(sys.argv[3]))\n"
            "try:\n    t.READERS[row.reader](path)\n"
            "except PerfModelError as err:\n"
            "    bad = t.check_message(str(err), path, row.names_file)\n"
            "    print('unclear' if bad else 'clear')\n"
            "else:\n    print('silent')\n")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent),
                                  row.id, tmp], capture_output=True, text=True,
                                 timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            return "hang"
    verdict = out.stdout.strip().splitlines()[-1:] or ["traceback"]
    return verdict[0] if out.returncode == 0 else "traceback"


if __name__ == "__main__":  # pragma: no cover
    from collections import Counter

    results = {row.id: classify(row) for row in ROWS}
    if "--json" in sys.argv:
        print(json.dumps(results, indent=1))
    else:
        for rid, verdict in results.items():
            print(f"{verdict:10} {rid}")
    print(dict(Counter(results.values())))
