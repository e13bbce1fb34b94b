"""One door to files (issue 8): the schema layer and the core read no file and import no
file-reading module; every YAML file is parsed by ``specs.registry.read_yaml`` with PyYAML's
C loader where libyaml is present; the registry reads one file per looked-up id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from perfmodel.specs import registry

ROOT = Path(__file__).resolve().parents[1]

FILE_READERS = ("perfmodel.specs.registry", "perfmodel.specs.assemble",
                "perfmodel.zoo", "perfmodel.paths", "perfmodel.api", "yaml")


def _fresh_modules(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, cwd=ROOT, check=True, timeout=60)
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("module", [
    "perfmodel.ops", "perfmodel.roofline", "perfmodel.comm", "perfmodel.profile",
    "perfmodel.specs.common", "perfmodel.specs.hardware", "perfmodel.specs.model",
    "perfmodel.specs.scenario", "perfmodel.specs.system",
])
def test_core_and_schema_import_no_file_reader(module):
    loaded = _fresh_modules(f"import {module}")
    assert module in loaded
    assert not loaded & set(FILE_READERS), sorted(loaded & set(FILE_READERS))


def test_import_perfmodel_ops_loads_few_modules():
    loaded = _fresh_modules("import perfmodel.ops")
    ours = sorted(m for m in loaded if m == "perfmodel" or m.startswith("perfmodel."))
    assert len(ours) <= 8, ours  # was 26 before issue 8


@pytest.mark.parametrize("argv", [["--help"], ["models", "list"]])
def test_cli_help_and_listing_skip_numpy_and_the_core(argv):
    loaded = _fresh_modules("import contextlib, io\nfrom perfmodel.cli import main\n"
                            f"with contextlib.redirect_stdout(io.StringIO()):\n"
                            f"    try:\n        main({argv!r})\n    except SystemExit:\n"
                            "        pass")
    assert not loaded & {"numpy", "perfmodel.api", "perfmodel.serving", "perfmodel.training"}


def test_yaml_loader_is_the_c_one_when_libyaml_is_present(monkeypatch):
    expected = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    assert registry.yaml_loader() is expected
    used = []
    real_load = yaml.load

    def spy(stream, Loader):
        used.append(Loader)
        return real_load(stream, Loader=Loader)

    monkeypatch.setattr(yaml, "load", spy)
    data = registry.read_mapping(ROOT / "examples" / "llama2-7b-decode-a100.yaml")
    assert data["kind"] == "inference"
    assert len(used) == 1 and issubclass(used[0], expected)  # guarded by depth/alias limits
    if yaml.__with_libyaml__:
        assert issubclass(used[0], yaml.CSafeLoader)


def test_yaml_loader_falls_back_to_the_python_one(monkeypatch):
    monkeypatch.setattr(yaml, "__with_libyaml__", False)
    assert registry.yaml_loader() is yaml.SafeLoader


def _shipped_yaml() -> list[Path]:
    folders = ["hardware_specs", "examples", "validation", "calibration", "perfmodel"]
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.yaml"))


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="libyaml not installed")
def test_c_and_python_loaders_read_every_shipped_file_alike():
    files = _shipped_yaml()
    assert len(files) > 50
    for path in files:
        text = path.read_text()
        assert yaml.load(text, Loader=yaml.CSafeLoader) == yaml.safe_load(text), path


def test_no_yaml_parsing_outside_the_registry():
    offenders = []
    for path in (ROOT / "perfmodel").rglob("*.py"):
        if path.name == "registry.py" and path.parent.name == "specs":
            continue
        text = path.read_text()
        if "yaml.safe_load" in text or "yaml.load(" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_a_lookup_reads_only_its_own_file(monkeypatch):
    read = []
    real = registry.read_mapping

    def spy(path):
        read.append(Path(path).name)
        return real(path)

    for fn in (registry._load, registry.devices):
        fn.cache_clear()
    monkeypatch.setattr(registry, "read_mapping", spy)
    try:
        device = registry.get_device("h100-sxm5-80gb")
        assert device.id == "h100-sxm5-80gb"
        assert read == ["h100-sxm5-80gb.yaml"]
        assert registry.get_device("h100-sxm5-80gb") is device  # cached: no second read
        assert read == ["h100-sxm5-80gb.yaml"]
        with pytest.raises(Exception, match="did you mean"):
            registry.get_device("h100-sxm5")
        assert len(read) == 1  # an unknown id reads no file
    finally:
        for fn in (registry._load, registry.devices):
            fn.cache_clear()


def test_registry_tables_keep_file_name_order():
    folder = ROOT / "hardware_specs" / "devices"
    assert list(registry.devices()) == [p.stem for p in sorted(folder.glob("*.yaml"))]

