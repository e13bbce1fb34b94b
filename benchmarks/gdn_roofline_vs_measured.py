"""Plausibility of the gated-delta-net core's FLOP/byte model (ops.linear_attention_ops):
roofline time max(FLOPs / bf16 peak, bytes / HBM bandwidth) against the measured kernels of
aiconfigurator-core 0.12.0 (Apache-2.0; systems/data/<device>/linear_attention/trtllm/
1.3.0rc20/gdn_perf.parquet: fla chunk_gated_delta_rule for context, fused_recurrent_gated_
delta_rule for generation, latency in ms). Prints measured / roofline by phase and size; a
ratio below 1 would mean the model counts more work than the kernel can have done.

    .venv/bin/python benchmarks/gdn_roofline_vs_measured.py [device-dir] [perfmodel-device]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from perfmodel import ops as O
from perfmodel.specs.model import LinearAttentionSpec, ModelSpec
from perfmodel.specs.registry import get_device

ROOT = Path("/work/shared/reference/measured/aiconfigurator-core-0.12.0/systems/data")
KERNELS = {"context": "chunk_gated_delta_rule", "generation": "fused_recurrent_gated_delta_rule"}


def core_roofline_s(row, device) -> float:
    """Roofline seconds of one GDN core call for a measured row (whole layer, tp = 1)."""
    la = LinearAttentionSpec(num_key_heads=int(row.num_k_heads), num_value_heads=int(row.num_v_heads),
                             key_head_dim=int(row.head_k_dim), value_head_dim=int(row.head_v_dim),
                             conv_kernel=int(row.d_conv))
    model = ModelSpec(id="gdn-probe", name="gdn probe", num_layers=1, hidden_size=int(row.d_model),
                      num_heads=16, ffn_hidden_size=1, vocab_size=1, linear_attention=la,
                      layer_types=("linear_attention",))
    phase = "prefill" if row.phase == "context" else "decode"
    q = float(row.seq_len) if phase == "prefill" else 1.0
    ops = O.linear_attention_ops(model, float(row.batch_size), q, O.Shard(),
                                 O.Precision.inference("bf16", "bf16", "bf16"), phase)
    core = next(op for op in ops if op.name == "attn.gdn_core")
    return max(core.flops / device.peak_flops("bf16"), core.bytes / device.memory_bandwidth)


def ratios(device_dir: str = "h200_sxm", device_id: str = "h200-sxm-141gb") -> dict:
    path = ROOT / device_dir / "linear_attention" / "trtllm" / "1.3.0rc20" / "gdn_perf.parquet"
    table = pq.read_table(path).to_pandas()
    device = get_device(device_id)
    out = {}
    for phase, kernel in KERNELS.items():
        rows = table[table.kernel_source == kernel]
        r = np.array([row.latency * 1e-3 / core_roofline_s(row, device)
                      for row in rows.itertuples()])
        tokens = rows.num_tokens.to_numpy()
        out[phase] = (r, tokens)
    return out


if __name__ == "__main__":
    args = sys.argv[1:] or ["h200_sxm", "h200-sxm-141gb"]
    for phase, (r, tokens) in ratios(*args).items():
        big = r[tokens >= np.percentile(tokens, 75)]
        print(f"{phase}: {len(r)} points, measured/roofline min {r.min():.2f} median "
              f"{np.median(r):.2f} max {r.max():.2f}; largest quarter of tokens: median "
              f"{np.median(big):.2f} min {big.min():.2f}")
