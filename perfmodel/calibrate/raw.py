"""The raw measurement store: JSON Lines beside the profile (``<out>.raw.jsonl``).

One line per measured point, appended with flush + fsync as soon as the point completes, so an
interrupted run loses at most the point in flight and ``perfmodel calibrate`` resumes where it
stopped (points whose key is already stored are skipped). The first line is a ``meta`` header.
Point records (the format ``fit.fit_profile`` reads, and into which published tables are
converted)::

    {"bench": "gemm"|"memory"|"attention"|"elementwise"|"launch"|"collective",
     "key": "<unique point key>", "params": {...}, "time_s": <median s> | null,
     "stats": {"p10": s, "p90": s, "n": reps, ...} | null,
     "status": "ok"|"oom"|"unsupported"|"error", "error": null | "message",
     "env": {...}}   # optional: clocks / throttle reasons sampled after the point

If a key appears twice (an ``error`` point retried on resume), the last record wins.

Two more kinds of record share the format: ``probe`` (the one GEMM per dtype that decides which
dtypes are swept, ``probe.py``) and ``budget`` (one per table and run: its time budget, the time
used and how many points it left unmeasured, ``budget.py``; ``params`` = table and run start).

A point that kills the process (on Linux a too-large allocation can succeed and then wake the
kernel's OOM killer, which no ``except`` sees) would be retried forever. So the key of the point
in flight is kept in ``<raw>.inflight``: a resumed run that finds it knows the previous run
died there; after two deaths on the same point it is recorded ``oom`` and skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import PerfModelError, SpecError
from ..specs.registry import MAX_RECORDS_BYTES, decode_text, read_bytes

BENCHES = ("gemm", "memory", "attention", "elementwise", "launch", "collective")
RECORD_KINDS = (*BENCHES, "probe", "budget")
STATUSES = ("ok", "oom", "unsupported", "error")
DONE = ("ok", "oom", "unsupported")  # statuses not retried on resume ("error" is)
MAX_DEATHS = 2  # a point the process died on this often is recorded "oom" and skipped
# Facts that must match for a resumed file to continue (else the points would mix machines);
# the thread count only matters on a CPU (torchrun sets OMP_NUM_THREADS=1 on GPU nodes).
IDENTITY = ("device", "name")
CPU_IDENTITY = ("threads",)


def raw_path(out: str | Path) -> Path:
    """``calibration/x.json`` -> ``calibration/x.json.raw.jsonl``."""
    out = Path(out)
    return out.with_name(out.name + ".raw.jsonl")


def point_key(bench: str, params: dict) -> str:
    """A stable key from the bench and its parameters, e.g. ``gemm:dtype=bf16,k=64,m=1,n=64``."""
    return bench + ":" + ",".join(f"{k}={params[k]}" for k in sorted(params))


def point_record(bench: str, params: dict, *, time_s: float | None = None,
                 stats: dict | None = None, status: str = "ok", error: str | None = None,
                 env: dict | None = None) -> dict:
    """A record in the agreed shape (see module docstring)."""
    if bench not in RECORD_KINDS:
        raise ValueError(f"unknown bench {bench!r}")
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    rec = {"bench": bench, "key": point_key(bench, params), "params": dict(params),
           "time_s": time_s, "stats": stats, "status": status, "error": error}
    if env:
        rec["env"] = env
    return rec


def budget_record(summary: dict, run_start: str) -> dict:
    """A table's budget outcome for one run (``budget.TableBudget.summary``)."""
    return point_record("budget", {"table": summary["table"], "run": run_start},
                        time_s=summary["used_s"], stats=summary)


class RawStore:
    """Append-only JSON Lines file with a meta header; reading tolerates a torn last line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta: dict | None = None
        self._records: dict[str, dict] = {}
        self.inflight = self.path.with_name(self.path.name + ".inflight")
        self.died: dict[str, int] = {}  # key -> runs that died while measuring it
        if self.path.exists():
            self._load()
        if self.inflight.exists():
            try:
                state = json.loads(self.inflight.read_text())
                self.died[state["key"]] = int(state["deaths"]) + 1
            except (ValueError, KeyError, TypeError):
                pass

    def _load(self) -> None:
        data = read_bytes(self.path, MAX_RECORDS_BYTES, what="calibration raw file")
        if data and not data.endswith(b"\n"):
            # a write torn by a kill: drop the partial line so appends start on a clean line
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)
            data = data[:cut]
        afresh = "delete the file to start the calibration afresh"
        try:
            text = decode_text(data, self.path)
        except SpecError as err:
            raise PerfModelError(f"{err}; {afresh}") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError):
                rec = None
            if not isinstance(rec, dict) or not isinstance(rec.get("key", ""), str):
                raise PerfModelError(f"{self.path}:{lineno}: not a JSON record; {afresh}")
            if rec.get("bench") == "meta":
                self.meta = self.meta or rec
            elif "key" in rec:
                self._records[rec["key"]] = rec

    def check_identity(self, meta: dict) -> None:
        """Refuse to resume a file measured on another device or thread count."""
        if self.meta is None:
            return
        fields = IDENTITY + (CPU_IDENTITY if meta.get("device") == "cpu" else ())
        for field in fields:
            old, new = self.meta.get(field), meta.get(field)
            if old != new:
                raise PerfModelError(
                    f"{self.path} was measured with {field}={old!r}, this run has {new!r}; "
                    "choose another --out or delete the raw file")

    def start(self, meta: dict) -> None:
        """Write the header if the file is new (a resumed file keeps its first header)."""
        self.check_identity(meta)
        if self.meta is None:
            self.meta = {"bench": "meta", **{k: v for k, v in meta.items() if k != "bench"}}
            self._append(self.meta)

    def done(self, key: str) -> bool:
        rec = self._records.get(key)
        return rec is not None and rec.get("status") in DONE

    def begin(self, key: str) -> None:
        """Note the point about to be measured (cleared by ``add``)."""
        state = json.dumps({"key": key, "deaths": self.died.get(key, 0)})
        tmp = self.inflight.with_name(self.inflight.name + ".tmp")
        self.inflight.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as fh:
            fh.write(state)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.inflight)

    def deadly(self, key: str) -> bool:
        """The process died on this point in MAX_DEATHS previous runs."""
        return self.died.get(key, 0) >= MAX_DEATHS

    def add(self, record: dict) -> None:
        self._records[record["key"]] = record
        self._append(record)
        self.inflight.unlink(missing_ok=True)

    def records(self) -> list[dict]:
        """Point records, one per key (last wins), in first-measured order."""
        return list(self._records.values())

    def _append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, allow_nan=False, default=_jsonable) + "\n").encode()
        with open(self.path, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def _jsonable(value):
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)
