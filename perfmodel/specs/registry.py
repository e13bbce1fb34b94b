"""The one door to files: every spec file the package reads comes in here.

* ``read_yaml`` / ``read_mapping`` / ``load_file``: a YAML or JSON file into a mapping or a
  validated model, with errors that name file and field. YAML is parsed with PyYAML's C
  loader (libyaml) where it is installed, else its pure-Python SafeLoader: same data, ~10x
  faster on the shipped specs.
* The shipped data by id: devices, interconnects, nodes (hardware_specs/), model presets
  (models/) and calibration profiles (calibration/). Ids are file stems; each
  file is read once, on first use, and cached, so a lookup of one device reads one file.

The schema modules (``specs.common``, ``specs.hardware``, ``specs.model``, ``specs.system``,
``profile``) are pure pydantic / dataclasses; ``specs.assemble`` composes these lookups into a
system and reads scenario files.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from ..errors import SpecError, unknown_id
from ..paths import data_dir
from .common import Source, validate
from .hardware import DeviceSpec, InterconnectSpec, NodeSpec
from .model import ModelSpec

if TYPE_CHECKING:
    from ..profile import CalibrationProfile, CollectiveFit

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "MAX_ALIAS_NODES", "MAX_DEPTH", "MAX_DOCUMENT_BYTES", "MAX_RECORDS_BYTES", "borrow_profile",
    "cached_bytes", "decode_text", "default_profile", "devices", "get_device",
    "get_interconnect", "get_model", "get_node", "ids", "interconnects", "load_file",
    "load_profile", "models", "nodes", "parse_cache", "parse_json", "parse_yaml", "profile_for",
    "proxied_profile", "proxy_of", "proxy_source", "read_bytes", "read_json",
    "read_mapping", "read_text", "read_yaml", "reference_profile", "uses_scale_up", "yaml_loader",
]


# -- reading files ----------------------------------------------------------------------------
#
# Every file is read as bytes with a size cap, decoded as strict UTF-8 (a UTF-8 BOM is
# skipped) and parsed with a nesting limit; YAML aliases may not expand a document by more
# than MAX_ALIAS_NODES nodes (a 400-byte "billion laughs" file is refused in milliseconds).
# Each failure is a SpecError of one line that names the file.

MiB = 1 << 20
#: Size caps per kind of file: a spec document (scenario, model, HF config.json, price table,
#: case file, profile; the largest shipped one is a 0.5 MiB profile), and a line-per-record
#: file (serving trace CSV, calibration raw JSONL: a million-request trace is ~20 MiB).
MAX_DOCUMENT_BYTES = 16 * MiB
MAX_RECORDS_BYTES = 256 * MiB
#: Deepest nesting of mappings / lists in a YAML or JSON document (shipped files: <= 8).
MAX_DEPTH = 100
#: Nodes that YAML aliases may add beyond the document's own (shared anchors are fine; an
#: alias bomb adds 10^9).
MAX_ALIAS_NODES = 100_000


def _display_name(path: str | Path, what: str = "") -> str:
    """How errors name a file: ``what`` (e.g. "calibration profile") before its path."""
    return f"{what} {path}" if what else str(path)


def read_bytes(path: str | Path, max_bytes: int = MAX_DOCUMENT_BYTES,
               what: str = "") -> bytes:
    """A file's bytes, refusing a missing file, a folder, an unreadable file or one larger
    than ``max_bytes`` with one line that names it (``what`` prefixes the name)."""
    path = Path(path)
    name = _display_name(path, what)
    try:
        if path.is_dir():
            raise SpecError(f"{name}: is a folder, not a file")
        if not path.exists():
            raise SpecError(f"{name}: file not found")
        if not path.is_file():
            raise SpecError(f"{name}: not a regular file")
        if path.stat().st_size > max_bytes:
            raise SpecError(f"{name}: larger than the {max_bytes // MiB} MiB this kind of file "
                            "may have")
        with open(path, "rb") as fh:  # read at most the cap: a file may grow while read
            data = fh.read(max_bytes + 1)
    except OSError as err:
        raise SpecError(f"{name}: cannot read: {err.strerror or err}") from None
    if len(data) > max_bytes:
        raise SpecError(f"{name}: grew beyond the {max_bytes // MiB} MiB this kind of file "
                        "may have while being read")
    return data


def decode_text(data: bytes, name: str | Path, offset: int = 0) -> str:
    """Strict UTF-8 (a leading UTF-8 BOM is dropped); else a SpecError naming the first bad
    byte and its offset (``offset`` is added, for a slice of a larger file)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        hint = ""
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            hint = "; it looks like UTF-16 (byte-order mark): save it as UTF-8"
        line = data.count(b"\n", 0, err.start) + 1
        raise SpecError(f"{name}: not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}, "
                        f"offset {offset + err.start}){hint}") from None


def read_text(path: str | Path, max_bytes: int = MAX_DOCUMENT_BYTES, what: str = "") -> str:
    """A file's text: :func:`read_bytes` + :func:`decode_text`, one-line errors."""
    return decode_text(read_bytes(path, max_bytes, what), _display_name(path, what))


def yaml_loader() -> type:
    """PyYAML's C-accelerated safe loader when libyaml is present, else the Python one."""
    import yaml

    return yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


@cache
def _guarded(base: type) -> type:
    """``base`` whose composed node graph is measured before anything is constructed: depth
    and alias expansion are checked on the graph (aliases share nodes, so this is linear in
    the file), never on the expanded data."""

    class Guarded(base):  # type: ignore[misc, valid-type]
        def get_single_node(self):
            node = super().get_single_node()
            if node is not None:
                _check_graph(node)
            return node

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


class _ShapeError(Exception):
    pass


def _check_graph(root: Any) -> None:
    """Expanded node count and depth of a YAML node graph, by an iterative walk with one
    entry per distinct node; raises _ShapeError past the limits or on a recursive alias."""
    import yaml

    done: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
    open_: set[int] = set()
    distinct = 0
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if key in done:
            continue
        if isinstance(node, yaml.ScalarNode):
            done[key] = (1, 0)
            distinct += 1
            continue
        kids = ([k for pair in node.value for k in pair] if isinstance(node, yaml.MappingNode)
                else node.value)
        if leaving:
            open_.discard(key)
            depth = 1 + max((done[id(k)][1] for k in kids), default=0)
            if depth > MAX_DEPTH:
                raise _ShapeError(f"nested deeper than {MAX_DEPTH} levels")
            done[key] = (1 + sum(done[id(k)][0] for k in kids), depth)
            continue
        if key in open_:
            raise _ShapeError("an alias refers to a node that contains it")
        open_.add(key)
        distinct += 1
        stack.append((node, True))
        for k in kids:
            if id(k) in open_:
                raise _ShapeError("an alias refers to a node that contains it")
            if id(k) not in done:
                stack.append((k, False))
    if done[id(root)][0] - distinct > MAX_ALIAS_NODES:
        raise _ShapeError(f"aliases expand it beyond {MAX_ALIAS_NODES:,} nodes "
                          f"(to {done[id(root)][0]:,})")


def _yaml_problem(err: Exception) -> str:
    """A YAML error as one line: what went wrong and where (not the echoed file text)."""
    parts = [getattr(err, "context", None), getattr(err, "problem", None)]
    text = ": ".join(str(p) for p in parts if p) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(text.split())


def parse_yaml(text: str, name: str | Path) -> Any:
    """A YAML document (any top-level value) under the depth and alias limits."""
    import yaml

    try:
        return yaml.load(text, Loader=_guarded(yaml_loader()))
    except _ShapeError as err:
        raise SpecError(f"{name}: refused: {err}") from None
    except RecursionError:
        raise SpecError(f"{name}: refused: nested too deeply") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{name}: not valid YAML: {_yaml_problem(err)}") from None
    except (ValueError, TypeError, OverflowError) as err:  # a tagged scalar that is not its type
        raise SpecError(f"{name}: not valid YAML: {' '.join(str(err).split())}") from None


def parse_json(text: str, name: str | Path) -> Any:
    """A JSON document (any top-level value) under the depth limit."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"{name}: not valid JSON: {err.msg} (line {err.lineno}, "
                        f"column {err.colno})") from None
    except RecursionError:
        raise SpecError(f"{name}: refused: nested deeper than {MAX_DEPTH} levels") from None
    _check_depth(data, name)
    return data


def _check_depth(data: Any, name: str | Path) -> None:
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        kids = item.values() if isinstance(item, dict) else item
        if depth > MAX_DEPTH:
            raise SpecError(f"{name}: refused: nested deeper than {MAX_DEPTH} levels")
        # a profile's tables are long lists of numbers: the set of the kids' types (built in
        # C by map) tells in one pass whether any kid is a container at all; only then are
        # the containers picked out (same check, ~4x less time on the 0.97 MB H100 profile)
        if any(issubclass(t, (dict, list)) for t in set(map(type, kids))):
            stack.extend([(k, depth + 1) for k in kids if isinstance(k, (dict, list))])


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file (any top-level value); the single YAML reader of the package."""
    return _read_parsed(path, "yaml", lambda text: parse_yaml(text, path))


def read_json(path: str | Path, what: str = "") -> Any:
    """Parse a JSON file (any top-level value)."""
    name = _display_name(path, what)
    return _read_parsed(path, "json", lambda text: parse_json(text, name), what)


# -- a cache of parsed documents (CLI runs) ---------------------------------------------------
#
# Parsing is a function of a file's bytes, of this module (parser choice, limits) and of
# PyYAML. Inside ``parse_cache()`` (``perfmodel plan-training`` runs in it) every document
# that parses is kept, under a key hashed from all of these, in a private folder of the user's
# cache; a later run that reads the same bytes loads the parsed data instead of parsing it
# again (a fresh process skips PyYAML's import, the 0.97 MB H100 profile's JSON decode and
# depth check; benchmarks/search_speed.py). Only the parse is cached: every validation
# (pydantic models, id and schema-version checks, size caps) runs as before, on equal data --
# except that of ``load_file`` and calibration profiles, whose validated models are kept too
# (below). A document that
# fails to parse is never stored; an entry that cannot be read is a miss.

CACHE_ENV = "PERFMODEL_CACHE_DIR"  # a folder; empty, "0" or "off": no cache
_CACHE_FORMAT = b"perfmodel parsed-document cache 1"
_CACHE_ENTRIES = 256  # oldest entries beyond this are removed when a new one is stored
_cache_dir: Path | None = None


def default_cache_dir() -> Path | None:
    """$PERFMODEL_CACHE_DIR if set (empty, "0" or "off": None), else
    $XDG_CACHE_HOME/perfmodel/parsed, else ~/.cache/perfmodel/parsed."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "0", "off", "none") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "perfmodel" / "parsed"


@contextmanager
def parse_cache(directory: str | Path | None = None) -> Iterator[Path | None]:
    """Within the block, YAML and JSON documents read through this module keep their parsed
    data in ``directory`` (default: :func:`default_cache_dir`) and reuse it for the same bytes.
    The folder must be the user's own and writable by no one else (created 0700 if missing);
    otherwise the block runs without a cache. Yields the folder used, or None."""
    global _cache_dir
    previous = _cache_dir
    folder = default_cache_dir() if directory is None else Path(directory)
    _cache_dir = folder if folder is not None and _private_folder(folder) else None
    try:
        yield _cache_dir
    finally:
        _cache_dir = previous


def _private_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = folder.stat()
    except OSError:
        return False
    mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return mine and not st.st_mode & 0o022


@cache
def _cache_salt() -> bytes:
    """What a parse depends on besides the bytes: this module's file and PyYAML's (both by
    size and modification time: an edit or a reinstall changes them), the Python version."""
    import importlib.util

    parts = [_CACHE_FORMAT, sys.version.encode()]
    spec = importlib.util.find_spec("yaml")
    for f in (__file__, spec.origin if spec else None):
        if f:
            st = os.stat(f)
            parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return b"\0".join(parts)


def _read_parsed(path: str | Path, kind: str, parse: Callable[[str], Any], what: str = "") -> Any:
    """``parse`` of the file's text, through the parse cache when one is active."""
    folder = _cache_dir
    if folder is None:
        return parse(read_text(path, what=what))
    import hashlib

    data = read_bytes(path, what=what)
    key = hashlib.blake2b(_cache_salt(), digest_size=20)
    key.update(f"\0{kind}\0{MAX_DEPTH}\0{MAX_ALIAS_NODES}\0".encode())
    key.update(data)
    entry = folder / f"{key.hexdigest()}.pickle"
    try:
        with open(entry, "rb") as fh:
            return _data_unpickler()(fh).load()
    except Exception:  # missing, damaged or foreign: parse the file again
        pass
    parsed = parse(decode_text(data, _display_name(path, what)))
    _store(entry, parsed)
    return parsed


def _store(entry: Path, parsed: Any) -> None:
    import pickle

    from ..atomic import atomic_path

    try:
        with atomic_path(entry) as tmp, open(tmp, "wb") as fh:
            pickle.dump(parsed, fh, protocol=pickle.HIGHEST_PROTOCOL)
        entries = sorted(entry.parent.glob("*.pickle"), key=lambda p: p.stat().st_mtime_ns)
        for old in entries[:-_CACHE_ENTRIES]:
            old.unlink(missing_ok=True)
    except (OSError, pickle.PicklingError, TypeError, ValueError, RecursionError):
        pass  # a cache that cannot be written is no cache


@cache
def _data_unpickler() -> type:
    import pickle

    class DataUnpickler(pickle.Unpickler):
        """Plain parsed data only: containers, strings, numbers and the dates YAML makes; any
        other class named in an entry refuses it (a miss)."""

        def find_class(self, module: str, name: str) -> Any:
            if module == "datetime" and name in ("date", "datetime", "time", "timedelta",
                                                 "timezone"):
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"{module}.{name} is not parsed data")

    return DataUnpickler


# Spec files read as models (``load_file``: devices, nodes, interconnects, model presets,
# framework files) and calibration profiles go one step further: validation costs a fresh
# process more than the parse -- for the 0.97 MB H100 profile, pydantic over every table value
# and the curves' grid checks, ~45 ms of CPU against ~12 ms to load the validated model; for
# the small specs, mostly building each model's pydantic validator on first use (2026-12-03).
# Inside ``parse_cache()`` the validated model is kept as well, under a key that adds to the
# parse key the model class, every source file of this package and the pydantic /
# pydantic-core versions (the schema and its validators live in that code: an edit or an
# upgrade is a miss). Only a model that passed every check is stored; a hit is the same model,
# field for field, as validating the file again (tests/test_plan_parse_cache.py). The entry's
# unpickler builds pydantic models of this package and the parsed-data types only; anything
# else refuses the entry (a miss).

_VALIDATED_FORMAT = b"perfmodel validated-model cache 1"


@cache
def _code_salt() -> bytes:
    """What a validated model depends on besides the file's bytes and the parse: the source
    files of this package (by path, size and modification time; a wheel's data folder
    ``_data`` holds none) and pydantic's versions."""
    import pydantic
    import pydantic_core

    root = Path(__file__).resolve().parents[1]
    parts = [_VALIDATED_FORMAT, pydantic.VERSION.encode(), pydantic_core.__version__.encode()]
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames[:] = sorted(d for d in dirnames if d not in ("__pycache__", "_data"))
        for name in sorted(filenames):
            if name.endswith(".py"):
                st = os.stat(os.path.join(dirpath, name))
                parts.append(f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return b"\0".join(parts)


def _read_validated(path: Path, model: type[M], load: Callable[[], M], what: str = "") -> M:
    """``load()`` (read, check and validate ``path`` as ``model``), through the parse cache's
    folder when one is active: a validated model stored for the same bytes, code and model is
    loaded instead."""
    folder = _cache_dir
    if folder is None:
        return load()
    import hashlib

    key = hashlib.blake2b(_cache_salt(), digest_size=20)
    key.update(_code_salt())
    key.update(f"\0validated\0{model.__module__}.{model.__qualname__}\0{MAX_DEPTH}\0"
               f"{MAX_ALIAS_NODES}\0".encode())
    data = read_bytes(path, what=what)
    key.update(data)
    entry = folder / f"{key.hexdigest()}.pickle"
    item = _load_entry(entry, _model_unpickler(), model)
    if item is not None:
        return item
    item = load()
    if read_bytes(path, what=what) == data:  # load() read the bytes the key names, not a newer file
        _store(entry, item)
    return item


def _load_entry(entry: Path, unpickler, kind: type):
    """The cache entry's object when it is a ``kind``; None for a missing, damaged or foreign
    entry (the caller makes it again)."""
    try:
        with open(entry, "rb") as fh:
            item = unpickler(fh).load()
        return item if type(item) is kind else None
    except Exception:
        return None


def cached_bytes(kind: str, key: bytes, make: Callable[[], bytes]) -> bytes:
    """``make()``: bytes a fresh process would otherwise compute again from the same inputs
    (e.g. ``uncertainty``'s fixed-seed Monte-Carlo draws, whose generator costs an import of
    numpy.random), kept in the parse cache's folder when one is active, under a key hashed
    from ``kind``, ``key`` (every input ``make`` reads that is not code) and this package's
    code (``_code_salt``: an edit is a miss). The bytes loaded are the bytes ``make()``
    returned; an entry that cannot be read is a miss."""
    folder = _cache_dir
    if folder is None:
        return make()
    import hashlib

    h = hashlib.blake2b(_code_salt(), digest_size=20)
    h.update(f"\0bytes\0{kind}\0".encode())
    h.update(key)
    entry = folder / f"{h.hexdigest()}.pickle"
    item = _load_entry(entry, _data_unpickler(), bytes)
    if item is None:
        item = make()
        _store(entry, item)
    return item


@cache
def _model_unpickler() -> type:
    import importlib

    data = _data_unpickler()

    class ModelUnpickler(data):
        """Parsed data and this package's pydantic models; any other class refuses the
        entry."""

        def find_class(self, module: str, name: str) -> Any:
            if module == "perfmodel" or module.startswith("perfmodel."):
                obj = getattr(importlib.import_module(module), name, None)
                if isinstance(obj, type) and issubclass(obj, BaseModel):
                    return obj
            return super().find_class(module, name)

    return ModelUnpickler


def read_mapping(path: str | Path) -> dict:
    """Read a YAML or JSON file that must contain a mapping."""
    path = Path(path)
    data = read_json(path) if path.suffix == ".json" else read_yaml(path)
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {_kind(data)}"
        raise SpecError(f"{path}: expected a mapping (key: value lines) at the top level, "
                        f"got {got}")
    return data


def _kind(data: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number",
            float: "number"}.get(type(data), type(data).__name__)


def load_file(model: type[M], path: str | Path) -> M:
    """A file validated as ``model``; errors name the file. Inside ``parse_cache()`` the
    validated model is kept and reused for the same bytes and code (``_read_validated``)."""
    return _read_validated(Path(path), model,
                           lambda: validate(model, read_mapping(path), what=str(path)))


# -- shipped data by id -----------------------------------------------------------------------

_KINDS: dict[str, tuple[type[BaseModel], Any]] = {
    "device": (DeviceSpec, lambda: data_dir("hardware_specs") / "devices"),
    "interconnect": (InterconnectSpec, lambda: data_dir("hardware_specs") / "interconnects"),
    "node": (NodeSpec, lambda: data_dir("hardware_specs") / "nodes"),
    "model": (ModelSpec, lambda: data_dir("models")),
}


@cache
def ids(kind: str) -> tuple[str, ...]:
    """The ids of one kind of shipped spec (file stems, in file-name order), without reading
    the files."""
    return tuple(p.stem for p in sorted(_KINDS[kind][1]().glob("*.yaml")))


def load_named(model: type[BaseModel], folder: Path, item_id: str) -> Any:
    """``folder/<item_id>.yaml`` read as ``model``, whose ``id`` must equal the file name (so a
    renamed or copied file cannot silently stand in for another)."""
    path = folder / f"{item_id}.yaml"
    item = load_file(model, path)
    if item.id != path.stem:
        raise SpecError(f"{path}: id {item.id!r} must equal the file name {path.stem!r}")
    return item


@cache
def _load(kind: str, item_id: str) -> Any:
    model, folder = _KINDS[kind]
    return load_named(model, folder(), item_id)


def _table(kind: str) -> dict:
    return {item_id: _load(kind, item_id) for item_id in ids(kind)}


def _get(kind: str, key: str) -> Any:
    if key not in ids(kind):
        raise unknown_id(kind, key, ids(kind))
    return _load(kind, key)


@cache
def devices() -> dict[str, DeviceSpec]:
    return _table("device")


@cache
def interconnects() -> dict[str, InterconnectSpec]:
    return _table("interconnect")


@cache
def nodes() -> dict[str, NodeSpec]:
    return _table("node")


@cache
def models() -> dict[str, ModelSpec]:
    return _table("model")


def get_device(device_id: str) -> DeviceSpec:
    return _get("device", device_id)


def get_interconnect(interconnect_id: str) -> InterconnectSpec:
    return _get("interconnect", interconnect_id)


def get_node(node_id: str) -> NodeSpec:
    return _get("node", node_id)


def get_model(model_id: str) -> ModelSpec:
    return _get("model", model_id)


# -- calibration profiles ---------------------------------------------------------------------

def load_profile(path: str | Path) -> CalibrationProfile:
    """Read a profile JSON, checking the schema version first for a clear message."""
    from ..profile import SCHEMA_VERSION, CalibrationProfile

    path = Path(path)
    if not path.exists():
        raise SpecError(f"calibration profile not found: {path}")

    def checked() -> CalibrationProfile:
        data = read_json(path, what="calibration profile")
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != SCHEMA_VERSION:
            raise SpecError(
                f"{path}: calibration schema_version {version!r} is not supported "
                f"(this perfmodel reads version {SCHEMA_VERSION}); re-run `perfmodel calibrate`"
            )
        return validate(CalibrationProfile, data, what=f"calibration profile {path}")

    profile = _read_validated(path, CalibrationProfile, checked, what="calibration profile")
    return _complete(profile).model_copy(update={"path": str(path)})


def measured_moe_curves(profile: CalibrationProfile) -> dict:
    """``profile``'s measured MoE curves: inline (``moe_curves``) or read from its
    ``moe_curves_file`` (``load_moe_curves``); each table they name is one of its ``moe``
    tables (``profile.check_curve_tables``)."""
    path = profile.moe_curves_path()
    if path is None:
        return profile.moe_curves
    if not path.exists():
        raise SpecError(f"measured MoE curves not found: {path} (named by its calibration "
                        "profile's moe_curves_file)")
    st = path.stat()  # a rewritten file is read anew
    return load_moe_curves(path, st.st_mtime_ns, st.st_size, frozenset(profile.moe))


@cache
def load_moe_curves(path: Path, mtime_ns: int, size: int, tables: frozenset[str]) -> dict:
    """The curves of a profile's ``moe_curves_file`` (``profile.MoeCurveSet``), checked against
    the profile's ``tables`` once: read once per file version and profile tables, through the
    parse cache."""
    from ..profile import MoeCurveSet, check_curve_tables

    def checked() -> MoeCurveSet:
        return validate(MoeCurveSet, read_json(path, what="measured MoE curves"),
                        what=f"measured MoE curves {path}")

    curves = _read_validated(path, MoeCurveSet, checked, what="measured MoE curves").curves
    check_curve_tables(curves, tables)
    return curves


def _complete(profile: CalibrationProfile) -> CalibrationProfile:
    """Fill the optional default constants a profile leaves unset (older files) from the
    documented defaults, so that the core never has to look them up itself."""
    d = profile.defaults  # its fields read, not dumped: a dump builds its serializer (~3 ms)
    missing = {k for k in type(d).model_fields if getattr(d, k) is None}
    if not missing or profile.id == "default":
        return profile
    base = default_profile().defaults
    defaults = profile.defaults.model_copy(update={k: getattr(base, k) for k in missing})
    return profile.model_copy(update={"defaults": defaults})


def default_profile() -> CalibrationProfile:
    """The documented uncalibrated profile (calibration/default.json)."""
    return _load_named("default.json")


def reference_profile(device_id: str) -> CalibrationProfile | None:
    """The shipped reference profile measured on the device, if any
    (calibration/<id>.reference.json). A device without one may borrow the profile of the
    same silicon (``proxied_profile``); ``profile_for`` looks up both."""
    try:
        return _load_named(f"{device_id}.reference.json")
    except SpecError:
        return None


def proxied_profile(device_id: str) -> CalibrationProfile | None:
    """For a device whose file names a ``calibration_proxy`` (the same silicon as a device
    with a reference profile), that device's reference profile borrowed for it
    (``borrow_profile``); else None."""
    if device_id not in ids("device"):
        return None
    return _proxied_profile(device_id)


@cache
def _proxied_profile(device_id: str) -> CalibrationProfile | None:
    source = proxy_source(get_device(device_id))
    if source is None:
        return None
    return borrow_profile(_load_named(f"{source.id}.reference.json"), source,
                          get_device(device_id))


def proxy_source(device: DeviceSpec) -> DeviceSpec | None:
    """The device whose reference profile ``device`` borrows (its ``calibration_proxy``), or
    None; a proxy that names no known device, a device without its own reference profile, or
    one of another architecture is refused with one line naming the field."""
    proxy = device.calibration_proxy
    if proxy is None:
        return None
    where = f"hardware_specs/devices/{device.id}.yaml: calibration_proxy.device"
    if proxy.device not in ids("device"):
        near = [i for i in ids("device") if i[:3] == proxy.device[:3]] or list(ids("device"))
        raise SpecError(f"{where} {proxy.device!r} is not a known device (e.g. "
                        f"{', '.join(near[:8])})")
    source = get_device(proxy.device)
    if not (data_dir("calibration") / f"{source.id}.reference.json").is_file():
        raise SpecError(f"{where} {proxy.device!r} has no reference profile "
                        f"(calibration/{source.id}.reference.json) to borrow")
    if (source.architecture or "").lower() != (device.architecture or "").lower():
        raise SpecError(f"{where} {proxy.device!r} is {source.architecture!r}, not "
                        f"{device.architecture!r}: a proxy must be the same silicon")
    return source


def proxy_of(profile: CalibrationProfile, device: DeviceSpec) -> dict | None:
    """How ``profile`` serves ``device`` when it is borrowed by the device's
    ``calibration_proxy`` (the profile was measured on the proxy device): {"device", "why",
    "differs", "basis"} for the prediction's output; None otherwise."""
    proxy = device.calibration_proxy
    if proxy is None or profile.device != proxy.device or profile.device == device.id:
        return None
    return {"device": proxy.device, "why": proxy.why, "differs": proxy.differs,
            "basis": f"{profile.id.removesuffix('@' + device.id)} (same silicon: {proxy.why})"}


#: collectives whose inter-node fit moves data NIC to NIC with no intra-node stage: a
#: point-to-point between two ranks, each on its own node (converters.vidur_network: send_recv
#: with num_workers 2 > devices_per_node, scope inter; the H100 reference's notes: "vidur's
#: H100 DGX pair across 2 nodes against one NDR 400 NIC per GPU")
NIC_ONLY_INTER = frozenset({"send_recv"})


def uses_scale_up(fit: CollectiveFit) -> bool:
    """Whether a collective fit's measurement ran over its node's scale-up fabric (NVSwitch,
    Infinity Fabric), so it describes only devices with that fabric: every ``intra`` fit,
    and every ``inter`` one but a point-to-point's (NIC_ONLY_INTER). A hierarchical NCCL
    collective across nodes (all-reduce / all-gather / reduce-scatter / all-to-all) has an
    intra-node stage; DeepEP's internode kernels (ep_dispatch / ep_combine, normal and low
    latency) forward over NVLink inside each node: the normal kernels by design (RDMA to the
    same local rank, then NVL buffers: aiconfigurator collector/deep_collector/test_internode.py
    @97c28ba6 times NVL chunk sizes and NVL receive bytes), the low-latency ones as the
    collector runs them (Buffer(..., allow_nvlink_for_low_latency_mode=not args.disable_nvlink),
    README @25e61f7b passes no --disable-nvlink)."""
    return fit.scope != "inter" or fit.collective not in NIC_ONLY_INTER


def borrow_profile(profile: CalibrationProfile, source: DeviceSpec,
                   device: DeviceSpec) -> CalibrationProfile:
    """``profile`` (measured on ``source``) as ``device`` reads it: its efficiency curves as
    they are -- every efficiency is a fraction of the roofline of the device it runs on
    (``perfmodel.profile``: GEMM / attention of max(FLOPs / peak, bytes / HBM bw), memory
    kernels of the HBM bandwidth, collectives of the link bandwidth), so on ``device`` they
    apply to its own peaks and bandwidths -- and its absolute rates rescaled to ``device``:

    * ``elementwise_rate`` (elements/s, an achieved-bandwidth roof: ``roofline``) by the
      ratio of HBM bandwidths, as the memory curve is a fraction of each device's bandwidth;
    * measured ``peak_tflops`` / ``memory_bandwidth_gbps`` overrides by the ratio of the two
      datasheets' peaks / bandwidths (a dtype either lacks is dropped);
    * collective fits whose measurement ran over the node's scale-up fabric only where both
      devices have the same one (an efficiency of an NVSwitch board does not describe an
      NVLink bridge or PCIe): otherwise they and their residuals are dropped and the
      documented defaults apply (``uses_scale_up``: every intra-node fit, and every
      inter-node one but a point-to-point's, NIC_ONLY_INTER).

    Fixed per-call times (kernel launch, attention / MoE overheads, collective latency) are
    kept: the same kernels on the same die (clock differences are within the sourced
    ``differs``). The profile keeps its ``device`` (where it was measured); its notes
    and sources say it is borrowed, its id is ``<id>@<device>`` (``proxy_of``)."""
    bw = device.memory_bandwidth_gbps / source.memory_bandwidth_gbps
    peaks = {}
    for dtype, value in profile.peak_tflops.items():
        mine, theirs = device.peak_tflops.get(dtype), source.peak_tflops.get(dtype)
        if mine and theirs:
            peaks[dtype] = value * mine / theirs
    same_fabric = (device.scale_up is not None and source.scale_up is not None
                   and device.scale_up.interconnect == source.scale_up.interconnect)
    kept = [f for f in profile.collectives if same_fabric or not uses_scale_up(f)]
    dropped = {f"collective.{f.collective}.{f.scope}.{f.group_size}"
               for f in profile.collectives if f not in kept}
    proxy = device.calibration_proxy
    by_id = {s.id: s for s in device.sources}
    cited = [by_id[i] for i in proxy.sources if i in by_id] if proxy else []
    note = (f"Borrowed for {device.id} (calibration_proxy: {proxy.why if proxy else ''}; "
            f"differs: {proxy.differs if proxy else ''}): efficiencies applied to "
            f"{device.id}'s own peaks and bandwidths, element-wise rates x {bw:.4g} (HBM "
            f"bandwidth ratio)"
            + ("" if same_fabric or not dropped else
               f", collective fits measured over the scale-up fabric dropped (intra-node, "
               f"and inter-node but point-to-point; {device.id}'s scale-up fabric differs)")
            + ".")
    return profile.model_copy(update={
        "id": f"{profile.id}@{device.id}",  # what every output names: this profile, borrowed
        "elementwise_rate": {k: v * bw for k, v in profile.elementwise_rate.items()},
        "peak_tflops": peaks,
        "memory_bandwidth_gbps": (profile.memory_bandwidth_gbps * bw
                                  if profile.memory_bandwidth_gbps else None),
        "collectives": kept,
        "fit_errors": [fe for fe in profile.fit_errors if fe.table not in dropped],
        "uncertainty": {k: v for k, v in profile.uncertainty.items() if k not in dropped},
        "notes": f"{profile.notes or ''} {note}".strip(),
        "sources": [*profile.sources,
                    *(Source(id=f"proxy:{s.id}", title=s.title, url=s.url,
                             read_via=s.read_via, location=s.location) for s in cited)],
    })


@cache
def _load_named(name: str) -> CalibrationProfile:
    return load_profile(data_dir("calibration") / name)


def profile_for(device_id: str, path: str | Path | None = None) -> CalibrationProfile:
    """The profile a prediction uses: an explicit file, else the device's reference profile,
    else its ``calibration_proxy``'s borrowed (``proxied_profile``), else the default
    (uncalibrated) one.
    An explicit file measured on the device's proxy is borrowed as the shipped one is
    (``borrow_profile``)."""
    if path is not None:
        profile = load_profile(path)
        if device_id in ids("device") and profile.device and profile.device != device_id:
            device = get_device(device_id)
            source = proxy_source(device)
            if source is not None and source.id == profile.device:
                return borrow_profile(profile, source, device)
        return profile
    return reference_profile(device_id) or proxied_profile(device_id) or default_profile()
