"""Linear-attention tables: per (phase, kind) (roofline.LINEAR_KINDS: gdn, kda, ssd), the
efficiency of the core's own linear-attention operator (``ops.linear_attention_ops``'
``attn.gdn_core`` / ``attn.kda_core``, ``ops.mamba_ops``' ``attn.ssd_core``: reused, not
re-derived) over the point the core places it at on that curve, plus the curve's fixed time
per call (``attention.attention_floor``), fitted into ``profile.attention["<phase>_<kind>"]``
and ``attention_overhead_s`` exactly as the softmax-attention tables are (``fit.attention``:
the same time inversion, floor, backend choice, held-out test through ``roofline.op_times``).

Points: a prefill core at (streams, q_len), streams = sequences x heads on the GPU (``Op.batch``:
the chunked kernels run one recurrence's chunks in order and the recurrences in parallel; on
B200 vLLM 0.24.0's FlashInfer kernel takes 0.33 ms for 8,192 tokens from 2 to 128 streams,
then twice that at 192-256); a decode core at the point the core builds (sequences x heads,
the state's size in KV-token equivalents). Records: ``converters_linear.aic_linear_attention``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ... import ops as O
from ...profile import CalibrationProfile, FitError
from ...roofline import Roofline, op_times
from ...specs.hardware import DeviceSpec
from ...specs.model import LinearAttentionSpec, MambaSpec, ModelSpec
from .attention import curve_table, fastest_backend
from .compose import heldout_error
from .table import Table, ok_records, precision_for, unit_profile

BENCH = "linear_attention"
CORE_NAMES = ("attn.gdn_core", "attn.kda_core", "attn.ssd_core")


def curve_name(p: dict) -> str:
    """The profile curve a record is fitted into: ``<phase>_<kind>`` (prefill_gdn, decode_gdn,
    prefill_kda, decode_kda, prefill_ssd), as roofline._attention_curve reads it."""
    return f"{p['phase']}_{p['kind']}"


def core_model(p: dict) -> ModelSpec:
    """The smallest ModelSpec whose mixer is a record's: its heads and head dims on one GPU
    (TP 1), its state dtype; hidden size only sizes the projections, which are not timed."""
    if p["kind"] == "ssd":
        mamba = MambaSpec(num_heads=int(p["heads"]), head_dim=int(p["head_dim"]),
                          state_size=int(p["state_size"]), n_groups=int(p["n_groups"]),
                          chunk_size=int(p["chunk_size"]), conv_kernel=int(p["conv_kernel"]),
                          ssm_dtype=p["state_dtype"])
        width = int(p["heads"]) * int(p["head_dim"])
        return ModelSpec(id="ssd-bench", name="SSD microbenchmark", num_layers=1,
                         hidden_size=width, num_heads=1, num_kv_heads=1, ffn_hidden_size=1,
                         vocab_size=1, mamba=mamba)
    la = LinearAttentionSpec(kind="kda" if p["kind"] == "kda" else "gated_delta_net",
                             num_key_heads=int(p["key_heads"]),
                             num_value_heads=int(p["value_heads"]),
                             key_head_dim=int(p["key_head_dim"]),
                             value_head_dim=int(p["value_head_dim"]),
                             conv_kernel=int(p["conv_kernel"]), ssm_dtype=p["state_dtype"])
    width = int(p["value_heads"]) * int(p["value_head_dim"])
    return ModelSpec(id="la-bench", name="linear-attention microbenchmark", num_layers=1,
                     hidden_size=width, num_heads=1, num_kv_heads=1, ffn_hidden_size=1,
                     vocab_size=1, linear_attention=la)


def _key(p: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in p.items() if k not in ("batch", "q_len")))


def core_op(recs: list[dict]) -> O.Op:
    """The core's linear-attention operator for records sharing everything but batch and
    q_len (broadcast over the records), with the FLOPs and bytes the core charges."""
    p0 = recs[0]["params"]
    b, q = (np.array([r["params"][x] for r in recs], float) for x in ("batch", "q_len"))
    model = core_model(p0)
    prec = precision_for("bf16")
    build = O.mamba_ops if p0["kind"] == "ssd" else O.linear_attention_ops
    ops = build(model, b, q, O.Shard(), prec, p0["phase"])
    return next(op for op in ops if op.name in CORE_NAMES)


def _groups(recs: list[dict]) -> list[list[int]]:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(recs):
        groups[_key(r["params"])].append(i)
    return list(groups.values())


def linear_times(recs: list[dict], roof: Roofline) -> np.ndarray:
    """Core times of records, one op_times call per group of equal geometry."""
    out = np.empty(len(recs))
    for rows in _groups(recs):
        out[rows] = op_times([core_op([recs[i] for i in rows])], roof).time[0]
    return out


def curve_points(recs: list[dict]) -> np.ndarray:
    """Each record's coordinates on its curve, where roofline.op_times places the core:
    prefill (streams = Op.batch, q_len), decode the op's own shape."""
    out = np.empty((len(recs), 2))
    for rows in _groups(recs):
        op = core_op([recs[i] for i in rows])
        n = len(rows)
        if recs[rows[0]]["params"]["phase"] == "prefill":
            pts = (np.broadcast_to(op.batch, n), np.broadcast_to(op.shape[0], n))
        else:
            pts = (np.broadcast_to(op.shape[0], n), np.broadcast_to(op.shape[1], n))
        out[rows] = np.stack([np.asarray(x, float) for x in pts], axis=1)
    return out


def _fastest(recs: list[dict]) -> list[dict]:
    """The records of the fastest backend (``attention.fastest_backend``, geometric mean over
    the points every backend ran), compared without the state dtype each framework keeps."""
    bare = [{**r, "params": {k: v for k, v in r["params"].items() if k != "state_dtype"}}
            for r in recs]
    best = fastest_backend(bare)
    return [r for r in recs if r["params"].get("backend") == best]


def linear_attention_tables(records: list[dict], device: DeviceSpec,
                            base: CalibrationProfile) -> list[Table]:
    """One table per curve (``curve_name``) on the fastest backend's records: efficiency over
    the curve's points of the core's operator, and the curve's fixed time per call."""
    by_curve: dict[str, list[dict]] = defaultdict(list)
    for r in ok_records(records, BENCH):
        by_curve[curve_name(r["params"])].append(r)
    unit = Roofline(device, unit_profile(base))
    tables = []
    for curve, recs in sorted(by_curve.items()):
        recs = _fastest(recs)
        axes = ("streams", "q_len") if curve.startswith("prefill") else ("streams", "kv_len")
        tables.append(curve_table(curve, axes, curve_points(recs), recs, linear_times, unit,
                                  device, base.kernel_overhead_s))
    return tables


def fit_linear_attention(records: list[dict], device: DeviceSpec, base: CalibrationProfile,
                         holdout: float = 0.3, seed: int = 0
                         ) -> tuple[CalibrationProfile, list[FitError], dict[str, float]]:
    """``base`` with every linear-attention curve of ``records`` fitted and installed (as
    fit.compose does for each table: held-out error on a random ``holdout`` share predicted
    through the core with a curve fitted on the rest, then the curve refitted on all points),
    its fit errors and uncertainty (p90 |log ratio| of the held-out points) per table."""
    prof, errs, unc = base, [], {}
    for table in linear_attention_tables(records, device, base):
        result = heldout_error(table, prof, holdout, seed)
        if result is not None:
            errs.append(result[0])
            unc[table.name] = result[1]
        prof = table.install(prof, table.fit(), np.arange(len(table)))
    return prof, errs, unc
