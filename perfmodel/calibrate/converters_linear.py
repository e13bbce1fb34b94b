"""Linear-attention kernel tables (aiconfigurator-core 0.12.0, Apache-2.0) as calibration
records: the gated delta rule (``gdn_perf.parquet``), Kimi delta attention (``kda_perf.parquet``)
and Mamba-2's SSD (``mamba2_perf.parquet``), each row one timed call of the mixer's core kernel
on one GPU's heads. The rows become ``bench`` "linear_attention" records that
``fit.linear_attention`` times as the core's own operator (``ops.linear_attention_ops``,
``ops.mamba_ops``) and fits into ``attention.<phase>_<kind>`` (roofline.LINEAR_KINDS).

What each row times (collector code at ai-dynamo/aiconfigurator 095f58a):

* gdn, phase ``context``: ``batch_size`` fresh sequences of ``seq_len`` tokens through the
  chunked gated delta rule alone (q, k already l2-normalised, g and beta given): vLLM 0.24.0
  ``ChunkGatedDeltaRule`` (collector/vllm/collect_gdn.py, the FlashInfer backend its resolver
  picks, ``chunk_gated_delta_rule_flashinfer``; packed varlen, fp32 initial and final state),
  SGLang 0.5.14 FLA ``chunk_gated_delta_rule`` (collector/sglang/collect_gdn.py, fp32 state),
  TensorRT-LLM 1.3.0rc20 vendored FLA ``chunk_gated_delta_rule(q, k, v, g, beta)``
  (collector/trtllm/collect_gdn.py: padded batch, no initial state). The depthwise conv1d is
  a separate row (``causal_conv1d_fn``): the core charges it as its own operator
  (``attn.conv1d``), so those rows are not read here.
* gdn, phase ``generation``: one token per sequence through the recurrent kernel (vLLM /
  SGLang ``fused_recurrent_gated_delta_rule_packed_decode``, q/k l2-norm and gating fused;
  TensorRT-LLM ``fused_recurrent_gated_delta_rule``, bf16 state); ``causal_conv1d_update``
  rows left out as above.
* kda: the same phases (``chunk_kda`` / ``flashkda_fwd``; ``fused_recurrent_kda_packed_decode``
  / ``fused_kda_decode`` / ``kda_fused_decode``; ``verify`` rows, MTP, left out); the convolution
  rows (``causal_conv1d_fn_qkv3``) left out.
* mamba2 (TensorRT-LLM only): ``mamba_chunk_scan_combined`` context rows (collector/trtllm/
  collect_mamba2.py: batch x seq_len, chunk_size, no initial states, final states returned).
  aiconfigurator-core 0.12.0's tables (1.3.0rc20) hold ONLY the conv1d rows; the scan rows
  exist in the repository's B200 1.3.0rc15 table (305 rows, Nemotron-3 Nano / Super / Ultra
  geometries), none anywhere for ``selective_state_update`` (decode).

Heads are the call's heads (the collector's per-GPU head counts); head dims are 128 in every
GDN / KDA row. ``latency`` is in ms.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .converters import MS, read_rows, record, source_label

#: per framework, the dtype of the recurrent state the collector times (above)
STATE_DTYPE = {"vllm": "fp32", "sglang": "fp32", "trtllm": "bf16"}
#: the core kernels of each kind and phase (rows of other kernel_source values are left out)
CORE_KERNELS = {
    ("gdn", "context"): ("chunk_gated_delta_rule", "chunk_gated_delta_rule_flashinfer",
                         "chunk_gated_delta_rule_fla", "chunk_gated_delta_rule_triton"),
    ("gdn", "generation"): ("fused_recurrent_gated_delta_rule",
                            "fused_recurrent_gated_delta_rule_packed_decode"),
    ("kda", "context"): ("chunk_kda", "flashkda_fwd"),
    ("kda", "generation"): ("fused_recurrent_kda_packed_decode", "fused_kda_decode",
                            "kda_fused_decode"),
    ("ssd", "context"): ("mamba_chunk_scan_combined",),
}
PHASES = {"context": "prefill", "generation": "decode"}


def _framework(row: dict) -> str:
    return str(row.get("framework", "")).lower().replace("-", "")


def aic_linear_attention(path: str | Path, *, kernels: Iterable[str] | None = None
                         ) -> list[dict]:
    """Records of a ``gdn_perf`` / ``kda_perf`` / ``mamba2_perf`` parquet (module docstring):
    params kind (gdn | kda | ssd), phase (prefill | decode), backend
    (framework-version/kernel),
    batch, q_len (seq_len; decode 1), the heads and head dims of the call, state_dtype.
    ``kernels``: keep only these kernel_source values (None: every core kernel)."""
    keep = None if kernels is None else set(kernels)
    src = source_label(path)
    out = []
    for row in read_rows(path):
        kind = {"gdn": "gdn", "kda": "kda", "mamba2": "ssd"}.get(str(row.get("op_name")))
        phase = PHASES.get(str(row.get("phase")))
        ks = str(row.get("kernel_source"))
        if kind is None or phase is None or ks not in CORE_KERNELS.get((kind, row["phase"]), ()):
            continue
        if keep is not None and ks not in keep:
            continue
        fw = _framework(row)
        b = int(row["batch_size"])
        q = int(row["seq_len"]) if phase == "prefill" else 1
        backend = f"{fw}-{row.get('version', '')}/{ks}"  # one kernel of one release
        params = {"kind": kind, "phase": phase, "backend": backend, "batch": b,
                  "q_len": q, "state_dtype": STATE_DTYPE.get(fw, "fp32")}
        if kind == "ssd":
            params.update(heads=int(row["nheads"]), head_dim=int(row["head_dim"]),
                          state_size=int(row["d_state"]), n_groups=int(row["n_groups"]),
                          chunk_size=int(row["chunk_size"]), conv_kernel=int(row["d_conv"]))
        else:
            params.update(key_heads=int(row["num_k_heads"]), value_heads=int(row["num_v_heads"]),
                          key_head_dim=int(row["head_k_dim"]),
                          value_head_dim=int(row["head_v_dim"]), conv_kernel=int(row["d_conv"]))
        out.append(record("linear_attention", params, float(row["latency"]) * MS, src,
                          model_name=str(row.get("model_name", ""))))
    return out
