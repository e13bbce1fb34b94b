"""QA 1205c D9: an output that cannot be written is refused naming the user's path (never the
hidden temporary beside it), before any other output of the run is written; no temporary is
left behind. Real file systems: /proc and /sys refuse new files even to root."""

import os
import re

import pytest

from perfmodel.atomic import OutputError, atomic_path, write_text_atomic, write_texts_atomic
from perfmodel.cli import main

SWEEP = "examples/vllm-closed-loop-llama3.1-8b-h100.yaml"


def _hidden(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_sweep_refuses_an_unwritable_out_before_writing_the_csv(tmp_path, capsys):
    csv = tmp_path / "sweep.csv"
    rc = main(["sweep-concurrency", SWEEP, "--concurrency", "1", "--csv", str(csv),
               "--out", "/proc/x.json"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--out" in err and "/proc/x.json" in err
    assert ".tmp" not in err and "file not found" not in err
    assert not csv.exists()  # nothing of the run written
    assert list(tmp_path.iterdir()) == []


def test_sweep_refuses_a_directory_as_csv_naming_it(tmp_path, capsys):
    rc = main(["sweep-concurrency", SWEEP, "--concurrency", "1", "--csv", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"cannot write {tmp_path}: it is a directory" in err
    assert ".tmp" not in err
    assert not [n for n in _hidden(tmp_path.parent) if n.startswith(f".{tmp_path.name}.")]


@pytest.mark.parametrize("target", ["/proc/perfmodel-x.json", "/sys/perfmodel-x.json"])
def test_a_virtual_file_system_is_refused_naming_the_users_path(target):
    with pytest.raises(OutputError) as info:
        write_text_atomic(target, "{}\n")
    message = str(info.value)
    assert message.startswith(f"cannot write {target}: ")
    assert ".tmp" not in message
    assert isinstance(info.value, OSError)  # callers catching OSError still do


def test_a_file_in_place_of_a_folder_is_named(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file")
    with pytest.raises(OutputError, match=re.escape(f"{blocker} is a file, not a directory")):
        write_text_atomic(blocker / "a" / "x.json", "{}\n")


def test_a_directory_target_leaves_no_temporary(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(OutputError, match=re.escape(f"cannot write {target}: it is a directory")), \
            atomic_path(target) as tmp:
        tmp.write_text("data")  # fails at the rename, after the block
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match=re.escape(f"permission denied in {folder}")):
            write_text_atomic(folder / "x.json", "{}\n")
    finally:
        folder.chmod(0o700)


def test_several_outputs_are_written_all_or_none(tmp_path):
    first = tmp_path / "a.csv"
    with pytest.raises(OutputError, match=re.escape("/proc/perfmodel-y.json")):
        write_texts_atomic({first: "a\n", "/proc/perfmodel-y.json": "{}\n"})
    assert list(tmp_path.iterdir()) == []
    second = tmp_path / "sub" / "b.json"
    assert write_texts_atomic({first: "a\n", second: "{}\n"}) == [first, second]
    assert first.read_text() == "a\n" and second.read_text() == "{}\n"
    assert _hidden(tmp_path) == [] and _hidden(tmp_path / "sub") == []


@pytest.mark.parametrize("argv", [
    ["validate", "--case", "no-such-case", "--plot", "/proc/perfmodel-x.png"],
    ["calibrate", "--reference", "h100-sxm5-80gb", "--out", "/proc/perfmodel-x.json"],
])
def test_other_commands_refuse_an_unwritable_output_before_running(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--{argv[-2].lstrip('-')}: cannot write {argv[-1]}: " in err
