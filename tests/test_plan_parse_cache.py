"""The registry's parse cache (``specs.registry.parse_cache``), which ``perfmodel plan-training``
runs in: the same data as parsing the file, a hit skips the parser, anything else is a miss."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from perfmodel.errors import SpecError
from perfmodel.paths import data_dir
from perfmodel.specs import registry

ROOT = Path(__file__).resolve().parents[1]


def _shipped() -> list[Path]:
    files = [data_dir("calibration") / "h100-sxm5-80gb.reference.json",
             data_dir("hardware_specs") / "prices.yaml",
             data_dir("hardware_specs") / "power_capping.yaml"]
    files += sorted((data_dir("hardware_specs") / "devices").glob("*.yaml"))[:5]
    return files


def _read(path: Path):
    return registry.read_json(path) if path.suffix == ".json" else registry.read_yaml(path)


def test_cached_data_equals_the_parse(tmp_path):
    for path in _shipped():
        plain = _read(path)
        with registry.parse_cache(tmp_path / "c"):
            first = _read(path)  # miss: parsed and stored
            second = _read(path)  # hit
        assert first == plain and second == plain, path
        assert pickle.dumps(second) == pickle.dumps(plain), path  # same types (int vs float)


def test_a_hit_does_not_parse_and_new_bytes_miss(tmp_path, monkeypatch):
    doc = tmp_path / "a.yaml"
    doc.write_text("x: 1\ny: [1, 2.5, true]\n")
    with registry.parse_cache(tmp_path / "c"):
        assert registry.read_yaml(doc) == {"x": 1, "y": [1, 2.5, True]}
        calls = []
        real = registry.parse_yaml
        monkeypatch.setattr(registry, "parse_yaml", lambda *a: calls.append(a) or real(*a))
        assert registry.read_yaml(doc) == {"x": 1, "y": [1, 2.5, True]}
        assert calls == []
        doc.write_text("x: 2\n")  # other bytes: parsed again
        assert registry.read_yaml(doc) == {"x": 2}
        assert len(calls) == 1


def test_limits_are_part_of_the_key(tmp_path, monkeypatch):
    doc = tmp_path / "deep.json"
    doc.write_text(json.dumps([[[1]]]))
    with registry.parse_cache(tmp_path / "c"):
        assert registry.read_json(doc) == [[[1]]]
        monkeypatch.setattr(registry, "MAX_DEPTH", 2)
        with pytest.raises(SpecError, match="nested deeper than 2"):
            registry.read_json(doc)


def test_errors_are_not_cached_and_validation_still_runs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    folder = tmp_path / "c"
    with registry.parse_cache(folder):
        for _ in range(2):
            with pytest.raises(SpecError, match="not valid YAML"):
                registry.read_yaml(bad)
        assert not list(folder.glob("*.pickle"))
        wrong = tmp_path / "wrong.yaml"
        wrong.write_text("- 1\n")
        for _ in range(2):  # parsed fine (and cached), still refused as not a mapping
            with pytest.raises(SpecError, match="expected a mapping"):
                registry.read_mapping(wrong)


def test_damaged_or_foreign_entries_are_misses(tmp_path):
    doc = tmp_path / "a.yaml"
    doc.write_text("when: 2025-01-02\nn: 3\n")  # YAML dates are cached as dates
    folder = tmp_path / "c"
    with registry.parse_cache(folder):
        expected = registry.read_yaml(doc)
        (entry,) = folder.glob("*.pickle")
        assert registry.read_yaml(doc) == expected
        entry.write_bytes(b"\x80\x05garbage")
        assert registry.read_yaml(doc) == expected  # damaged: parsed again, rewritten
        entry.write_bytes(pickle.dumps(Path("/etc")))  # a class that is not parsed data
        assert registry.read_yaml(doc) == expected
        assert pickle.loads(entry.read_bytes()) == expected


def test_off_outside_the_block_and_by_environment(tmp_path, monkeypatch):
    doc = tmp_path / "a.yaml"
    doc.write_text("x: 1\n")
    registry.read_yaml(doc)
    with registry.parse_cache(tmp_path / "c") as used:
        assert used == tmp_path / "c"
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").glob("*.pickle"))
    for off in ("", "0", "off"):
        monkeypatch.setenv(registry.CACHE_ENV, off)
        with registry.parse_cache() as used:
            assert used is None
            assert registry.read_yaml(doc) == {"x": 1}
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "env"))
    with registry.parse_cache() as used:
        assert used == tmp_path / "env"
        registry.read_yaml(doc)
    assert len(list((tmp_path / "env").glob("*.pickle"))) == 1


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_folder_others_can_write_is_not_used(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    with registry.parse_cache(folder) as used:
        assert used is None
    fresh = tmp_path / "fresh"
    with registry.parse_cache(fresh) as used:
        assert used == fresh
    assert fresh.stat().st_mode & 0o777 == 0o700 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_cli_output_is_the_same_with_and_without_the_cache(tmp_path):
    cmd = [sys.executable, "-m", "perfmodel.cli", "plan-training", "llama-3-8b", "--tokens",
           "1T", "--devices", "h100-sxm5-80gb", "--max-gpus", "64", "--json"]

    def run(cache: str) -> dict:
        env = {**os.environ, registry.CACHE_ENV: cache}
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True, timeout=300).stdout
        data = json.loads(out)
        data["work"] = {k: v for k, v in data["work"].items() if "seconds" not in k}
        for dev in data["work"].get("per_device", {}).values():
            for k in [k for k in dev if "seconds" in k]:
                del dev[k]
        return data

    off = run("off")
    first = run(str(tmp_path / "c"))  # fills the cache
    assert list((tmp_path / "c").glob("*.pickle"))
    again = run(str(tmp_path / "c"))  # reads it
    assert first == off and again == off


def _profile_file() -> Path:
    return data_dir("calibration") / "h100-sxm5-80gb.reference.json"


def test_a_validated_profile_hit_equals_validation_and_skips_it(tmp_path, monkeypatch):
    plain = registry.load_profile(_profile_file())
    with registry.parse_cache(tmp_path / "c"):
        first = registry.load_profile(_profile_file())  # miss: validated and stored
        calls = []
        real = registry.validate
        monkeypatch.setattr(registry, "validate", lambda *a, **k: calls.append(a) or real(*a, **k))
        second = registry.load_profile(_profile_file())  # hit
    assert calls == []
    assert first == plain and second == plain
    assert second.model_dump() == plain.model_dump() and second.path == plain.path


def test_a_validated_entry_depends_on_the_code_and_refuses_other_classes(tmp_path, monkeypatch):
    from perfmodel.profile import CalibrationProfile

    folder = tmp_path / "c"
    with registry.parse_cache(folder):
        registry.load_profile(_profile_file())
        entries = set(folder.glob("*.pickle"))
        calls = []
        real = registry.validate
        monkeypatch.setattr(registry, "validate", lambda *a, **k: calls.append(a) or real(*a, **k))
        # another version of the package's code (an edit, an upgrade): validated again
        monkeypatch.setattr(registry, "_code_salt", lambda: b"other code")
        registry.load_profile(_profile_file())
        assert len(calls) == 1
        # an entry holding a class that is not one of the package's models: validated again
        new = set(folder.glob("*.pickle")) - entries
        (entry,) = [p for p in new if isinstance(pickle.loads(p.read_bytes()),
                                                 CalibrationProfile)]
        entry.write_bytes(pickle.dumps(Path("/etc")))
        assert registry.load_profile(_profile_file()) == registry.load_profile(_profile_file())
        assert len(calls) == 2


def test_load_file_keeps_validated_specs_and_refuses_bad_ones(tmp_path, monkeypatch):
    from perfmodel.specs.hardware import DeviceSpec

    path = data_dir("hardware_specs") / "devices" / "h100-sxm5-80gb.yaml"
    plain = registry.load_file(DeviceSpec, path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\n")  # parses, fails validation
    with registry.parse_cache(tmp_path / "c"):
        assert registry.load_file(DeviceSpec, path) == plain  # miss: validated, stored
        calls = []
        real = registry.validate
        monkeypatch.setattr(registry, "validate", lambda *a, **k: calls.append(a) or real(*a, **k))
        assert registry.load_file(DeviceSpec, path) == plain  # hit
        assert calls == []
        for _ in range(2):  # never stored: refused each time
            with pytest.raises(SpecError, match="invalid"):
                registry.load_file(DeviceSpec, bad)
        assert len(calls) == 2


def test_a_file_replaced_during_validation_is_not_stored_under_the_old_bytes(tmp_path):
    """The key names the bytes read first; if the file changes before validation reads it (an
    atomic replace by `calibrate`), the validated model is the new file's and is not stored
    under the old bytes, so a later reader of the old bytes never gets the new model."""
    path = tmp_path / "spec.yaml"
    path.write_text("a: 1\n")

    def load():  # the replace lands while the file is being validated
        path.write_text("a: 2\n")
        return {"a": 2}

    folder = tmp_path / "c"
    with registry.parse_cache(folder):
        assert registry._read_validated(path, dict, load) == {"a": 2}
        assert not list(folder.glob("*.pickle"))
        # unchanged bytes are stored as before
        assert registry._read_validated(path, dict, lambda: {"a": 2}) == {"a": 2}
        assert len(list(folder.glob("*.pickle"))) == 1
