"""Files are written whole or not at all (perfmodel.atomic)."""

import os

import pytest

from perfmodel.atomic import atomic_path, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "profile.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.json"]


def test_a_write_replaces_the_file_with_a_new_files_mode(tmp_path):
    target = tmp_path / "sub" / "report.json"
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
